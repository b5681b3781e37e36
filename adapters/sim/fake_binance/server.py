"""`FakeBinance`: Binance USDⓈ-M Futures REST in front of simulated accounts, for ccxt.

The simulator runs with no latency and no fault plan of its own: faults are
applied here, per HTTP request, so that they look to the client exactly as
they would from the real API (a 502, a 400 error body, a 503 whose order
executes later, a connection that never answers or closes mid-request) and go
through ccxt's own error mapping. Each API key is its own account
(`accounts.Account`); prices are one market shared by all of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import trio

from adapters.sim.exchange import SimExchange, market_from_spec, position_side
from adapters.sim.fake_binance import history, request_log, shapes
from adapters.sim.fake_binance import params as p
from adapters.sim.fake_binance.account import Account, now_ms
from adapters.sim.fake_binance.limits import Limited, Limiter, RateLimits
from adapters.sim.fake_binance.params import Rejection
from adapters.sim.fake_binance.shapes import JSON, PositionFigures
from adapters.sim.fake_binance.streams import MarketStreams
from adapters.sim.fake_binance.user_stream import UserStreams
from adapters.sim.fake_binance.wire import Gate, Outcome, Reply, Request, Silence, WebSocket, WireLimits
from adapters.sim.faults import FaultPlan
from adapters.sim.scenario import ExchangeSpec, FaultSpec, Scenario, TickSpec
from engine.call_points import CallPoint
from engine.model import OrderState, OrderStatus

log = logging.getLogger("trio_bot.fake_binance")

DEFAULT_RECV_WINDOW = 5000
MAX_RECV_WINDOW = 60000
ORDER, ALGO_ORDER, OPEN_ORDER = "/fapi/v1/order", "/fapi/v1/algoOrder", "/fapi/v1/openOrder"
UNKNOWN_503 = "Unknown error, please check your request or try again later."
TIMEOUT_1007 = "Timeout waiting for response from backend server. Send status unknown; execution status unknown."


def _unsigned(part: str) -> str:
    return "&".join(item for item in part.split("&") if not item.startswith("signature="))


Public = Callable[[dict[str, str]], Awaitable[Any]]
Signed = Callable[[Account, dict[str, str]], Awaitable[Any]]


class FakeBinance:
    """A Binance USDⓈ-M Futures REST server in front of simulated accounts; see the module docstring."""

    def __init__(self, source: ExchangeSpec | Scenario, *, api_key: str = "test-key",
                 api_secret: str = "test-secret", accounts: int = 1, walk: bool = False,
                 walk_volatility: float = 0.001, seed: int | None = None,
                 wire_limits: WireLimits | None = None, rate_limits: RateLimits | None = None) -> None:
        """`accounts` > 1 serves more accounts with keys/secrets `<api_key>-2`, `<api_secret>-2`, ..."""
        scenario = source if isinstance(source, Scenario) else None
        spec = scenario.exchange if scenario is not None else source
        assert isinstance(spec, ExchangeSpec)
        self.spec = spec
        self.markets = {m.symbol: market_from_spec(m) for m in spec.markets}
        for symbol in self.markets:
            shapes.split_symbol(symbol)  # refuse a symbol we could not describe, before serving
        self.limits = {m.symbol: shapes.limits_for(self.markets[m.symbol], m.price) for m in spec.markets}
        faults: Sequence[FaultSpec] = scenario.faults if scenario is not None else ()
        self.plan = FaultPlan(faults)
        self.ticks: tuple[TickSpec, ...] = tuple(sorted(scenario.ticks, key=lambda t: t.at)) if scenario else ()
        self.accounts: dict[str, Account] = {}
        self.primary = self.add_account(api_key, api_secret)
        for i in range(2, accounts + 1):
            self.add_account(f"{api_key}-{i}", f"{api_secret}-{i}")
        self.walk, self.walk_volatility = walk, walk_volatility
        self._rng = random.Random(seed if seed is not None else (scenario.seed if scenario else 0))
        self.host = "127.0.0.1"
        self.port: int | None = None
        # (method, path, status or "hang"/"drop"), newest last; bounded for long --walk sessions
        self.hits: deque[tuple[str, str, int | str]] = deque(maxlen=10_000)
        self._open_prices = {m.symbol: m.price for m in spec.markets}
        self._nursery: trio.Nursery | None = None
        self._pinned_marks: dict[str, float] = {}
        self._gate = Gate(wire_limits or WireLimits())
        self._ws_gate = Gate(wire_limits or WireLimits())
        self.streams = MarketStreams(set(self.markets), self.mark_price, self.exchange.price)
        self.user_streams = UserStreams()
        for key, account in self.accounts.items():
            account.emit = partial(self.user_streams.push, key)
        # USER_STREAM endpoints: the API key, no signature.
        self._keyed: dict[tuple[str, str], Signed] = {
            ("POST", "/fapi/v1/listenKey"): self._new_listen_key,
            ("PUT", "/fapi/v1/listenKey"): self._keep_listen_key,
            ("DELETE", "/fapi/v1/listenKey"): self._delete_listen_key,
        }
        self.ws_port: int | None = None
        self.limiter = Limiter(rate_limits or RateLimits())
        self._public: dict[tuple[str, str], Public] = {
            ("GET", "/fapi/v1/ping"): self._ping,
            ("GET", "/fapi/v1/time"): self._time,
            ("GET", "/fapi/v1/exchangeInfo"): self._exchange_info,
            ("GET", "/fapi/v1/ticker/price"): self._ticker_price,
            ("GET", "/fapi/v2/ticker/price"): self._ticker_price,
            ("GET", "/fapi/v1/ticker/24hr"): self._ticker_24hr,
            ("GET", "/fapi/v1/ticker/bookTicker"): self._book_ticker,
            ("GET", "/fapi/v1/premiumIndex"): self._premium_index,
        }
        self._signed: dict[tuple[str, str], Signed] = {
            ("GET", "/fapi/v2/account"): self._account_v2,
            ("GET", "/fapi/v3/account"): self._account_v3,
            ("GET", "/fapi/v2/balance"): self._balance,
            ("GET", "/fapi/v3/balance"): self._balance,
            ("GET", "/fapi/v2/positionRisk"): self._position_risk_v2,
            ("GET", "/fapi/v3/positionRisk"): self._position_risk_v3,
            ("GET", "/fapi/v1/leverageBracket"): self._leverage_bracket,
            ("POST", "/fapi/v1/leverage"): self._set_leverage,
            ("POST", "/fapi/v1/marginType"): self._set_margin_type,
            ("GET", "/fapi/v1/positionSide/dual"): self._position_mode,
            ("POST", "/fapi/v1/positionSide/dual"): self._set_position_mode,
            ("GET", "/fapi/v1/symbolConfig"): self._symbol_config,
            ("POST", ORDER): self._new_order,
            ("GET", ORDER): self._query_order,
            ("DELETE", ORDER): self._cancel_order,
            ("GET", OPEN_ORDER): self._query_open_order,
            ("GET", "/fapi/v1/openOrders"): self._open_orders,
            ("POST", ALGO_ORDER): self._new_algo_order,
            ("GET", ALGO_ORDER): self._query_algo_order,
            ("DELETE", ALGO_ORDER): self._cancel_algo_order,
            ("GET", "/fapi/v1/openAlgoOrders"): self._open_algo_orders,
            **history.ROUTES,
        }

    def add_account(self, api_key: str, api_secret: str) -> Account:
        """Another account, by its own key; it starts with the spec's balance and today's prices."""
        if api_key in self.accounts:
            raise ValueError(f"api key {api_key!r} is already an account")
        account = Account(self.markets, self.spec.markets, self.spec.balance_usdt, self.limits, self.plan,
                          api_key=api_key, api_secret=api_secret)
        if self.accounts:
            for symbol in self.markets:
                account.exchange.set_price(symbol, self.exchange.price(symbol))
        account.spawn = self._spawn
        if hasattr(self, "user_streams"):
            account.emit = partial(self.user_streams.push, api_key)
        account.mark = self.mark_price
        self.accounts[api_key] = account
        return account

    @property
    def exchange(self) -> SimExchange:
        """The first account's simulator: its `set_price` moves the market for every account."""
        return self.primary.exchange

    @property
    def api_key(self) -> str:
        return self.primary.api_key

    @property
    def api_secret(self) -> str:
        return self.primary.api_secret

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeBinance is not serving yet")
        return f"http://{self.host}:{self.port}"

    def _spawn(self, fn: Callable[[], Any]) -> None:
        if self._nursery is None:
            raise RuntimeError("FakeBinance is not serving: delayed outcomes need its task group")
        self._nursery.start_soon(fn)

    @property
    def ws_url(self) -> str:
        """Where the market streams are served (Binance's `fstream` host, apart from the REST one)."""
        if self.ws_port is None:
            raise RuntimeError("FakeBinance is not serving yet")
        return f"ws://{self.host}:{self.ws_port}"

    async def serve(self, host: str = "127.0.0.1", port: int = 0, *, ws_port: int = 0,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `nursery.start(fake.serve)` returns the bound REST port
        (the market streams' port is `ws_port`, any free one by default)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.exchange.stream_prices, self._on_price)
            listeners = await nursery.start(partial(trio.serve_tcp, self._connection, port, host=host))
            self.host, self.port = host, listeners[0].socket.getsockname()[1]
            ws_listeners = await nursery.start(partial(trio.serve_tcp, self._ws_connection, ws_port, host=host))
            self.ws_port = ws_listeners[0].socket.getsockname()[1]
            if self.ticks:
                nursery.start_soon(self._play_ticks)
            if self.walk:
                nursery.start_soon(self._random_walk)
            task_status.started(self.port)

    # --- price drivers ---

    def mark_price(self, symbol: str) -> float:
        """The mark price: the last price, unless a wick set them apart (`set_mark`)."""
        return self._pinned_marks.get(symbol, self.exchange.price(symbol))

    def set_mark(self, symbol: str, mark: float | None) -> None:
        """Hold the mark price at `mark` while the last price moves (None: follow it again)."""
        if mark is None:
            self._pinned_marks.pop(symbol, None)
        else:
            self._pinned_marks[symbol] = float(mark)
        for account in self.accounts.values():
            account.on_mark(symbol)
        self.streams.publish(symbol)

    def set_tick(self, symbol: str, price: float, mark: float | None = None) -> None:
        """One market move: the mark first (so a wick's stops see it), then the last price."""
        if mark is not None:
            self._pinned_marks[symbol] = float(mark)
        self.exchange.set_price(symbol, price)
        if mark is None and symbol in self._pinned_marks:
            self.set_mark(symbol, None)

    async def _play_ticks(self) -> None:
        start = trio.current_time()
        for tick in self.ticks:
            await trio.sleep_until(start + tick.at)
            self.set_tick(tick.symbol, tick.price, tick.mark)

    async def _random_walk(self) -> None:
        while True:
            await trio.sleep(1.0)
            for symbol in sorted(self.markets):
                step = math.exp(self._rng.gauss(0.0, self.walk_volatility))
                self.exchange.set_price(symbol, self.exchange.price(symbol) * step)

    def _on_price(self, symbol: str, price: float) -> None:
        """The market moved: every other account follows; stops this price fired are stamped;
        the market streams tell their clients."""
        self.streams.publish(symbol)
        for account in self.accounts.values():
            if account is not self.primary:
                account.exchange.set_price(symbol, price)
            resting = {o.client_order_id for o in account.exchange.open_orders_snapshot()}
            now = now_ms()
            for meta in list(account.orders.values()):
                if meta.symbol == symbol and meta.closed_ms is None and meta.client_id not in resting:
                    meta.closed_ms = now
                    account.settled(meta.client_id)

    # --- HTTP ---

    async def _connection(self, stream: trio.SocketStream) -> None:
        await self._gate.serve(stream, self._handle)

    async def _ws_connection(self, stream: trio.SocketStream) -> None:
        async def not_here(request: Request) -> Outcome:
            return Reply.json(404, {"code": -5000, "msg": f"Path {request.path} is not a stream"})

        await self._ws_gate.serve(stream, not_here, self._stream)

    async def _stream(self, request: Request, socket: WebSocket) -> None:
        """`/ws/<listenKey>` is the account's user data stream; anything else a market stream."""
        name = request.path[len("/ws/"):] if request.path.startswith("/ws/") else ""
        if name and self.user_streams.owner(name) is not None:
            await self.user_streams.serve(name, socket)
        else:
            await self.streams.serve(request, socket)

    async def _new_listen_key(self, account: Account, params: dict[str, str]) -> JSON:
        return {"listenKey": self.user_streams.create(account.api_key)}

    async def _keep_listen_key(self, account: Account, params: dict[str, str]) -> JSON:
        return {"listenKey": self.user_streams.keepalive(account.api_key, params.get("listenKey"))}

    async def _delete_listen_key(self, account: Account, params: dict[str, str]) -> JSON:
        self.user_streams.delete(account.api_key, params.get("listenKey"))
        return {}

    async def _handle(self, request: Request) -> Outcome:
        request_log.received(request)
        outcome = await self._outcome(request)
        status: int | str = outcome.status if isinstance(outcome, Reply) else outcome.value
        self.hits.append((request.method, request.path, status))
        return outcome

    async def _outcome(self, request: Request) -> Outcome:
        key = (request.method, request.path)
        public, signed = self._public.get(key), self._signed.get(key)
        keyed = self._keyed.get(key)
        if keyed is not None:
            try:
                found = self.accounts.get(request.headers.get("x-mbx-apikey", ""))
                if found is None:
                    raise Rejection(-2015, "Invalid API-key, IP, or permissions for action.", status=401)
                params = dict(parse_qsl(request.body, keep_blank_values=True))
                params.update(parse_qsl(request.query, keep_blank_values=True))
                return Reply.json(200, await keyed(found, params))
            except Rejection as rejection:
                return rejection.reply()
        if public is None and signed is None:
            return Reply.json(404, {"code": -5000, "msg": f"Path {request.path}, Method {request.method} is invalid"})
        usage: list[tuple[str, str]] = []
        try:
            params = dict(parse_qsl(request.body, keep_blank_values=True))
            params.update(parse_qsl(request.query, keep_blank_values=True))  # the query string wins
            api_key = request.headers.get("x-mbx-apikey") if signed is not None else None
            usage = self.limiter.admit(request.method, request.path, params.get("symbol"), api_key)
            if public is not None:
                fault = self.plan.pick(CallPoint.QUERY, symbol=params.get("symbol")) \
                    if request.method == "GET" else None
                if fault is not None:
                    return await self._inject(fault, partial(public, params))
                return Reply.json(200, await public(params), headers=tuple(usage))
            assert signed is not None
            account = self._authenticate(request, params)
            fault = self._pick_fault(account, request, params)
            if fault is not None:
                return await self._inject(fault, partial(signed, account, params), account, request, params)
            return Reply.json(200, await signed(account, params), headers=tuple(usage))
        except Rejection as rejection:
            if not isinstance(rejection, Limited):
                rejection.headers = usage
            return rejection.reply()
        except Exception:  # a bug here must not take the test's nursery down, nor show its text
            log.exception("fake binance: %s %s failed", request.method, request.path)
            return Reply.json(500, {"code": -1000, "msg": "An unknown error occured while processing the request."})

    async def _inject(self, fault: FaultSpec, handler: Callable[[], Awaitable[Any]], account: Account | None = None,
                      request: Request | None = None, params: dict[str, str] | None = None) -> Outcome:
        if fault.effect == "delay":
            await trio.sleep(fault.seconds)
            return Reply.json(200, await handler())
        if fault.effect == "error":
            return Reply(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
        if fault.effect == "reject":
            message = fault.message or f"New order rejected (injected at {fault.point})."
            return Rejection.from_message(message, -2010).reply()
        if fault.effect == "hang":
            return Silence.HANG
        if fault.effect == "lost_response":
            with contextlib.suppress(Rejection):  # a refusal is lost with the response
                await handler()
            return Silence.DROP
        if fault.effect == "unknown" and account is not None and request is not None and params is not None:
            account.accept_late(params, algo=request.path == ALGO_ORDER, fault=fault)
            if fault.message.startswith("-1007"):
                return Reply.json(408, {"code": -1007, "msg": TIMEOUT_1007})
            return Reply.json(503, {"msg": UNKNOWN_503})
        raise ValueError(f"fault effect {fault.effect!r} cannot be served at {fault.point}")

    def _authenticate(self, request: Request, params: dict[str, str]) -> Account:
        account = self.accounts.get(request.headers.get("x-mbx-apikey", ""))
        if account is None:
            raise Rejection(-2015, "Invalid API-key, IP, or permissions for action.", status=401)
        signature = params.get("signature")
        if not signature:
            raise p.missing("signature")
        payload = _unsigned(request.query) + _unsigned(request.body)
        expected = hmac.new(account.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise Rejection(-1022, "Signature for this request is not valid.")
        timestamp = p.integer(params, "timestamp")
        window = p.integer(params, "recvWindow") if "recvWindow" in params else DEFAULT_RECV_WINDOW
        if not 0 < window <= MAX_RECV_WINDOW:
            raise Rejection(-1131, f"recvWindow must be less than {MAX_RECV_WINDOW}.")
        now = now_ms()
        if timestamp >= now + 1000 or now - timestamp > window:
            raise Rejection(-1021, "Timestamp for this request is outside of the recvWindow.")
        return account

    def _pick_fault(self, account: Account, request: Request, params: dict[str, str]) -> FaultSpec | None:
        """The fault point, symbol and position side of a request, as SimExchange names them."""
        symbol = params.get("symbol")
        algo = request.path == ALGO_ORDER
        if request.method == "GET":
            side = self._side_of(account, params, algo) if request.path in (ORDER, ALGO_ORDER, OPEN_ORDER) else None
            return self.plan.pick(CallPoint.QUERY, symbol=symbol, side=side)
        if request.path not in (ORDER, ALGO_ORDER):
            return None
        if request.method == "DELETE":
            return self.plan.pick(CallPoint.CANCEL_ORDER, symbol=symbol, side=self._side_of(account, params, algo))
        try:
            intent = account.intent(params, algo=algo)
        except Rejection:
            return None  # refused anyway: the fault is kept for a request that could succeed
        side = position_side(intent.side, intent.kind)
        return self.plan.pick(CallPoint.placing(intent.kind), symbol=intent.symbol, side=side.value)

    @staticmethod
    def _side_of(account: Account, params: dict[str, str], algo: bool) -> str | None:
        meta = account.meta_by_ref(params, algo)
        return meta.position_side.value if meta is not None else None

    # --- market data ---

    def _symbols(self, params: dict[str, str]) -> list[str]:
        symbol = params.get("symbol")
        if symbol is None:
            return sorted(self.markets)
        if symbol not in self.markets:
            raise Rejection(-1121, "Invalid symbol.")
        return [symbol]

    def _per_symbol(self, params: dict[str, str], shape: Callable[[str], JSON]) -> JSON | list[JSON]:
        rows = [shape(s) for s in self._symbols(params)]
        return rows[0] if "symbol" in params else rows

    async def _ping(self, params: dict[str, str]) -> JSON:
        return {}

    async def _time(self, params: dict[str, str]) -> JSON:
        return {"serverTime": now_ms()}

    async def _exchange_info(self, params: dict[str, str]) -> JSON:
        return shapes.exchange_info([self.markets[s] for s in sorted(self.markets)], self.limits, now_ms(),
                                    self.limiter.limits)

    async def _ticker_price(self, params: dict[str, str]) -> JSON | list[JSON]:
        return self._per_symbol(params, lambda s: shapes.price_ticker(s, self.exchange.price(s), now_ms()))

    async def _ticker_24hr(self, params: dict[str, str]) -> JSON | list[JSON]:
        return self._per_symbol(params, lambda s: shapes.ticker_24hr(
            s, self.exchange.price(s), self._open_prices[s], now_ms()))

    async def _book_ticker(self, params: dict[str, str]) -> JSON | list[JSON]:
        return self._per_symbol(params, lambda s: shapes.book_ticker(s, self.exchange.price(s), now_ms()))

    async def _premium_index(self, params: dict[str, str]) -> JSON | list[JSON]:
        return self._per_symbol(params, lambda s: shapes.premium_index(s, self.mark_price(s), now_ms()))

    # --- account ---

    def _figures(self, account: Account, symbols: list[str]) -> list[PositionFigures]:
        held = {h.symbol: h for h in account.exchange.positions_snapshot()}
        return [PositionFigures(self.markets[s], held.get(s), self.mark_price(s), account.leverages.get(s, 1),
                                account.margin_type.get(s, "CROSSED")) for s in symbols]

    async def _funds(self, account: Account) -> tuple[shapes.Funds, list[PositionFigures]]:
        balance = await account.exchange.fetch_balance()
        figures = self._figures(account, sorted(self.markets))
        funds = shapes.Funds("USDT", balance.total, balance.free, sum(f.unrealized for f in figures),
                             sum(f.maint_margin for f in figures))
        return funds, figures

    async def _account_v3(self, account: Account, params: dict[str, str]) -> JSON:
        funds, figures = await self._funds(account)
        now = now_ms()
        return funds.totals_json() | {
            "assets": [funds.asset_json(now)],
            "positions": [shapes.account_position(f, now) for f in figures if f.held is not None]}

    async def _account_v2(self, account: Account, params: dict[str, str]) -> JSON:
        funds, figures = await self._funds(account)
        now = now_ms()
        positions = [shapes.account_position(f, now) | {"leverage": str(f.leverage), "isolated": f.isolated,
                                                         "entryPrice": shapes.fmt(f.entry)} for f in figures]
        return funds.totals_json() | {
            "feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "updateTime": 0,
            "multiAssetsMargin": False, "tradeGroupId": -1, "assets": [funds.asset_json(now)],
            "positions": positions}

    async def _balance(self, account: Account, params: dict[str, str]) -> list[JSON]:
        funds, _ = await self._funds(account)
        return [funds.balance_json(now_ms())]

    async def _position_risk_v2(self, account: Account, params: dict[str, str]) -> list[JSON]:
        now = now_ms()
        return [shapes.position_risk(f, now, v2=True) for f in self._figures(account, self._symbols(params))]

    async def _position_risk_v3(self, account: Account, params: dict[str, str]) -> list[JSON]:
        """v3 lists only symbols with a position (the simulator's stops hold no margin)."""
        now = now_ms()
        return [shapes.position_risk(f, now, v2=False) for f in self._figures(account, self._symbols(params))
                if f.held is not None]

    async def _symbol_config(self, account: Account, params: dict[str, str]) -> list[JSON]:
        """GET /fapi/v1/symbolConfig: leverage and margin type per symbol."""
        return [{"symbol": s, "marginType": account.margin_type.get(s, "CROSSED"), "isAutoAddMargin": False,
                 "leverage": account.leverages.get(s, 1), "maxNotionalValue": shapes.fmt(shapes.MAX_QTY)}
                for s in self._symbols(params)]

    async def _leverage_bracket(self, account: Account, params: dict[str, str]) -> list[JSON]:
        # Always a list: ccxt's loadLeverageBrackets iterates it as one.
        return [shapes.leverage_bracket(self.markets[s]) for s in self._symbols(params)]

    async def _set_leverage(self, account: Account, params: dict[str, str]) -> JSON:
        symbol = account.symbol(params)
        leverage = p.integer(params, "leverage")
        account.set_leverage(symbol, leverage)
        return {"leverage": leverage, "maxNotionalValue": shapes.fmt(shapes.MAX_QTY), "symbol": symbol}

    async def _set_margin_type(self, account: Account, params: dict[str, str]) -> JSON:
        account.set_margin_type(account.symbol(params), params.get("marginType", "").upper())
        return {"code": 200, "msg": "success"}

    async def _position_mode(self, account: Account, params: dict[str, str]) -> JSON:
        return {"dualSidePosition": account.dual_side}

    async def _set_position_mode(self, account: Account, params: dict[str, str]) -> JSON:
        account.set_dual_side(p.flag(params, "dualSidePosition"))
        return {"code": 200, "msg": "success"}

    # --- orders ---

    async def _new_order(self, account: Account, params: dict[str, str]) -> JSON:
        order, meta = await account.place(params, algo=False)
        return shapes.order_json(order, meta, placed=True)

    async def _new_algo_order(self, account: Account, params: dict[str, str]) -> JSON:
        order, meta = await account.place(params, algo=True)
        return shapes.algo_json(order, meta)

    async def _query_order(self, account: Account, params: dict[str, str]) -> JSON:
        try:
            found = await account.lookup(params, algo=False)
            if found is not None and not found[1].algo:
                return shapes.order_json(*found)
            actual = await account.actual_order(params)
            if actual is not None:
                return shapes.actual_order_json(*actual)
            raise Rejection(-2013, "Order does not exist.")
        finally:
            await account.after_lookup(params)

    async def _query_open_order(self, account: Account, params: dict[str, str]) -> JSON:
        try:
            found = await account.lookup(params, algo=False)
            if found is None or found[1].algo or found[0].status is not OrderStatus.NEW:
                raise Rejection(-2013, "Order does not exist.")
            return shapes.order_json(*found)
        finally:
            await account.after_lookup(params)

    async def _query_algo_order(self, account: Account, params: dict[str, str]) -> JSON:
        try:
            found = await account.lookup(params, algo=True)
            if found is None or not found[1].algo:
                raise Rejection(-2013, "Order does not exist.")
            return shapes.algo_json(*found)
        finally:
            await account.after_lookup(params)

    async def _cancel_order(self, account: Account, params: dict[str, str]) -> JSON:
        return shapes.order_json(*await account.cancel(params, algo=False))

    async def _cancel_algo_order(self, account: Account, params: dict[str, str]) -> JSON:
        order, meta = await account.cancel(params, algo=True)
        return {"algoId": meta.order_id, "clientAlgoId": order.client_order_id, "code": "200", "msg": "success"}

    def _rows(self, account: Account, params: dict[str, str], *, algo: bool,
              shape: Callable[[OrderState, Any], JSON]) -> list[JSON]:
        return [shape(o, m) for o, m in account.resting(set(self._symbols(params)), algo=algo)]

    async def _open_orders(self, account: Account, params: dict[str, str]) -> list[JSON]:
        return self._rows(account, params, algo=False, shape=shapes.order_json)

    async def _open_algo_orders(self, account: Account, params: dict[str, str]) -> list[JSON]:
        return self._rows(account, params, algo=True, shape=shapes.algo_json)

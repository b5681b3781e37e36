"""`FakeBinance`: Binance USDⓈ-M Futures REST in front of simulated accounts, for ccxt.

The simulator runs with no latency and no fault plan of its own: faults are
applied here, per HTTP request, so that they look to the client exactly as
they would from the real API (a 502, a 400 error body, a 503 whose order
executes later, a connection that never answers or closes mid-request) and go
through ccxt's own error mapping. Each API key is its own account
(`accounts.Account`); prices are one market shared by all of them.

This module routes requests and keeps the market; the jobs around it live apart: who is
asking (`signing`), which fault a request meets and how it looks (`wire_faults`), the market data
and account endpoints (`market_routes`, `account_routes`), what moves prices (`price_player`), the wire (`wire`), the
streams (`streams`, `user_stream`) and request weights (`limits`).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import trio

from adapters.sim.exchange import SimExchange, market_from_spec
from adapters.sim.fake_binance import shapes
from adapters.sim.fake_binance.account import Account, now_ms
from adapters.sim.fake_binance.account_routes import AccountRoutes, requested_symbols
from adapters.sim.fake_binance.limits import Limited, Limiter, RateLimits
from adapters.sim.fake_binance.market_routes import MarketRoutes
from adapters.sim.fake_binance.params import Rejection
from adapters.sim.fake_binance.price_player import has_paths, play_paths, random_walk
from adapters.sim.fake_binance.shapes import JSON
from adapters.sim.fake_binance.signing import authenticate
from adapters.sim.fake_binance.streams import MarketStreams
from adapters.sim.fake_binance.user_stream import UserStreams
from adapters.sim.fake_binance.wire import Gate, Outcome, Reply, Request, WebSocket, WireLimits
from adapters.sim.fake_binance.wire_faults import ALGO_ORDER as ALGO_ORDER
from adapters.sim.fake_binance.wire_faults import OPEN_ORDER as OPEN_ORDER
from adapters.sim.fake_binance.wire_faults import ORDER as ORDER
from adapters.sim.fake_binance.wire_faults import inject, pick_fault
from adapters.sim.faults import FaultPlan
from adapters.sim.scenario import ExchangeSpec, FaultSpec, Scenario
from engine.call_points import CallPoint
from engine.model import OrderState, OrderStatus

log = logging.getLogger("trio_bot.fake_binance")

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
        self.scenario = scenario  # its price paths are played while serving (price_player.py)
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
        routes = AccountRoutes(self.markets, self.mark_price)
        market = MarketRoutes(self.markets, self.limits, self.limiter.limits, self.exchange.price, self.mark_price,
                              self._open_prices)
        self._public: dict[tuple[str, str], Public] = {
            ("GET", "/fapi/v1/ping"): market.ping,
            ("GET", "/fapi/v1/time"): market.time,
            ("GET", "/fapi/v1/exchangeInfo"): market.exchange_info,
            ("GET", "/fapi/v1/ticker/price"): market.ticker_price,
            ("GET", "/fapi/v2/ticker/price"): market.ticker_price,
            ("GET", "/fapi/v1/ticker/24hr"): market.ticker_24hr,
            ("GET", "/fapi/v1/ticker/bookTicker"): market.book_ticker,
            ("GET", "/fapi/v1/premiumIndex"): market.premium_index,
        }
        self._signed: dict[tuple[str, str], Signed] = {
            ("GET", "/fapi/v2/account"): routes.account_v2,
            ("GET", "/fapi/v3/account"): routes.account_v3,
            ("GET", "/fapi/v2/balance"): routes.balance,
            ("GET", "/fapi/v3/balance"): routes.balance,
            ("GET", "/fapi/v2/positionRisk"): routes.position_risk_v2,
            ("GET", "/fapi/v3/positionRisk"): routes.position_risk_v3,
            ("GET", "/fapi/v1/leverageBracket"): routes.leverage_bracket,
            ("POST", "/fapi/v1/leverage"): routes.set_leverage,
            ("POST", "/fapi/v1/marginType"): routes.set_margin_type,
            ("GET", "/fapi/v1/positionSide/dual"): routes.position_mode,
            ("POST", "/fapi/v1/positionSide/dual"): routes.set_position_mode,
            ("GET", "/fapi/v1/symbolConfig"): routes.symbol_config,
            ("POST", ORDER): self._new_order,
            ("GET", ORDER): self._query_order,
            ("DELETE", ORDER): self._cancel_order,
            ("GET", OPEN_ORDER): self._query_open_order,
            ("GET", "/fapi/v1/openOrders"): self._open_orders,
            ("POST", ALGO_ORDER): self._new_algo_order,
            ("GET", ALGO_ORDER): self._query_algo_order,
            ("DELETE", ALGO_ORDER): self._cancel_algo_order,
            ("GET", "/fapi/v1/openAlgoOrders"): self._open_algo_orders,
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
            if self.scenario is not None and has_paths(self.scenario):
                nursery.start_soon(play_paths, self.scenario, self.set_tick, self.exchange.price)
            if self.walk:
                nursery.start_soon(random_walk, self.markets, self._rng, self.walk_volatility,
                                   self.exchange.set_price, self.exchange.price)
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
                    return await inject(fault, partial(public, params))
                return Reply.json(200, await public(params), headers=tuple(usage))
            assert signed is not None
            account = authenticate(self.accounts, request, params)
            fault = pick_fault(self.plan, account, request, params)
            if fault is not None:
                return await inject(fault, partial(signed, account, params), account, request, params)
            return Reply.json(200, await signed(account, params), headers=tuple(usage))
        except Rejection as rejection:
            if not isinstance(rejection, Limited):
                rejection.headers = usage
            return rejection.reply()
        except Exception:  # a bug here must not take the test's nursery down, nor show its text
            log.exception("fake binance: %s %s failed", request.method, request.path)
            return Reply.json(500, {"code": -1000, "msg": "An unknown error occured while processing the request."})

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
        return [shape(o, m) for o, m in account.resting(set(requested_symbols(self.markets, params)), algo=algo)]

    async def _open_orders(self, account: Account, params: dict[str, str]) -> list[JSON]:
        return self._rows(account, params, algo=False, shape=shapes.order_json)

    async def _open_algo_orders(self, account: Account, params: dict[str, str]) -> list[JSON]:
        return self._rows(account, params, algo=True, shape=shapes.algo_json)

"""`FakeBinance`: a `SimExchange` behind Binance USDⓈ-M Futures REST, for ccxt.

The simulator runs with no latency and no fault plan of its own: faults are
applied here, per HTTP request, so that they look to the client exactly as
they would from the real API (a 502, a 400 error body, a connection that never
answers or closes mid-request) and go through ccxt's own error mapping.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import attrs
import trio

from adapters.sim.exchange import SimExchange, market_from_spec, position_side
from adapters.sim.fake_binance import shapes
from adapters.sim.fake_binance.shapes import JSON, OrderMeta, PositionFigures
from adapters.sim.fake_binance.wire import Outcome, Reply, Request, Silence, serve_connection
from adapters.sim.faults import FaultPlan
from adapters.sim.scenario import ExchangeSpec, FaultSpec, Scenario, TickSpec
from engine.call_points import CallPoint
from engine.errors import DuplicateOrderError, PermanentError
from engine.model import OrderKind, OrderRequest, OrderSide, OrderState, OrderStatus

log = logging.getLogger("trio_bot.fake_binance")

DEFAULT_RECV_WINDOW = 5000
MAX_RECV_WINDOW = 60000
ORDER, ALGO_ORDER, OPEN_ORDER = "/fapi/v1/order", "/fapi/v1/algoOrder", "/fapi/v1/openOrder"
_CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_CODED = re.compile(r"^(-\d+)\s+(.*)$", re.DOTALL)
# Where the simulator cannot follow Binance (LIMIT orders, closePosition, plain stops that
# may open a position), it refuses loudly rather than approximating.
_UNSUPPORTED = "Invalid orderType: the simulator supports MARKET and reduce-only STOP_MARKET orders only."


class Rejection(Exception):
    """An error answer in Binance's shape: HTTP status plus {"code", "msg"}."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status = code, msg, status

    @classmethod
    def from_message(cls, message: str, default_code: int) -> Rejection:
        """A SimExchange/fault message such as "-2019 Margin is insufficient." keeps its code."""
        match = _CODED.match(message.strip())
        if match:
            return cls(int(match.group(1)), match.group(2))
        return cls(default_code, message)

    def reply(self) -> Reply:
        return Reply.json(self.status, {"code": self.code, "msg": self.msg})


def _missing(name: str) -> Rejection:
    return Rejection(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _number(params: dict[str, str], name: str) -> float:
    raw = params.get(name)
    if not raw:
        raise _missing(name)
    try:
        value = float(raw)
    except ValueError:
        raise Rejection(-1100, f"Illegal characters found in parameter '{name}'.") from None
    if not shapes.is_finite_positive(value):
        raise _missing(name)
    return value


def _flag(params: dict[str, str], name: str) -> bool:
    return params.get(name, "false").lower() == "true"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _unsigned(part: str) -> str:
    return "&".join(item for item in part.split("&") if not item.startswith("signature="))


@attrs.frozen
class _Intent:
    """A new-order request, checked and classified before anything is sent to the simulator."""

    symbol: str
    side: OrderSide
    kind: OrderKind
    type: str
    quantity: float
    stop_price: float | None
    client_id: str | None


Route = Callable[[dict[str, str]], Awaitable[Any]]


class FakeBinance:
    """A Binance USDⓈ-M Futures REST server in front of a `SimExchange`; see the package docstring."""

    def __init__(self, source: ExchangeSpec | Scenario, *, api_key: str = "test-key",
                 api_secret: str = "test-secret", walk: bool = False, walk_volatility: float = 0.001,
                 seed: int | None = None) -> None:
        scenario = source if isinstance(source, Scenario) else None
        spec = scenario.exchange if scenario is not None else source
        assert isinstance(spec, ExchangeSpec)
        self.markets = {m.symbol: market_from_spec(m) for m in spec.markets}
        for symbol in self.markets:
            shapes.split_symbol(symbol)  # refuse a symbol we could not describe, before serving
        self.exchange = SimExchange(spec.markets, balance_usdt=spec.balance_usdt, latency=0.0)
        faults: Sequence[FaultSpec] = scenario.faults if scenario is not None else ()
        self.plan = FaultPlan(faults)
        self.ticks: tuple[TickSpec, ...] = tuple(sorted(scenario.ticks, key=lambda t: t.at)) if scenario else ()
        self.api_key, self.api_secret = api_key, api_secret
        self.walk, self.walk_volatility = walk, walk_volatility
        self._rng = random.Random(seed if seed is not None else (scenario.seed if scenario else 0))
        self.host = "127.0.0.1"
        self.port: int | None = None
        # (method, path, status or "hang"/"drop"), newest last; bounded for long --walk sessions
        self.hits: deque[tuple[str, str, int | str]] = deque(maxlen=10_000)
        self._open_prices = {m.symbol: m.price for m in spec.markets}
        self._leverage: dict[str, int] = {}
        self._orders: dict[str, OrderMeta] = {}  # by client id
        self._next_actual_id = 1_000_000_001  # ids of the orders triggered algo orders become
        self._next_auto_id = 1
        self._routes: dict[tuple[str, str], tuple[Route, bool]] = {
            ("GET", "/fapi/v1/ping"): (self._ping, False),
            ("GET", "/fapi/v1/time"): (self._time, False),
            ("GET", "/fapi/v1/exchangeInfo"): (self._exchange_info, False),
            ("GET", "/fapi/v1/ticker/price"): (self._ticker_price, False),
            ("GET", "/fapi/v2/ticker/price"): (self._ticker_price, False),
            ("GET", "/fapi/v1/ticker/24hr"): (self._ticker_24hr, False),
            ("GET", "/fapi/v1/ticker/bookTicker"): (self._book_ticker, False),
            ("GET", "/fapi/v1/premiumIndex"): (self._premium_index, False),
            ("GET", "/fapi/v2/account"): (self._account_v2, True),
            ("GET", "/fapi/v3/account"): (self._account_v3, True),
            ("GET", "/fapi/v2/balance"): (self._balance, True),
            ("GET", "/fapi/v3/balance"): (self._balance, True),
            ("GET", "/fapi/v2/positionRisk"): (self._position_risk_v2, True),
            ("GET", "/fapi/v3/positionRisk"): (self._position_risk_v3, True),
            ("GET", "/fapi/v1/leverageBracket"): (self._leverage_bracket, True),
            ("POST", "/fapi/v1/leverage"): (self._set_leverage, True),
            ("GET", "/fapi/v1/positionSide/dual"): (self._position_mode, True),
            ("POST", ORDER): (self._new_order, True),
            ("GET", ORDER): (self._query_order, True),
            ("DELETE", ORDER): (self._cancel_order, True),
            ("GET", OPEN_ORDER): (self._query_open_order, True),
            ("GET", "/fapi/v1/openOrders"): (self._open_orders, True),
            ("POST", ALGO_ORDER): (self._new_algo_order, True),
            ("GET", ALGO_ORDER): (self._query_algo_order, True),
            ("DELETE", ALGO_ORDER): (self._cancel_algo_order, True),
            ("GET", "/fapi/v1/openAlgoOrders"): (self._open_algo_orders, True),
        }

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeBinance is not serving yet")
        return f"http://{self.host}:{self.port}"

    async def serve(self, host: str = "127.0.0.1", port: int = 0, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `nursery.start(fake.serve)` returns the bound port."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.exchange.stream_prices, self._on_price)
            listeners = await nursery.start(partial(trio.serve_tcp, self._connection, port, host=host))
            self.host, self.port = host, listeners[0].socket.getsockname()[1]
            if self.ticks:
                nursery.start_soon(self._play_ticks)
            if self.walk:
                nursery.start_soon(self._random_walk)
            task_status.started(self.port)

    # --- price drivers ---

    async def _play_ticks(self) -> None:
        start = trio.current_time()
        for tick in self.ticks:
            await trio.sleep_until(start + tick.at)
            self.exchange.set_price(tick.symbol, tick.price)

    async def _random_walk(self) -> None:
        while True:
            await trio.sleep(1.0)
            for symbol in sorted(self.markets):
                step = math.exp(self._rng.gauss(0.0, self.walk_volatility))
                self.exchange.set_price(symbol, self.exchange.price(symbol) * step)

    def _on_price(self, symbol: str, price: float) -> None:
        """Stamp stops that this price fired, so their update time is when it happened."""
        resting = {o.client_order_id for o in self.exchange.open_orders_snapshot()}
        now = _now_ms()
        for meta in self._orders.values():
            if meta.symbol == symbol and meta.closed_ms is None and meta.client_id not in resting:
                meta.closed_ms = now

    # --- HTTP ---

    async def _connection(self, stream: trio.SocketStream) -> None:
        await serve_connection(stream, self._handle)

    async def _handle(self, request: Request) -> Outcome:
        outcome = await self._outcome(request)
        status: int | str = outcome.status if isinstance(outcome, Reply) else outcome.value
        self.hits.append((request.method, request.path, status))
        return outcome

    async def _outcome(self, request: Request) -> Outcome:
        route = self._routes.get((request.method, request.path))
        if route is None:
            return Reply.json(404, {"code": -5000, "msg": f"Path {request.path}, Method {request.method} is invalid"})
        handler, signed = route
        try:
            params = dict(parse_qsl(request.body, keep_blank_values=True))
            params.update(parse_qsl(request.query, keep_blank_values=True))  # the query string wins
            if signed:
                self._authenticate(request, params)
            fault = self._pick_fault(request, params)
            if fault is not None and fault.effect != "delay":
                return await self._inject(fault, handler, params)
            if fault is not None:
                await trio.sleep(fault.seconds)
            return Reply.json(200, await handler(params))
        except Rejection as rejection:
            return rejection.reply()
        except Exception as exc:  # a bug here must not take the test's nursery down with it
            log.exception("fake binance: %s %s failed", request.method, request.path)
            return Reply.json(500, {"code": -1000, "msg": f"An unknown error occured: {exc!r}"})

    async def _inject(self, fault: FaultSpec, handler: Route, params: dict[str, str]) -> Outcome:
        if fault.effect == "error":
            return Reply(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
        if fault.effect == "reject":
            message = fault.message or f"New order rejected (injected at {fault.point})."
            return Rejection.from_message(message, -2010).reply()
        if fault.effect == "hang":
            return Silence.HANG
        if fault.effect == "lost_response":
            with contextlib.suppress(Rejection):  # a refusal is lost with the response
                await handler(params)
            return Silence.DROP
        raise ValueError(f"unknown fault effect {fault.effect!r}")

    def _authenticate(self, request: Request, params: dict[str, str]) -> None:
        if request.headers.get("x-mbx-apikey") != self.api_key:
            raise Rejection(-2015, "Invalid API-key, IP, or permissions for action.", status=401)
        signature = params.get("signature")
        if not signature:
            raise _missing("signature")
        payload = _unsigned(request.query) + _unsigned(request.body)
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise Rejection(-1022, "Signature for this request is not valid.")
        try:
            timestamp = int(params["timestamp"])
            window = int(params.get("recvWindow", DEFAULT_RECV_WINDOW))
        except (KeyError, ValueError):
            raise _missing("timestamp") from None
        if not 0 < window <= MAX_RECV_WINDOW:
            raise Rejection(-1131, f"recvWindow must be less than {MAX_RECV_WINDOW}.")
        now = _now_ms()
        if timestamp >= now + 1000 or now - timestamp > window:
            raise Rejection(-1021, "Timestamp for this request is outside of the recvWindow.")

    def _pick_fault(self, request: Request, params: dict[str, str]) -> FaultSpec | None:
        """The fault point, symbol and position side of a request, as SimExchange names them."""
        symbol = params.get("symbol")
        algo = request.path == ALGO_ORDER
        if request.method == "GET":
            side = self._side_of(params, algo) if request.path in (ORDER, ALGO_ORDER, OPEN_ORDER) else None
            return self.plan.pick(CallPoint.QUERY, symbol=symbol, side=side)
        if request.path not in (ORDER, ALGO_ORDER):
            return None
        if request.method == "DELETE":
            return self.plan.pick(CallPoint.CANCEL_ORDER, symbol=symbol, side=self._side_of(params, algo))
        try:
            intent = self._intent(params, algo=algo)
        except Rejection:
            return None  # refused anyway: the fault is kept for a request that could succeed
        side = position_side(intent.side, intent.kind)
        return self.plan.pick(CallPoint.placing(intent.kind), symbol=intent.symbol, side=side.value)

    def _side_of(self, params: dict[str, str], algo: bool) -> str | None:
        meta = self._meta_by_ref(params, algo)
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
        return {"serverTime": _now_ms()}

    async def _exchange_info(self, params: dict[str, str]) -> JSON:
        return shapes.exchange_info([self.markets[s] for s in sorted(self.markets)], _now_ms())

    async def _ticker_price(self, params: dict[str, str]) -> JSON | list[JSON]:
        return self._per_symbol(params, lambda s: shapes.price_ticker(s, self.exchange.price(s), _now_ms()))

    async def _ticker_24hr(self, params: dict[str, str]) -> JSON | list[JSON]:
        return self._per_symbol(params, lambda s: shapes.ticker_24hr(
            s, self.exchange.price(s), self._open_prices[s], _now_ms()))

    async def _book_ticker(self, params: dict[str, str]) -> JSON | list[JSON]:
        return self._per_symbol(params, lambda s: shapes.book_ticker(s, self.exchange.price(s), _now_ms()))

    async def _premium_index(self, params: dict[str, str]) -> JSON | list[JSON]:
        return self._per_symbol(params, lambda s: shapes.premium_index(s, self.exchange.price(s), _now_ms()))

    # --- account ---

    def _figures(self, symbols: list[str]) -> list[PositionFigures]:
        held = {p.symbol: p for p in self.exchange.positions_snapshot()}
        return [PositionFigures(self.markets[s], held.get(s), self.exchange.price(s), self._leverage.get(s, 1))
                for s in symbols]

    async def _funds(self) -> tuple[shapes.Funds, list[PositionFigures]]:
        balance = await self.exchange.fetch_balance()
        figures = self._figures(sorted(self.markets))
        funds = shapes.Funds("USDT", balance.total, balance.free, sum(f.unrealized for f in figures),
                             sum(f.maint_margin for f in figures))
        return funds, figures

    async def _account_v3(self, params: dict[str, str]) -> JSON:
        funds, figures = await self._funds()
        now = _now_ms()
        return funds.totals_json() | {
            "assets": [funds.asset_json(now)],
            "positions": [shapes.account_position(f, now) for f in figures if f.held is not None]}

    async def _account_v2(self, params: dict[str, str]) -> JSON:
        funds, figures = await self._funds()
        now = _now_ms()
        positions = [shapes.account_position(f, now) | {"leverage": str(f.leverage), "isolated": False,
                                                         "entryPrice": shapes.fmt(f.entry)} for f in figures]
        return funds.totals_json() | {
            "feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "updateTime": 0,
            "multiAssetsMargin": False, "tradeGroupId": -1, "assets": [funds.asset_json(now)],
            "positions": positions}

    async def _balance(self, params: dict[str, str]) -> list[JSON]:
        funds, _ = await self._funds()
        return [funds.balance_json(_now_ms())]

    async def _position_risk_v2(self, params: dict[str, str]) -> list[JSON]:
        now = _now_ms()
        return [shapes.position_risk(f, now, v2=True) for f in self._figures(self._symbols(params))]

    async def _position_risk_v3(self, params: dict[str, str]) -> list[JSON]:
        """v3 lists only symbols with a position (the simulator's stops hold no margin)."""
        now = _now_ms()
        return [shapes.position_risk(f, now, v2=False) for f in self._figures(self._symbols(params))
                if f.held is not None]

    async def _leverage_bracket(self, params: dict[str, str]) -> list[JSON]:
        # Always a list: ccxt's loadLeverageBrackets iterates it as one.
        return [shapes.leverage_bracket(self.markets[s]) for s in self._symbols(params)]

    async def _set_leverage(self, params: dict[str, str]) -> JSON:
        symbol = self._symbol(params)
        leverage = int(_number(params, "leverage"))
        try:
            self.exchange.set_leverage(symbol, leverage)
        except PermanentError as exc:
            raise Rejection.from_message(str(exc), -4028) from None
        self._leverage[symbol] = leverage
        return {"leverage": leverage, "maxNotionalValue": shapes.fmt(shapes.MAX_QTY), "symbol": symbol}

    async def _position_mode(self, params: dict[str, str]) -> JSON:
        return {"dualSidePosition": False}

    # --- orders ---

    def _symbol(self, params: dict[str, str]) -> str:
        symbol = params.get("symbol")
        if not symbol:
            raise _missing("symbol")
        if symbol not in self.markets:
            raise Rejection(-1121, "Invalid symbol.")
        return symbol

    def _intent(self, params: dict[str, str], *, algo: bool) -> _Intent:
        symbol = self._symbol(params)
        side_name = params.get("side")
        if side_name not in ("BUY", "SELL"):
            raise Rejection(-1117, "Invalid side.") if side_name else _missing("side")
        if params.get("positionSide", "BOTH") != "BOTH":
            raise Rejection(-4061, "Order's position side does not match user's setting.")
        if algo and params.get("algoType") != "CONDITIONAL":
            raise _missing("algoType")
        order_type = params.get("type")
        if not order_type:
            raise _missing("type")
        reduce_only = _flag(params, "reduceOnly")
        if _flag(params, "closePosition"):
            raise Rejection(-1116, _UNSUPPORTED)
        stop_price: float | None = None
        if order_type == "MARKET" and not algo:
            kind = OrderKind.CLOSE if reduce_only else OrderKind.ENTRY
        elif order_type == "STOP_MARKET" and reduce_only:
            kind = OrderKind.STOP
            stop_price = _number(params, "triggerPrice" if algo else "stopPrice")
        else:
            raise Rejection(-1116, _UNSUPPORTED)
        quantity = _number(params, "quantity")
        client_id = params.get("clientAlgoId" if algo else "newClientOrderId") or None
        if client_id is not None and not _CLIENT_ID.match(client_id):
            raise Rejection(-4015, "Client order id is not valid.")
        side = OrderSide.BUY if side_name == "BUY" else OrderSide.SELL
        return _Intent(symbol, side, kind, order_type, quantity, stop_price, client_id)

    async def _place(self, params: dict[str, str], *, algo: bool) -> tuple[OrderState, OrderMeta]:
        intent = self._intent(params, algo=algo)
        client_id = intent.client_id
        if client_id is None:
            client_id = f"fake_auto_{self._next_auto_id}"
            self._next_auto_id += 1
        request = OrderRequest(intent.symbol, intent.side, intent.kind, intent.quantity, client_id,
                               intent.stop_price)
        try:
            order = await self.exchange.place_order(request)
        except DuplicateOrderError:
            raise Rejection(-4116, "ClientOrderId is duplicated.") from None
        except PermanentError as exc:
            raise Rejection.from_message(str(exc), -2010) from None
        now = _now_ms()
        meta = OrderMeta(client_id, order.symbol, order.side, order.kind, int(order.exchange_order_id or 0),
                         algo, intent.type, now, closed_ms=None if order.status is OrderStatus.NEW else now)
        self._orders[client_id] = meta
        return order, meta

    async def _new_order(self, params: dict[str, str]) -> JSON:
        order, meta = await self._place(params, algo=False)
        return shapes.order_json(order, meta, placed=True)

    async def _new_algo_order(self, params: dict[str, str]) -> JSON:
        order, meta = await self._place(params, algo=True)
        return shapes.algo_json(order, meta)

    def _meta_of(self, order: OrderState) -> OrderMeta:
        """Our record of an order, made up for one placed behind our back (straight on the simulator)."""
        meta = self._orders.get(order.client_order_id)
        if meta is None:
            stop = order.kind is OrderKind.STOP
            meta = OrderMeta(order.client_order_id, order.symbol, order.side, order.kind,
                             int(order.exchange_order_id or 0), stop, "STOP_MARKET" if stop else "MARKET",
                             _now_ms())
            self._orders[order.client_order_id] = meta
        if order.status is not OrderStatus.NEW and meta.closed_ms is None:
            meta.closed_ms = _now_ms()
        if meta.algo and order.status is OrderStatus.FILLED and meta.actual_order_id is None:
            meta.actual_order_id = self._next_actual_id
            self._next_actual_id += 1
        return meta

    def _meta_by_ref(self, params: dict[str, str], algo: bool) -> OrderMeta | None:
        """The order a query/cancel names, by client id or by exchange id, in its own family."""
        client_id = params.get("clientAlgoId" if algo else "origClientOrderId")
        raw_id = params.get("algoId" if algo else "orderId")
        for meta in self._orders.values():
            if client_id and meta.client_id == client_id:
                return meta
            if raw_id and str(meta.order_id) == raw_id and meta.algo == algo:
                return meta
        if client_id or not raw_id:
            return None
        for order in self.exchange.open_orders_snapshot():  # resting orders placed behind our back
            if order.exchange_order_id == raw_id:
                return self._meta_of(order)
        return None

    async def _lookup(self, params: dict[str, str], *, algo: bool) -> tuple[OrderState, OrderMeta] | None:
        symbol = self._symbol(params)
        if not any(params.get(k) for k in (("algoId", "clientAlgoId") if algo else ("orderId", "origClientOrderId"))):
            names = "algoId or clientAlgoId" if algo else "orderId or origClientOrderId"
            raise Rejection(-1102, f"Param {names} must be sent, but both were empty/null!")
        client_id = params.get("clientAlgoId" if algo else "origClientOrderId")
        meta = self._meta_by_ref(params, algo)
        order = await self.exchange.fetch_order(symbol, meta.client_id if meta else client_id or "")
        if order is None:
            return None
        return order, self._meta_of(order)

    async def _query_order(self, params: dict[str, str]) -> JSON:
        found = await self._lookup(params, algo=False)
        if found is not None and not found[1].algo:
            return shapes.order_json(*found)
        actual = await self._actual_order(params)
        if actual is not None:
            return actual
        raise Rejection(-2013, "Order does not exist.")

    async def _actual_order(self, params: dict[str, str]) -> JSON | None:
        """GET /fapi/v1/order also finds the market order a fired algo order became."""
        symbol = self._symbol(params)
        for meta in list(self._orders.values()):
            if not meta.algo or meta.symbol != symbol:
                continue
            order = await self.exchange.fetch_order(symbol, meta.client_id)
            if order is None or order.status is not OrderStatus.FILLED:
                continue
            meta = self._meta_of(order)
            if params.get("origClientOrderId") == meta.client_id or params.get("orderId") == str(
                    meta.actual_order_id):
                return shapes.actual_order_json(order, meta)
        return None

    async def _query_open_order(self, params: dict[str, str]) -> JSON:
        found = await self._lookup(params, algo=False)
        if found is None or found[1].algo or found[0].status is not OrderStatus.NEW:
            raise Rejection(-2013, "Order does not exist.")
        return shapes.order_json(*found)

    async def _query_algo_order(self, params: dict[str, str]) -> JSON:
        found = await self._lookup(params, algo=True)
        if found is None or not found[1].algo:
            raise Rejection(-2013, "Order does not exist.")
        return shapes.algo_json(*found)

    async def _cancel(self, params: dict[str, str], *, algo: bool) -> tuple[OrderState, OrderMeta]:
        found = await self._lookup(params, algo=algo)
        if found is None or found[1].algo != algo:
            raise Rejection(-2011, "Unknown order sent.")
        order, meta = found
        try:
            order = await self.exchange.cancel_order(order.symbol, order.client_order_id)
        except PermanentError:
            raise Rejection(-2011, "Unknown order sent.") from None
        meta.canceled = True
        meta.closed_ms = _now_ms()
        return order, meta

    async def _cancel_order(self, params: dict[str, str]) -> JSON:
        return shapes.order_json(*await self._cancel(params, algo=False))

    async def _cancel_algo_order(self, params: dict[str, str]) -> JSON:
        order, meta = await self._cancel(params, algo=True)
        return {"algoId": meta.order_id, "clientAlgoId": order.client_order_id, "code": "200", "msg": "success"}

    def _resting(self, params: dict[str, str], *, algo: bool) -> list[tuple[OrderState, OrderMeta]]:
        symbols = set(self._symbols(params))
        found = [(o, self._meta_of(o)) for o in self.exchange.open_orders_snapshot() if o.symbol in symbols]
        return [(o, m) for o, m in found if m.algo == algo]

    async def _open_orders(self, params: dict[str, str]) -> list[JSON]:
        return [shapes.order_json(o, m) for o, m in self._resting(params, algo=False)]

    async def _open_algo_orders(self, params: dict[str, str]) -> list[JSON]:
        return [shapes.algo_json(o, m) for o, m in self._resting(params, algo=True)]

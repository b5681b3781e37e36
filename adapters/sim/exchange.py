"""An in-process USDⓈ-M futures account (one-way mode) for simulations and paper runs.

It is deliberately strict where Binance is strict, because those refusals are
what the engine must survive: reduce-only orders never open or flip a
position, a stop that would trigger at once is refused, a client order id can
be used only once. Every wait is a Trio sleep taken through the `FaultPlan`,
so under `MockClock` a simulated hour of latency and hangs costs nothing, and
every state change happens inside the plan's action so `lost_response` leaves
the exchange changed while the caller never hears back.

Rejected orders are not stored (as on Binance, where a refused order has no
order id): looking one up gives None and its client id may be sent again.

The synchronous methods at the end (`set_price`, the snapshots, `fills`, the
invariant helpers) are the simulator's view of the truth: no latency, no
faults, so the report checks what the exchange *holds*, not what a call says.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio

from adapters.sim.faults import FaultPlan
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from engine.call_points import CallPoint
from engine.checks import finite
from engine.errors import DuplicateOrderError, PermanentError
from engine.ids import position_of
from engine.model import (
    Balance,
    ExchangePosition,
    Market,
    OrderKind,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderStatus,
    Side,
)
from engine.sizing import default_step_size, default_tick_size, floor_to, realized_pnl, round_to

if TYPE_CHECKING:
    from engine.ports import Exchange

T = TypeVar("T")

DEFAULT_MIN_NOTIONAL = 5.0
DEFAULT_MAX_LEVERAGE = 125
# Margin comparisons tolerate float noise well below a cent.
_EPSILON = 1e-9
# Per-call latency spread (see `SimExchange._delay`): steps of 0.1 ns, below 10 µs in all.
_SPREAD_STEPS = 100_000
_SPREAD_UNIT = 1e-10


def market_from_spec(spec: MarketSpec) -> Market:
    """A full market from a scenario's partial one; gaps get plausible grids for its price."""
    return Market(
        symbol=spec.symbol,
        tick_size=spec.tick_size if spec.tick_size is not None else default_tick_size(spec.price),
        step_size=spec.step_size if spec.step_size is not None else default_step_size(spec.price),
        min_notional=spec.min_notional if spec.min_notional is not None else DEFAULT_MIN_NOTIONAL,
        max_leverage=spec.max_leverage if spec.max_leverage is not None else DEFAULT_MAX_LEVERAGE,
    )


@attrs.frozen
class Fill:
    """One execution, kept forever: the report counts entries per position from these."""

    client_order_id: str
    symbol: str
    side: OrderSide
    kind: OrderKind
    quantity: float
    price: float
    reduce_only: bool
    at: float


@attrs.define
class _Holding:
    """Signed net quantity (long > 0) and its average entry price."""

    quantity: float = 0.0
    entry_price: float = 0.0


def position_side(side: OrderSide, kind: OrderKind) -> Side:
    """The side of the position an order belongs to: what scenario `match.side` names."""
    buying = side is OrderSide.BUY
    if kind is OrderKind.ENTRY:
        return Side.LONG if buying else Side.SHORT
    return Side.SHORT if buying else Side.LONG


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # set-up code outside trio.run
        return 0.0


def _reject(code: int, message: str) -> PermanentError:
    return PermanentError(f"{code} {message}")


class SimExchange:
    """Implements `engine.ports.Exchange` in Trio time; see the module docstring."""

    def __init__(
        self,
        markets: Mapping[str, Market] | Iterable[MarketSpec],
        prices: Mapping[str, float] | None = None,
        *,
        balance_usdt: float = 10_000.0,
        latency: float = 0.05,
        faults: FaultPlan | None = None,
        reuse_closed_ids: bool = False,
    ) -> None:
        """`markets` as full `Market`s (then `prices` must cover each) or scenario `MarketSpec`s
        (their prices are the start, `prices` may override).

        `reuse_closed_ids` follows Binance, where a client id need only be unique among *open*
        orders: the id of a filled or cancelled order may be sent again and makes a new order.
        The default refuses any id ever used, which is stricter than any exchange."""
        start: dict[str, float] = {}
        if isinstance(markets, Mapping):
            self._markets: dict[str, Market] = dict(markets)
        else:
            specs = list(markets)
            self._markets = {s.symbol: market_from_spec(s) for s in specs}
            start = {s.symbol: s.price for s in specs}
        start.update(prices or {})
        missing = sorted(set(self._markets) - set(start))
        if missing:
            raise ValueError(f"no starting price for {', '.join(missing)}")
        self._prices: dict[str, float] = {}
        for symbol in self._markets:
            self._check_price(symbol, start[symbol])
            self._prices[symbol] = float(start[symbol])
        self._balance = float(balance_usdt)
        self._latency = latency
        self._faults = faults if faults is not None else FaultPlan()
        self._leverage: dict[str, int] = {}
        self._holdings: dict[str, _Holding] = {}
        self._orders: dict[str, OrderState] = {}  # by client id, insertion = placement order
        # Only resting (NEW) orders, by symbol then client id in placement order: a tick looks
        # at its own symbol's live stops, never at the ever-growing history of filled and
        # cancelled orders (which stays in `_orders` for look-ups).
        self._resting: dict[str, dict[str, OrderState]] = {}
        # Per symbol with resting stops: (highest sell stop, lowest buy stop). A tick between
        # the two crosses nothing, which two comparisons tell without looking at any order.
        self._triggers: dict[str, tuple[float, float]] = {}
        self._next_order_id = 1
        self._subscribers: list[trio.MemorySendChannel[tuple[str, float]]] = []
        self._listeners: list[Callable[[str, float], None]] = []
        self._reuse_closed_ids = reuse_closed_ids
        # Asked before a crossed stop executes; False holds it (the fake Binance server's
        # algo service: a stop stuck in TRIGGERING, rejected, ...) until `release_stop`.
        self.trigger_gate: Callable[[OrderState, float], bool] | None = None
        self.refuse_immediate_stops = True  # the fake Binance server checks -2021 itself, by workingType
        self.fills: list[Fill] = []

    @classmethod
    def from_spec(cls, spec: ExchangeSpec, faults: FaultPlan | None = None) -> SimExchange:
        return cls(spec.markets, balance_usdt=spec.balance_usdt, latency=spec.latency, faults=faults)

    # --- the Exchange port ---

    async def load_markets(self) -> dict[str, Market]:
        return await self._query(lambda: dict(self._markets), what="markets")

    async def fetch_prices(self, symbols: Sequence[str]) -> dict[str, float]:
        # A one-symbol read can be matched by a `symbol` fault; a batch belongs to no symbol.
        only = symbols[0] if len(symbols) == 1 else None
        return await self._query(
            lambda: {s: self._prices[s] for s in symbols if s in self._prices}, symbol=only,
            what="prices " + ",".join(symbols))

    async def fetch_balance(self) -> Balance:
        return await self._query(self._balance_now, what="balance")

    async def fetch_positions(self) -> list[ExchangePosition]:
        return await self._query(self.positions_snapshot, what="positions")

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        return await self._query(lambda: self._find(symbol, client_order_id), symbol=symbol,
                                 side=self._side_of(client_order_id), what=f"order {client_order_id}")

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        return await self._query(
            lambda: [o for o in self.open_orders_snapshot() if symbol is None or o.symbol == symbol],
            symbol=symbol, what=f"open orders {symbol}")

    async def place_order(self, request: OrderRequest) -> OrderState:
        async def action() -> OrderState:
            return self._place(request)

        side = position_side(request.side, request.kind)
        return await self._faults.run(CallPoint.placing(request.kind), action, symbol=request.symbol,
                                      side=side.value, latency=self._delay(f"place {request.client_order_id}"))

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState:
        async def action() -> OrderState:
            return self._cancel(symbol, client_order_id)

        return await self._faults.run(CallPoint.CANCEL_ORDER, action, symbol=symbol,
                                      side=self._side_of(client_order_id),
                                      latency=self._delay(f"cancel {client_order_id}"))

    # --- account settings ---

    async def stream_prices(self, on_price: Callable[[str, float], None]) -> None:
        """Every `set_price` reaches `on_price` synchronously: no buffer, so nothing to overflow."""
        self._listeners.append(on_price)
        try:
            await trio.sleep_forever()
        finally:
            self._listeners.remove(on_price)

    def set_leverage(self, symbol: str, leverage: int) -> None:
        """Set-up only (not a port call): margin of open positions is recomputed at once."""
        market = self._market(symbol)
        if not 1 <= leverage <= market.max_leverage:
            raise _reject(-4028, f"Leverage {leverage} is not valid.")
        self._leverage[symbol] = leverage

    # --- the simulator's view: sync, no latency, no faults ---

    def set_price(self, symbol: str, price: float) -> None:
        """Move the market and fire any stop it crosses, in placement order.

        The price is kept as given (not snapped to the tick) so a random walk of small
        moves does not stick to the grid.
        """
        self.set_prices(((symbol, price),))

    def set_prices(self, moves: Iterable[tuple[str, float]], *, relative: bool = False) -> None:
        """`set_price` for each (symbol, price) in order: the ticks of one instant in one call.

        With `relative`, each value is a factor applied to the symbol's current price (a
        random walk's step). A simulated day is millions of ticks; this is their hot path.
        """
        markets, prices, by_symbol, triggers = self._markets, self._prices, self._resting, self._triggers
        listeners = tuple(self._listeners)
        for symbol, value in moves:
            if symbol not in markets:
                raise KeyError(f"unknown market {symbol!r}")
            price = prices[symbol] * value if relative else float(value)
            if not 0.0 < price < math.inf:
                self._check_price(symbol, price)
            prices[symbol] = price
            bounds = triggers.get(symbol)
            if bounds is not None and (price <= bounds[0] or price >= bounds[1]):
                gate = self.trigger_gate
                for order in [o for o in by_symbol[symbol].values() if self._crossed(o, price)]:
                    if gate is None or gate(order, price):
                        self._trigger(order, price)
            for listener in listeners:
                listener(symbol, price)
            if self._subscribers:
                self._send(symbol, price)

    def price(self, symbol: str) -> float:
        return self._prices[symbol]

    @property
    def wallet_balance(self) -> float:
        return self._balance

    def order(self, client_order_id: str) -> OrderState | None:
        """The newest order with this client id, as the simulator holds it (no latency, no faults)."""
        return self._orders.get(client_order_id)

    def release_stop(self, client_order_id: str, *, execute: bool) -> OrderState:
        """End a stop the trigger gate held: execute it at the current price, or drop it unfilled."""
        order = self._orders[client_order_id]
        if order.status is not OrderStatus.NEW:
            return order
        if execute:
            self._trigger(order, self._prices[order.symbol])
        else:
            self._store(attrs.evolve(order, status=OrderStatus.CANCELED))
        return self._orders[client_order_id]

    def positions_snapshot(self) -> list[ExchangePosition]:
        """Non-zero positions only, quantity unsigned, as an exchange reports them.

        Sorted by symbol: Trio shuffles the order tasks run in, so insertion order would
        make the same seed give different reports.
        """
        return [
            ExchangePosition(symbol, Side.LONG if h.quantity > 0 else Side.SHORT, abs(h.quantity),
                             h.entry_price)
            for symbol, h in sorted(self._holdings.items()) if h.quantity != 0
        ]

    def open_orders_snapshot(self) -> list[OrderState]:
        """Resting stops, sorted by symbol and client id for the same reason as positions."""
        resting = [o for orders in self._resting.values() for o in orders.values()]
        return sorted(resting, key=lambda o: (o.symbol, o.client_order_id))

    def export_state(self) -> dict[str, Any]:
        """Account state as plain JSON data, so a paper account survives a restart like a real one."""
        return {
            "balance": self._balance,
            "prices": dict(self._prices),
            "leverage": dict(self._leverage),
            "holdings": {s: [h.quantity, h.entry_price] for s, h in self._holdings.items() if h.quantity},
            "orders": [attrs.asdict(o) for o in self._orders.values()],
            "next_order_id": self._next_order_id,
        }

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Restore `export_state` output; markets not listed any more are dropped with their state."""
        known = self._markets
        self._balance = float(state["balance"])
        self._prices.update({s: float(p) for s, p in state["prices"].items() if s in known})
        self._leverage = {s: int(n) for s, n in state["leverage"].items() if s in known}
        self._holdings = {s: _Holding(float(q), float(e)) for s, (q, e) in state["holdings"].items() if s in known}
        self._orders = {}
        self._resting = {}
        self._triggers = {}
        for raw in state["orders"]:
            if raw["symbol"] in known:
                self._store(OrderState(**{**raw, "side": OrderSide(raw["side"]), "kind": OrderKind(raw["kind"]),
                                          "status": OrderStatus(raw["status"])}))
        self._next_order_id = int(state["next_order_id"])

    def entry_fill_counts(self) -> dict[int, int]:
        """Position id → entry fills. More than one means an entry was sent twice and both filled."""
        counts: dict[int, int] = {}
        for fill in self.fills:
            position_id = position_of(fill.client_order_id)
            if not fill.reduce_only and position_id is not None:
                counts[position_id] = counts.get(position_id, 0) + 1
        return counts

    def unprotected_positions(self) -> list[str]:
        """Symbols whose position is not fully covered by resting closing-side stops.

        Stops are summed: two positions' stops on one symbol together cover the net position.
        """
        unprotected = []
        for held in self.positions_snapshot():
            closing = held.side.exit_order_side
            covered = sum(o.quantity for o in self.open_orders_snapshot()
                          if o.symbol == held.symbol and o.kind is OrderKind.STOP and o.side is closing)
            if covered < held.quantity - self._markets[held.symbol].step_size / 2:
                unprotected.append(held.symbol)
        return unprotected

    def subscribe(self, buffer: int = 64) -> trio.MemoryReceiveChannel[tuple[str, float]]:
        """A feed of (symbol, price) from `set_price`.

        A full buffer drops the new price rather than blocking `set_price` (which runs
        inside the simulation driver): a consumer that wants the latest price keeps only
        the newest per symbol it reads. Closing the receiver unsubscribes.
        """
        send, receive = trio.open_memory_channel[tuple[str, float]](buffer)
        self._subscribers.append(send)
        return receive

    # --- internals ---

    async def _query(self, read: Callable[[], T], *, what: str, symbol: str | None = None,
                     side: str | None = None) -> T:
        async def action() -> T:
            return read()

        return await self._faults.run(CallPoint.QUERY, action, symbol=symbol, side=side,
                                      latency=self._delay(what))

    def _delay(self, what: str) -> float:
        """The latency of one call: `latency` plus a spread of at most 10 µs fixed by *what* the
        call is (its kind and client order id or symbols), never by when or by whom it was sent.

        Requests that leave at the same virtual instant therefore reach the exchange, and
        their answers reach the engine, in an order set by their content instead of by Trio's
        randomised scheduling, as on a real network where no two arrive at the same instant.
        Same scenario, same report.
        """
        if not self._latency:
            return 0.0
        return self._latency + (zlib.crc32(what.encode()) % _SPREAD_STEPS) * _SPREAD_UNIT

    def _market(self, symbol: str) -> Market:
        try:
            return self._markets[symbol]
        except KeyError:
            raise _reject(-1121, f"Invalid symbol {symbol!r}.") from None

    @staticmethod
    def _check_price(symbol: str, price: float) -> None:
        if not (finite(price) is not None and price > 0):
            raise ValueError(f"{symbol}: price must be a finite number > 0, got {price!r}")

    def _side_of(self, client_order_id: str) -> str | None:
        order = self._orders.get(client_order_id)
        return position_side(order.side, order.kind).value if order else None

    def _find(self, symbol: str, client_order_id: str) -> OrderState | None:
        order = self._orders.get(client_order_id)
        return order if order is not None and order.symbol == symbol else None

    def _balance_now(self) -> Balance:
        used = sum(abs(h.quantity) * h.entry_price / self._leverage.get(symbol, 1)
                   for symbol, h in self._holdings.items())
        return Balance(total=self._balance, free=self._balance - used)

    def _store(self, order: OrderState) -> OrderState:
        """Record the order's latest state and keep the resting index in step with it."""
        self._orders[order.client_order_id] = order
        symbol = order.symbol
        resting = self._resting.get(symbol)
        if order.status is OrderStatus.NEW:
            if resting is None:
                resting = self._resting[symbol] = {}
            resting[order.client_order_id] = order
        elif resting is None or resting.pop(order.client_order_id, None) is None:
            return order
        if not resting:
            del self._resting[symbol]
            self._triggers.pop(symbol, None)
        else:
            sells = [o.stop_price or 0.0 for o in resting.values() if o.side is OrderSide.SELL]
            buys = [o.stop_price or math.inf for o in resting.values() if o.side is OrderSide.BUY]
            self._triggers[symbol] = (max(sells, default=-math.inf), min(buys, default=math.inf))
        return order

    def _place(self, request: OrderRequest) -> OrderState:
        """Validate then apply atomically: a refusal changes nothing."""
        market = self._market(request.symbol)
        earlier = self._orders.get(request.client_order_id)
        if earlier is not None and (not self._reuse_closed_ids or earlier.status is OrderStatus.NEW):
            raise DuplicateOrderError(f"-4116 ClientOrderId is duplicated: {request.client_order_id}.")
        quantity = floor_to(request.quantity, market.step_size) if request.quantity > 0 else 0.0
        if quantity <= 0:
            raise _reject(-4003, f"Quantity less than or equal to zero "
                                 f"({request.quantity:g} on step {market.step_size:g}).")
        price = self._prices[request.symbol]
        order = OrderState(
            client_order_id=request.client_order_id, symbol=request.symbol, side=request.side,
            kind=request.kind, quantity=quantity, status=OrderStatus.NEW,
            reduce_only=request.reduce_only, exchange_order_id=str(self._next_order_id))
        if request.kind is OrderKind.STOP:
            order = attrs.evolve(order, stop_price=self._stop_price(request, market, price))
        elif request.kind is OrderKind.CLOSE:
            if self._reducible(request.symbol, request.side) == 0:
                raise _reject(-2022, "ReduceOnly Order is rejected.")
        else:
            self._check_entry(request.symbol, request.side, quantity, price, market)
        self._orders.pop(request.client_order_id, None)  # a reused id is a new order, placed now
        self._next_order_id += 1
        if request.kind is OrderKind.STOP:
            return self._store(order)
        return self._store(self._fill(order, price))

    def _stop_price(self, request: OrderRequest, market: Market, price: float) -> float:
        if request.stop_price is None or not request.stop_price > 0:
            raise _reject(-1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, "
                                 "or malformed.")
        stop = round_to(request.stop_price, market.tick_size)
        immediate = stop >= price if request.side is OrderSide.SELL else stop <= price
        if immediate and self.refuse_immediate_stops:
            raise _reject(-2021, f"Order would immediately trigger (stop {stop:g}, price {price:g}).")
        return stop

    def _check_entry(self, symbol: str, side: OrderSide, quantity: float, price: float,
                     market: Market) -> None:
        notional = quantity * price
        if notional < market.min_notional:
            raise _reject(-4164, f"Order's notional must be no smaller than {market.min_notional:g} "
                                 f"(unless you choose reduce only); got {notional:g}.")
        opening = quantity - self._reducible(symbol, side)
        needed = max(opening, 0.0) * price / self._leverage.get(symbol, 1)
        if needed > self._balance_now().free + _EPSILON:
            raise _reject(-2019, "Margin is insufficient.")

    def _reducible(self, symbol: str, side: OrderSide) -> float:
        """How much an order on `side` can reduce: the opposite-signed position, else 0."""
        held = self._holdings.get(symbol, _Holding()).quantity
        if (side is OrderSide.SELL and held > 0) or (side is OrderSide.BUY and held < 0):
            return abs(held)
        return 0.0

    def _crossed(self, order: OrderState, price: float) -> bool:
        assert order.stop_price is not None
        return price <= order.stop_price if order.side is OrderSide.SELL else price >= order.stop_price

    def _trigger(self, order: OrderState, price: float) -> None:
        if self._reducible(order.symbol, order.side) == 0:
            # Nothing left to reduce: a reduce-only stop expires instead of opening a position.
            self._store(attrs.evolve(order, status=OrderStatus.CANCELED))
        else:
            self._store(self._fill(order, price))

    def _fill(self, order: OrderState, price: float) -> OrderState:
        """Execute at `price`: reduce-only fills are clipped to the position, entries net in."""
        market = self._markets[order.symbol]
        held = self._holdings.setdefault(order.symbol, _Holding())
        reducible = self._reducible(order.symbol, order.side)
        quantity = min(order.quantity, reducible) if order.reduce_only else order.quantity
        reduced = min(quantity, reducible)
        if reduced > 0:
            side = Side.LONG if held.quantity > 0 else Side.SHORT
            self._balance += realized_pnl(side, held.entry_price, price, reduced)
        opened = quantity - reduced
        sign = 1 if order.side is OrderSide.BUY else -1
        if opened > 0:
            base = abs(held.quantity) if reduced == 0 else 0.0
            held.entry_price = (base * held.entry_price + opened * price) / (base + opened)
        held.quantity = round_to(held.quantity + sign * quantity, market.step_size)
        if held.quantity == 0:
            del self._holdings[order.symbol]
        self.fills.append(Fill(order.client_order_id, order.symbol, order.side, order.kind, quantity,
                               price, order.reduce_only, _now()))
        return attrs.evolve(order, status=OrderStatus.FILLED, filled_quantity=quantity,
                            average_price=price)

    def _cancel(self, symbol: str, client_order_id: str) -> OrderState:
        order = self._find(symbol, client_order_id)
        if order is None or order.status is not OrderStatus.NEW:
            raise _reject(-2011, f"Unknown order sent ({client_order_id}).")
        return self._store(attrs.evolve(order, status=OrderStatus.CANCELED))

    def _send(self, symbol: str, price: float) -> None:
        for send in list(self._subscribers):
            try:
                send.send_nowait((symbol, price))
            except trio.WouldBlock:
                pass  # newest-wins is the consumer's job; never block the market
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(send)


if TYPE_CHECKING:
    def _conforms(exchange: SimExchange) -> Exchange:
        """mypy proves here that `SimExchange` satisfies the port."""
        return exchange

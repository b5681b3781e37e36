"""The simulated exchange's truth without the network: its markets, prices, orders and account,
and the matching that moves them (an order placed, a stop crossed by a price, a cancel).

`SimExchange` (adapters.sim.exchange) puts the network in front of it (latency, faults, the
`Exchange` port); the simulator and the reports read this class directly (no latency, no faults),
so they check what the exchange *holds*, not what a call says. Orders live in an `OrderBook`,
money and positions in a `Ledger`; with a `Journal` attached, every change is handed to it before
the call that made it returns (see `adapters.sim.account_state`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import trio

from adapters.sim.account_state import AccountChange, Journal, order_data, order_from_data
from adapters.sim.ledger import Fill, Holding, Ledger, reject
from adapters.sim.order_book import OrderBook
from adapters.sim.scenario import MarketSpec
from engine.checks import finite
from engine.errors import DuplicateOrderError, TransientError
from engine.model import ExchangePosition, Market, OrderKind, OrderRequest, OrderSide, OrderState, OrderStatus
from engine.sizing import default_step_size, default_tick_size, floor_to, round_to

log = logging.getLogger(__name__)

DEFAULT_MIN_NOTIONAL = 5.0
DEFAULT_MAX_LEVERAGE = 125


def market_from_spec(spec: MarketSpec) -> Market:
    """A full market from a scenario's partial one; gaps get plausible grids for its price."""
    return Market(
        symbol=spec.symbol,
        tick_size=spec.tick_size if spec.tick_size is not None else default_tick_size(spec.price),
        step_size=spec.step_size if spec.step_size is not None else default_step_size(spec.price),
        min_notional=spec.min_notional if spec.min_notional is not None else DEFAULT_MIN_NOTIONAL,
        max_leverage=spec.max_leverage if spec.max_leverage is not None else DEFAULT_MAX_LEVERAGE,
    )


class SimAccount:
    """One-way USDⓈ-M account and its matching, synchronous; see the module docstring."""

    def __init__(
        self,
        markets: Mapping[str, Market] | Iterable[MarketSpec],
        prices: Mapping[str, float] | None = None,
        *,
        balance_usdt: float = 10_000.0,
        reuse_closed_ids: bool = False,
        history: int | None = None,
    ) -> None:
        """`markets` as full `Market`s (then `prices` must cover each) or scenario `MarketSpec`s
        (their prices are the start, `prices` may override).

        `reuse_closed_ids` follows Binance, where a client id need only be unique among *open*
        orders: the id of a filled or cancelled order may be sent again and makes a new order.
        The default refuses any id ever used, which is stricter than any exchange.

        `history` bounds what is kept of the past: at most that many closed orders (the newest)
        and about twice that many fills. None (simulations) keeps everything; a paper account
        that runs for months sets it."""
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
        self._book = OrderBook(history)
        self._ledger = Ledger(self._markets, balance_usdt, history=history)
        self._next_order_id = 1
        self._subscribers: list[trio.MemorySendChannel[tuple[str, float]]] = []
        self._listeners: list[Callable[[str, float], None]] = []
        self._reuse_closed_ids = reuse_closed_ids
        self._journal: Journal | None = None
        self._settings_changed = False  # a leverage change (or `sync`) not yet handed to the journal
        # Asked before a crossed stop executes; False holds it (the fake Binance server's
        # algo service: a stop stuck in TRIGGERING, rejected, ...) until `release_stop`.
        self.trigger_gate: Callable[[OrderState, float], bool] | None = None
        self.refuse_immediate_stops = True  # the fake Binance server checks -2021 itself, by workingType

    def set_leverage(self, symbol: str, leverage: int) -> None:
        """Set-up only (not a port call): margin of open positions is recomputed at once."""
        market = self._market(symbol)
        if not 1 <= leverage <= market.max_leverage:
            raise reject(-4028, f"Leverage {leverage} is not valid.")
        self._ledger.leverage[symbol] = leverage
        self._settings_changed = True
        self._commit()

    # --- durability ---

    def attach_journal(self, journal: Journal) -> None:
        """From now on hand every change to `journal` before the call that made it returns
        (see `adapters.sim.account_state`). Attach it after `import_state`."""
        self._journal = journal
        self._book.track_changes()

    def sync(self) -> None:
        """Hand the journal the whole small state now, prices included, even if nothing changed
        (after a wave and at exit, so a restart starts from recent prices). A failure is logged:
        the change stays pending and is kept with the next one."""
        self._settings_changed = True
        self._commit(quiet=True)

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
        A move that fires a stop is handed to the journal before any listener hears the price.
        """
        markets, prices, book = self._markets, self._prices, self._book
        by_symbol, triggers = book.resting, book.triggers
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
                self._commit(quiet=True)
            for listener in listeners:
                listener(symbol, price)
            if self._subscribers:
                self._send(symbol, price)

    def price(self, symbol: str) -> float:
        return self._prices[symbol]

    @property
    def wallet_balance(self) -> float:
        return self._ledger.balance

    @property
    def fills(self) -> list[Fill]:
        """Executions, oldest first (bounded when `history` is set)."""
        return self._ledger.fills

    @property
    def _orders(self) -> dict[str, OrderState]:
        """Every order kept, by client id in placement order (tests look at the placement order)."""
        return self._book.orders

    def order(self, client_order_id: str) -> OrderState | None:
        """The newest order with this client id, as the simulator holds it (no latency, no faults)."""
        return self._book.get(client_order_id)

    def release_stop(self, client_order_id: str, *, execute: bool) -> OrderState:
        """End a stop the trigger gate held: execute it at the current price, or drop it unfilled."""
        order = self._book.orders[client_order_id]
        if order.status is not OrderStatus.NEW:
            return order
        if execute:
            self._trigger(order, self._prices[order.symbol])
        else:
            self._book.store(attrs.evolve(order, status=OrderStatus.CANCELED))
        self._commit(quiet=True)
        return self._book.orders[client_order_id]

    def positions_snapshot(self) -> list[ExchangePosition]:
        """Non-zero positions only, quantity unsigned, sorted by symbol (see `Ledger`)."""
        return self._ledger.positions_snapshot()

    def open_orders_snapshot(self) -> list[OrderState]:
        """Resting stops, sorted by symbol and client id for the same reason as positions."""
        return self._book.resting_sorted()

    def export_state(self) -> dict[str, Any]:
        """Account state as plain JSON data, so a paper account survives a restart like a real one."""
        ledger = self._ledger
        return {
            "balance": ledger.balance,
            "prices": dict(self._prices),
            "leverage": dict(ledger.leverage),
            "holdings": {s: [h.quantity, h.entry_price] for s, h in ledger.holdings.items() if h.quantity},
            "orders": [order_data(o) for o in self._book.orders.values()],
            "next_order_id": self._next_order_id,
        }

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Restore `export_state` output; markets not listed any more are dropped with their state.
        Orders are restored in the order given, which must be placement order."""
        known, ledger = self._markets, self._ledger
        ledger.balance = float(state["balance"])
        self._prices.update({s: float(p) for s, p in state["prices"].items() if s in known})
        ledger.leverage = {s: int(n) for s, n in state["leverage"].items() if s in known}
        ledger.holdings = {s: Holding(float(q), float(e)) for s, (q, e) in state["holdings"].items() if s in known}
        self._book.clear()
        for raw in state["orders"]:
            if raw["symbol"] in known:
                self._book.store(order_from_data(raw))
        self._book.take_changes()  # what was imported is what the journal already holds
        self._next_order_id = int(state["next_order_id"])

    def entry_fill_counts(self) -> dict[int, int]:
        """Position id → entry fills. More than one means an entry was sent twice and both filled."""
        return self._ledger.entry_fill_counts()

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

    def _commit(self, *, quiet: bool = False) -> None:
        """Hand what changed to the journal, if one is attached and anything did.

        A journal that fails keeps the change pending (it is handed over again with the next
        one) and the call fails with `TransientError`, like an exchange that is down; `quiet`
        (a price move inside the simulation driver, which has no caller to tell) logs instead.
        """
        journal = self._journal
        if journal is None or not (self._book.changed or self._settings_changed):
            return
        ledger = self._ledger
        stored, forgotten = self._book.take_changes()
        change = AccountChange(
            balance=ledger.balance, next_order_id=self._next_order_id, prices=dict(self._prices),
            leverage=dict(ledger.leverage),
            holdings={s: (h.quantity, h.entry_price) for s, h in ledger.holdings.items() if h.quantity},
            orders=tuple(stored), forgotten=tuple(forgotten))
        try:
            journal.record(change)
        except TransientError as exc:
            self._book.restore_changes(stored, forgotten)
            self._settings_changed = True
            if not quiet:
                raise
            log.error("the paper account could not be saved (retried with the next change): %s", exc)
            return
        self._settings_changed = False

    def _market(self, symbol: str) -> Market:
        try:
            return self._markets[symbol]
        except KeyError:
            raise reject(-1121, f"Invalid symbol {symbol!r}.") from None

    @staticmethod
    def _check_price(symbol: str, price: float) -> None:
        if not (finite(price) is not None and price > 0):
            raise ValueError(f"{symbol}: price must be a finite number > 0, got {price!r}")

    def _find(self, symbol: str, client_order_id: str) -> OrderState | None:
        order = self._book.get(client_order_id)
        return order if order is not None and order.symbol == symbol else None

    def _place(self, request: OrderRequest) -> OrderState:
        """Validate then apply atomically: a refusal changes nothing."""
        market = self._market(request.symbol)
        earlier = self._book.get(request.client_order_id)
        if earlier is not None and (not self._reuse_closed_ids or earlier.status is OrderStatus.NEW):
            raise DuplicateOrderError(f"-4116 ClientOrderId is duplicated: {request.client_order_id}.")
        quantity = floor_to(request.quantity, market.step_size) if request.quantity > 0 else 0.0
        if quantity <= 0:
            raise reject(-4003, f"Quantity less than or equal to zero "
                                f"({request.quantity:g} on step {market.step_size:g}).")
        price = self._prices[request.symbol]
        order = OrderState(
            client_order_id=request.client_order_id, symbol=request.symbol, side=request.side,
            kind=request.kind, quantity=quantity, status=OrderStatus.NEW,
            reduce_only=request.reduce_only, exchange_order_id=str(self._next_order_id))
        if request.kind is OrderKind.STOP:
            order = attrs.evolve(order, stop_price=self._stop_price(request, market, price))
        elif request.kind is OrderKind.CLOSE:
            if self._ledger.reducible(request.symbol, request.side) == 0:
                raise reject(-2022, "ReduceOnly Order is rejected.")
        else:
            self._ledger.check_entry(request.symbol, request.side, quantity, price, market)
        self._book.discard(request.client_order_id)  # a reused id is a new order, placed now
        self._next_order_id += 1
        if request.kind is OrderKind.STOP:
            return self._book.store(order)
        return self._book.store(self._ledger.fill(order, price))

    def _stop_price(self, request: OrderRequest, market: Market, price: float) -> float:
        if request.stop_price is None or not request.stop_price > 0:
            raise reject(-1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, "
                                "or malformed.")
        stop = round_to(request.stop_price, market.tick_size)
        immediate = stop >= price if request.side is OrderSide.SELL else stop <= price
        if immediate and self.refuse_immediate_stops:
            raise reject(-2021, f"Order would immediately trigger (stop {stop:g}, price {price:g}).")
        return stop

    def _crossed(self, order: OrderState, price: float) -> bool:
        assert order.stop_price is not None
        return price <= order.stop_price if order.side is OrderSide.SELL else price >= order.stop_price

    def _trigger(self, order: OrderState, price: float) -> None:
        if self._ledger.reducible(order.symbol, order.side) == 0:
            # Nothing left to reduce: a reduce-only stop expires instead of opening a position.
            self._book.store(attrs.evolve(order, status=OrderStatus.CANCELED))
        else:
            self._book.store(self._ledger.fill(order, price))

    def _cancel(self, symbol: str, client_order_id: str) -> OrderState:
        order = self._find(symbol, client_order_id)
        if order is None or order.status is not OrderStatus.NEW:
            raise reject(-2011, f"Unknown order sent ({client_order_id}).")
        return self._book.store(attrs.evolve(order, status=OrderStatus.CANCELED))

    def _send(self, symbol: str, price: float) -> None:
        for send in list(self._subscribers):
            try:
                send.send_nowait((symbol, price))
            except trio.WouldBlock:
                pass  # newest-wins is the consumer's job; never block the market
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(send)



"""The simulated account's money and positions: wallet balance, leverage per symbol, the net
holding per symbol, and the fills that changed them.

One-way mode as on Binance USDⓈ-M: a symbol has one signed net position; an order on the other
side reduces it first. Reduce-only orders are clipped to what is held and never open or flip a
position. The order book decides *whether* an order executes; the ledger decides *what it does*.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import trio

from engine.errors import PermanentError
from engine.ids import position_of
from engine.model import Balance, ExchangePosition, Market, OrderKind, OrderSide, OrderState, OrderStatus, Side
from engine.sizing import realized_pnl, round_to

# Margin comparisons tolerate float noise well below a cent.
_EPSILON = 1e-9


@attrs.frozen
class Fill:
    """One execution. A simulation keeps every one (the report counts entries per position from
    them); a paper account keeps a bounded recent past (see `Ledger.__init__`)."""

    client_order_id: str
    symbol: str
    side: OrderSide
    kind: OrderKind
    quantity: float
    price: float
    reduce_only: bool
    at: float


@attrs.define
class Holding:
    """Signed net quantity (long > 0) and its average entry price."""

    quantity: float = 0.0
    entry_price: float = 0.0


def reject(code: int, message: str) -> PermanentError:
    """A refusal worded as Binance words it ("-2019 Margin is insufficient.")."""
    return PermanentError(f"{code} {message}")


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # set-up code outside trio.run
        return 0.0


class Ledger:
    def __init__(self, markets: Mapping[str, Market], balance: float, *, history: int | None = None) -> None:
        """`history`: keep at most about twice this many recent fills (None: all of them)."""
        self.markets = markets
        self.balance = float(balance)
        self.leverage: dict[str, int] = {}
        self.holdings: dict[str, Holding] = {}
        self.fills: list[Fill] = []
        self._history = history

    def reducible(self, symbol: str, side: OrderSide) -> float:
        """How much an order on `side` can reduce: the opposite-signed position, else 0."""
        held = self.holdings.get(symbol)
        quantity = held.quantity if held is not None else 0.0
        if (side is OrderSide.SELL and quantity > 0) or (side is OrderSide.BUY and quantity < 0):
            return abs(quantity)
        return 0.0

    def balance_now(self) -> Balance:
        used = sum(abs(h.quantity) * h.entry_price / self.leverage.get(symbol, 1)
                   for symbol, h in self.holdings.items())
        return Balance(total=self.balance, free=self.balance - used)

    def check_entry(self, symbol: str, side: OrderSide, quantity: float, price: float, market: Market) -> None:
        """Refuse an entry below the minimum notional or without the margin to open it."""
        notional = quantity * price
        if notional < market.min_notional:
            raise reject(-4164, f"Order's notional must be no smaller than {market.min_notional:g} "
                                f"(unless you choose reduce only); got {notional:g}.")
        opening = quantity - self.reducible(symbol, side)
        needed = max(opening, 0.0) * price / self.leverage.get(symbol, 1)
        if needed > self.balance_now().free + _EPSILON:
            raise reject(-2019, "Margin is insufficient.")

    def fill(self, order: OrderState, price: float) -> OrderState:
        """Execute at `price`: reduce-only fills are clipped to the position, entries net in."""
        market = self.markets[order.symbol]
        held = self.holdings.setdefault(order.symbol, Holding())
        reducible = self.reducible(order.symbol, order.side)
        quantity = min(order.quantity, reducible) if order.reduce_only else order.quantity
        reduced = min(quantity, reducible)
        if reduced > 0:
            side = Side.LONG if held.quantity > 0 else Side.SHORT
            self.balance += realized_pnl(side, held.entry_price, price, reduced)
        opened = quantity - reduced
        sign = 1 if order.side is OrderSide.BUY else -1
        if opened > 0:
            base = abs(held.quantity) if reduced == 0 else 0.0
            held.entry_price = (base * held.entry_price + opened * price) / (base + opened)
        held.quantity = round_to(held.quantity + sign * quantity, market.step_size)
        if held.quantity == 0:
            del self.holdings[order.symbol]
        self.fills.append(Fill(order.client_order_id, order.symbol, order.side, order.kind, quantity,
                               price, order.reduce_only, _now()))
        if self._history is not None and len(self.fills) > 2 * self._history:
            del self.fills[:-self._history]  # amortised: one cut per `history` fills
        return attrs.evolve(order, status=OrderStatus.FILLED, filled_quantity=quantity, average_price=price)

    def positions_snapshot(self) -> list[ExchangePosition]:
        """Non-zero positions only, quantity unsigned, as an exchange reports them.

        Sorted by symbol: Trio shuffles the order tasks run in, so insertion order would
        make the same seed give different reports.
        """
        return [
            ExchangePosition(symbol, Side.LONG if h.quantity > 0 else Side.SHORT, abs(h.quantity), h.entry_price)
            for symbol, h in sorted(self.holdings.items()) if h.quantity != 0
        ]

    def entry_fill_counts(self) -> dict[int, int]:
        """Position id → entry fills. More than one means an entry was sent twice and both filled."""
        counts: dict[int, int] = {}
        for fill in self.fills:
            position_id = position_of(fill.client_order_id)
            if not fill.reduce_only and position_id is not None:
                counts[position_id] = counts.get(position_id, 0) + 1
        return counts

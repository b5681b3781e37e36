"""The simulated exchange's orders: each by client id, the resting ones by symbol, and per symbol
the two trigger bounds that let a price tick skip a symbol without looking at any of its orders.

Closed orders (filled, cancelled) stay for look-ups. A simulation keeps all of them (its report
counts them); with `history` set, only the newest `history` closed orders are kept, so a paper
account that runs for months holds its resting orders plus a bounded recent past, never every
order it ever saw. Binance itself forgets old orders too (its order look-up has a retention).

When a journal follows the book (`track_changes`), every order stored and every order forgotten
is remembered until `take_changes`, so the journal writes exactly what changed since its last
write.
"""

from __future__ import annotations

import math
from collections import deque

from engine.model import OrderSide, OrderState, OrderStatus


class OrderBook:
    def __init__(self, history: int | None = None) -> None:
        if history is not None and history < 0:
            raise ValueError(f"history must be >= 0 or None, got {history!r}")
        self.orders: dict[str, OrderState] = {}  # by client id, insertion = placement order
        # Only resting (NEW) orders, by symbol then client id in placement order: a tick looks
        # at its own symbol's live stops, never at the history of filled and cancelled ones.
        self.resting: dict[str, dict[str, OrderState]] = {}
        # Per symbol with resting stops: (highest sell stop, lowest buy stop). A tick between
        # the two crosses nothing, which two comparisons tell without looking at any order.
        self.triggers: dict[str, tuple[float, float]] = {}
        self._history = history
        self._closed: deque[tuple[str, str | None]] = deque()  # (client id, exchange id), oldest first
        self._changed: dict[str, OrderState] | None = None
        self._forgotten: list[tuple[str, str | None]] = []

    def track_changes(self) -> None:
        """From now on remember what changed, for `take_changes`."""
        self._changed = {}
        self._forgotten = []

    @property
    def changed(self) -> bool:
        return bool(self._changed) or bool(self._forgotten)

    def take_changes(self) -> tuple[list[OrderState], list[tuple[str, str | None]]]:
        """Orders stored since the last call (newest state each) and the (client id, exchange id)
        of closed orders forgotten since; both lists are emptied."""
        stored = list(self._changed.values()) if self._changed is not None else []
        forgotten = self._forgotten
        if self._changed is not None:
            self._changed = {}
        self._forgotten = []
        return stored, forgotten

    def restore_changes(self, stored: list[OrderState], forgotten: list[tuple[str, str | None]]) -> None:
        """Put back what `take_changes` gave when the journal could not write it (it is retried)."""
        if self._changed is None:
            return
        newer = self._changed
        self._changed = {o.client_order_id: o for o in stored}
        self._changed.update(newer)
        self._forgotten = forgotten + self._forgotten

    def clear(self) -> None:
        """Forget everything (before an import). The dicts stay the same objects."""
        self.orders.clear()
        self.resting.clear()
        self.triggers.clear()
        self._closed.clear()

    def get(self, client_order_id: str) -> OrderState | None:
        return self.orders.get(client_order_id)

    def discard(self, client_order_id: str) -> None:
        """Drop a closed order whose client id is being used again: the new order is placed now."""
        self.orders.pop(client_order_id, None)

    def store(self, order: OrderState) -> OrderState:
        """Record the order's latest state and keep the resting index in step with it."""
        self.orders[order.client_order_id] = order
        if self._changed is not None:
            self._changed[order.client_order_id] = order
        symbol = order.symbol
        resting = self.resting.get(symbol)
        if order.status is OrderStatus.NEW:
            if resting is None:
                resting = self.resting[symbol] = {}
            resting[order.client_order_id] = order
        else:
            if self._history is not None:
                self._remember_closed(order)
            if resting is None or resting.pop(order.client_order_id, None) is None:
                return order
        if not resting:
            del self.resting[symbol]
            self.triggers.pop(symbol, None)
        else:
            sells = [o.stop_price or 0.0 for o in resting.values() if o.side is OrderSide.SELL]
            buys = [o.stop_price or math.inf for o in resting.values() if o.side is OrderSide.BUY]
            self.triggers[symbol] = (max(sells, default=-math.inf), min(buys, default=math.inf))
        return order

    def resting_sorted(self) -> list[OrderState]:
        """Resting orders sorted by symbol and client id (Trio shuffles task order; reports must not)."""
        resting = [o for orders in self.resting.values() for o in orders.values()]
        return sorted(resting, key=lambda o: (o.symbol, o.client_order_id))

    def _remember_closed(self, order: OrderState) -> None:
        assert self._history is not None
        self._closed.append((order.client_order_id, order.exchange_order_id))
        while len(self._closed) > self._history:
            client_id, exchange_id = self._closed.popleft()
            kept = self.orders.get(client_id)
            # The id may name a newer order by now (Binance lets a closed order's id be used again).
            if kept is not None and kept.status is not OrderStatus.NEW and kept.exchange_order_id == exchange_id:
                del self.orders[client_id]
                if self._changed is not None:
                    self._changed.pop(client_id, None)
                    self._forgotten.append((client_id, exchange_id))

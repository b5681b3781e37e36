"""Fills as Binance's user data stream reports them, so a stop-out needs no REST look-up.

The stream says what happened to an order as it happens: `ALGO_UPDATE` names the
market order a triggered stop became (`ai`) and, once the stop is `FINISHED`, that
order's executed quantity and average price (`aq`, `ap`); `ORDER_TRADE_UPDATE` gives
any order's status, cumulative filled quantity (`z`) and average price (`ap`).
When those figures show a stop *completely* filled, the adapter answers a look-up of
that stop from here, which saves the two signed REST calls (the algo order, then the
order it became) between the fill and the position recorded closed.

Only complete fills are answered from here: a stop that is triggering, triggered,
partly filled or finished without a fill, and any order the stream never mentioned
(it was down, or the event was lost), is looked up by REST as before. Nothing here is
ever taken for a fill by itself; the figures are the exchange's own. Memory is bounded:
the oldest entries go first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import attrs

from adapters.ccxt_orders import number
from engine.model import OrderKind, OrderSide, OrderState, OrderStatus

MAX_ENTRIES = 4096


@attrs.frozen
class _Algo:
    symbol: str
    side: OrderSide
    quantity: float
    trigger: float | None
    status: str
    actual_id: str
    filled: float
    average: float | None


@attrs.frozen
class _Trade:
    status: str
    filled: float
    average: float | None


class StreamFills:
    """What the user data stream said about orders, by client id (stops) and order id."""

    def __init__(self, limit: int = MAX_ENTRIES) -> None:
        self._limit = limit
        self._algos: OrderedDict[str, _Algo] = OrderedDict()
        self._trades: OrderedDict[str, _Trade] = OrderedDict()
        self.answered = 0  # look-ups answered from the stream (no REST)

    def on_event(self, event: Mapping[str, Any]) -> None:
        """Record one user-stream event; anything malformed is ignored (REST decides then)."""
        order = event.get("o")
        if not isinstance(order, Mapping):
            return
        kind = event.get("e")
        try:
            if kind == "ALGO_UPDATE":
                self._algo(order)
            elif kind == "ORDER_TRADE_UPDATE":
                self._trade(order)
        except (KeyError, TypeError, ValueError):
            return

    def _algo(self, o: Mapping[str, Any]) -> None:
        cid, side = str(o["caid"]), str(o.get("S") or "").lower()
        quantity = number(o.get("q"))
        if not cid or side not in ("buy", "sell") or quantity is None or quantity <= 0:
            return
        self._put(self._algos, cid, _Algo(str(o["s"]), OrderSide(side), quantity, number(o.get("tp")),
                                          str(o.get("X") or ""), str(o.get("ai") or ""),
                                          number(o.get("aq")) or 0.0, number(o.get("ap"))))

    def _trade(self, o: Mapping[str, Any]) -> None:
        order_id = str(o["i"])
        if order_id:
            self._put(self._trades, order_id, _Trade(str(o.get("X") or ""), number(o.get("z")) or 0.0,
                                                     number(o.get("ap"))))

    def _put(self, book: OrderedDict[str, Any], key: str, value: Any) -> None:
        book[key] = value
        book.move_to_end(key)
        while len(book) > self._limit:
            book.popitem(last=False)

    def filled_stop(self, client_order_id: str) -> OrderState | None:
        """The stop as FILLED with the stream's figures, if the stream showed it completely filled."""
        algo = self._algos.get(client_order_id)
        if algo is None or algo.status not in ("TRIGGERED", "FINISHED") or not algo.actual_id:
            return None
        filled, average = (algo.filled, algo.average) if algo.status == "FINISHED" else (0.0, None)
        trade = self._trades.get(algo.actual_id)
        if trade is not None and trade.status == "FILLED":
            filled, average = trade.filled, trade.average
        tolerance = algo.quantity * 1e-9
        if not (average and average > 0 and filled >= algo.quantity - tolerance):
            return None
        self.answered += 1
        return OrderState(client_order_id=client_order_id, symbol=algo.symbol, side=algo.side, kind=OrderKind.STOP,
                          quantity=algo.quantity, status=OrderStatus.FILLED, filled_quantity=filled,
                          average_price=average, stop_price=algo.trigger, reduce_only=True,
                          exchange_order_id=None)

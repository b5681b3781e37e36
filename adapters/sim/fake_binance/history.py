"""Order history: GET /fapi/v1/allOrders and GET /fapi/v1/allAlgoOrders, as Binance documents them.

An auditor (the crash trials, an operator after an incident) needs every order the account ever
had, not only the open ones: an entry the exchange executed while its sender was dead shows up
here and nowhere else once its position has closed. Binance's rules, followed here:

- `symbol` is mandatory; `orderId` (`algoId`) returns that order and later ones, ascending;
  without it the most recent `limit` orders are returned (still ascending); `limit` defaults to
  500, at most 1000; `startTime`/`endTime` filter on the creation time, at most 7 days apart, and
  without them the last 7 days are searched.
- An order CANCELED or EXPIRED without any fill is no longer found 3 days after its creation, and
  no order 90 days after it.
- allOrders also lists the market order a triggered conditional (algo) order became, under the
  algo order's client id, as a query by `orderId` finds it.

Like the simulator, the account keeps one order per client id: a client id used again after its
order closed shows only its newest order.
"""

from __future__ import annotations

from adapters.sim.fake_binance import params as p
from adapters.sim.fake_binance import shapes
from adapters.sim.fake_binance.account import Account, now_ms
from adapters.sim.fake_binance.params import Rejection
from adapters.sim.fake_binance.shapes import JSON, OrderMeta
from engine.model import OrderState, OrderStatus

DEFAULT_LIMIT, MAX_LIMIT = 500, 1000
DAY_MS = 24 * 3600 * 1000
MAX_SPAN_MS = 7 * DAY_MS
UNFILLED_KEPT_MS = 3 * DAY_MS
KEPT_MS = 90 * DAY_MS


def _limit(params: dict[str, str]) -> int:
    if "limit" not in params:
        return DEFAULT_LIMIT
    limit = p.integer(params, "limit")
    if not 1 <= limit <= MAX_LIMIT:
        raise Rejection(-1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def _window(params: dict[str, str], now: int) -> tuple[int, int]:
    """The creation-time window searched: startTime..endTime, at most 7 days, the last 7 by default."""
    start = p.integer(params, "startTime") if "startTime" in params else None
    end = p.integer(params, "endTime") if "endTime" in params else None
    if start is None and end is None:
        return now - MAX_SPAN_MS, now
    if start is None:
        assert end is not None
        start = end - MAX_SPAN_MS
    if end is None:
        end = start + MAX_SPAN_MS
    if end < start:
        raise Rejection(-1128, "Combination of optional parameters invalid.")
    if end - start > MAX_SPAN_MS:
        raise Rejection(-1127, "More than 168 hours between startTime and endTime.")
    return start, end


def _kept(order: OrderState, meta: OrderMeta, now: int) -> bool:
    if now - meta.created_ms > KEPT_MS:
        return False
    unfilled_end = order.status is OrderStatus.CANCELED and not order.filled_quantity  # canceled or expired
    return not (unfilled_end and now - meta.created_ms > UNFILLED_KEPT_MS)


def _select(rows: list[tuple[int, int, JSON]], params: dict[str, str], id_key: str, now: int) -> list[JSON]:
    """rows: (id, creation ms, json). Binance's orderId/window/limit rules, ascending by id."""
    limit = _limit(params)
    start, end = _window(params, now)
    found = sorted((r for r in rows if start <= r[1] <= end), key=lambda r: r[0])
    if id_key in params:
        first = p.integer(params, id_key)
        return [r[2] for r in found if r[0] >= first][:limit]
    return [r[2] for r in found[-limit:]]


def _orders(account: Account, symbol: str, now: int, *, algo: bool) -> list[tuple[OrderState, OrderMeta]]:
    found = []
    for meta in list(account.orders.values()):
        if meta.symbol != symbol or meta.algo != algo:
            continue
        order = account.exchange.order(meta.client_id)
        if order is not None and _kept(order, meta, now):
            found.append((order, account.meta_of(order)))
    return found


async def all_orders(account: Account, params: dict[str, str]) -> list[JSON]:
    """GET /fapi/v1/allOrders: every plain order of one symbol, open, filled or ended."""
    symbol = account.symbol(params)
    now = now_ms()
    rows: list[tuple[int, int, JSON]] = [(m.order_id, m.created_ms, shapes.order_json(o, m))
                                         for o, m in _orders(account, symbol, now, algo=False)]
    for order, meta in _orders(account, symbol, now, algo=True):
        if meta.actual_order_id is not None:  # the market order the triggered stop became
            shown = shapes.actual_order_json(order, meta)
            rows.append((meta.actual_order_id, int(shown["time"]), shown))
    return _select(rows, params, "orderId", now)


async def all_algo_orders(account: Account, params: dict[str, str]) -> list[JSON]:
    """GET /fapi/v1/allAlgoOrders: every conditional order of one symbol, whatever its status."""
    symbol = account.symbol(params)
    now = now_ms()
    rows = [(m.order_id, m.created_ms, shapes.algo_json(o, m)) for o, m in _orders(account, symbol, now, algo=True)]
    return _select(rows, params, "algoId", now)


ROUTES = {("GET", "/fapi/v1/allOrders"): all_orders, ("GET", "/fapi/v1/allAlgoOrders"): all_algo_orders}

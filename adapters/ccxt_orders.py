"""ccxt's unified dicts (markets, positions, orders) as the engine's values.

Pure functions, apart from the adapter so they can be read and tested without a
client. What ccxt leaves out of an answer (Binance's algo cancel returns ids only)
comes from the request the engine made; numbers that are missing, empty or not
finite are treated as absent, never as zero prices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine.checks import finite
from engine.ids import kind_of
from engine.model import (
    ExchangePosition,
    OrderKind,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderStatus,
    Side,
)

SETTLE = "USDT"
DEFAULT_MAX_LEVERAGE = 125
_STOP_TYPES = frozenset({"stop", "stop_market", "stop_loss", "take_profit", "take_profit_market",
                         "trailing_stop_market"})
_STATUS = {
    "open": OrderStatus.NEW,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "canceling": OrderStatus.NEW,
    "rejected": OrderStatus.REJECTED,
    # Binance expires a reduce-only stop with nothing left to reduce; the simulator calls
    # that CANCELED, and so does the engine's bookkeeping.
    "expired": OrderStatus.CANCELED,
}


# Binance algo orders, by `algoStatus`. ccxt reads TRIGGERING as "open" and TRIGGERED /
# FINISHED as "closed", i.e. a stop that stopped protecting as resting and a stop that may
# never have filled as filled; the adapter reads the algo status itself instead. TRIGGERED
# and FINISHED are resolved by the fill of the order the stop became (see
# `CcxtExchange._state`); TRIGGERING is neither resting nor filled.
ALGO_RESOLVED_BY_FILL = frozenset({"TRIGGERED", "FINISHED"})
_ALGO_STATUS = {
    "NEW": OrderStatus.NEW,
    "TRIGGERING": OrderStatus.UNKNOWN,
    "TRIGGERED": OrderStatus.UNKNOWN,
    "FINISHED": OrderStatus.UNKNOWN,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
}


def algo_status(order: Mapping[str, Any]) -> str | None:
    """Binance's `algoStatus` of an algo (conditional) order; None for any other order."""
    info = order.get("info")
    status = info.get("algoStatus") if isinstance(info, Mapping) else None
    return str(status) if status else None


def number(value: Any) -> float | None:
    """A finite float, or None for a missing, empty, malformed or infinite value."""
    if value is None or value == "":
        return None
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        return None
    return finite(parsed)


def held_position(p: Mapping[str, Any], native: str) -> ExchangePosition | None:
    """One ccxt position as the engine's, or None when nothing is held."""
    info = p.get("info") or {}
    contracts = number(p.get("contracts")) or 0.0
    size = number(p.get("contractSize")) or 1.0
    quantity = abs(contracts * size)
    if quantity == 0:
        return None
    side = p.get("side")
    if side not in ("long", "short"):
        signed = number(info.get("positionAmt")) or 0.0
        side = "long" if signed > 0 else "short"
    return ExchangePosition(native, Side(side), quantity, number(p.get("entryPrice")) or 0.0)


def kind_from_order(order: Mapping[str, Any]) -> OrderKind:
    """A foreign order's kind: a trigger type is a stop, reduce-only a close, else an entry."""
    if str(order.get("type") or "").lower() in _STOP_TYPES or number(order.get("triggerPrice")):
        return OrderKind.STOP
    return OrderKind.CLOSE if order.get("reduceOnly") is True else OrderKind.ENTRY


def order_state(order: Mapping[str, Any], native: str, *, request: OrderRequest | None = None,
                client_order_id: str | None = None, kind: OrderKind | None = None,
                default_status: OrderStatus | None = None) -> OrderState:
    """The engine's view of a ccxt order; what the exchange leaves out comes from the request.

    A Binance algo order is read by its `algoStatus`; one that triggered comes back UNKNOWN
    with no fill, and the adapter then asks for the fill of the order it became. Any other
    order reported filled without a fill is UNKNOWN too: a fill is never assumed.
    """
    cid = order.get("clientOrderId") or client_order_id or (request.client_order_id if request else "")
    kind = (request.kind if request else None) or kind or kind_of(cid) or kind_from_order(order)
    raw_status = order.get("status")
    algo = algo_status(order)
    if algo is not None:
        status = _ALGO_STATUS.get(algo, OrderStatus.UNKNOWN)
    elif raw_status is None:
        status = default_status or OrderStatus.UNKNOWN
    else:
        status = _STATUS.get(str(raw_status), OrderStatus.UNKNOWN)
    side_text = order.get("side") or (request.side.value if request else None)
    side = OrderSide(side_text) if side_text in ("buy", "sell") else OrderSide.BUY
    quantity = number(order.get("amount"))
    if quantity is None:
        quantity = request.quantity if request else 0.0
    filled = (number(order.get("filled")) or 0.0) if algo is None else 0.0
    average = number(order.get("average"))
    if filled > 0 and not average:
        cost = number(order.get("cost"))
        average = cost / filled if cost else None
    if status is OrderStatus.FILLED and filled == 0:
        status = OrderStatus.UNKNOWN
    stop = number(order.get("triggerPrice")) or number(order.get("stopPrice"))
    if stop is None and request is not None and kind is OrderKind.STOP:
        stop = request.stop_price
    reduce_only = order.get("reduceOnly")
    if not isinstance(reduce_only, bool):
        reduce_only = kind is not OrderKind.ENTRY
    if not native and request is not None:
        native = request.symbol
    order_id = order.get("id")
    return OrderState(
        client_order_id=cid, symbol=native, side=side, kind=kind, quantity=quantity,
        status=status, filled_quantity=filled, average_price=average if filled > 0 else None,
        stop_price=stop, reduce_only=reduce_only,
        exchange_order_id=str(order_id) if order_id not in (None, "") else None)


def last_prices(raw: Mapping[str, Any] | None, key: str, asked: set[str],
                native_of: Callable[[str | None, Any], str]) -> dict[str, float]:
    """The asked symbols' positive finite prices from a ccxt tickers/last-prices answer."""
    prices: dict[str, float] = {}
    for unified, entry in (raw or {}).items():
        native = native_of(entry.get("symbol") or unified, entry.get("info"))
        price = number(entry.get(key))
        if native in asked and price is not None and price > 0:
            prices[native] = price
    return prices


def resting(states: Iterable[OrderState]) -> list[OrderState]:
    """The resting (NEW) orders, once each, in a stable order.

    Bybit may list a conditional order among both the plain and the trigger orders, hence
    the de-duplication; the key pairs both ids because Binance's orderId and algoId are
    separate counters.
    """
    seen: set[tuple[str | None, str]] = set()
    found: list[OrderState] = []
    for state in states:
        key = (state.exchange_order_id, state.client_order_id)
        if state.status is OrderStatus.NEW and key not in seen:
            seen.add(key)
            found.append(state)
    return sorted(found, key=lambda o: (o.symbol, o.client_order_id))

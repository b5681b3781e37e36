"""Reduce-only market closes larger than one market order may be, sent as several.

Binance caps a market order at MARKET_LOT_SIZE `maxQty` (BTCUSDT: 120 BTC, against 1,000
for limit orders) and refuses a larger one (-4005). A position can outgrow it (entries
add up, or the cap is lowered), and a close refused for its size leaves the money at
risk, so a close is sent in chunks of at most `maxQty`, one after the other. A chunk
that fills only in part (Binance expires the rest of a market order its price band
stops) is followed by one for what is left; a chunk that fills nothing ends the close,
which then reports what did fill.

Chunk k of a close with client id `c` is sent as `c` (k = 1) or `c.k`, so each is
idempotent and a close whose answer was lost is found again by `find_close`, which
adds up the chunks. The engine sees one order: its filled quantity and average price
are the chunks' together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal

import attrs

from engine.model import OrderRequest, OrderState, OrderStatus

MAX_CHUNKS = 50  # a close needing more is sent as far as this and reported partly filled

PlaceOne = Callable[[OrderRequest], Awaitable[OrderState]]
FindOne = Callable[[str], Awaitable[OrderState | None]]


def chunk_id(client_order_id: str, k: int) -> str:
    return client_order_id if k == 1 else f"{client_order_id}.{k}"


def _on_grid(value: float, step: float) -> float:
    """`value` floored to the step grid, computed in decimal so 0.3 - 0.1 stays 0.2."""
    grid = Decimal(repr(step))
    return float((Decimal(repr(value)) / grid).to_integral_value(rounding="ROUND_FLOOR") * grid)


def _tolerance(step: float) -> float:
    return step / 2


async def place_close(request: OrderRequest, max_qty: float, step: float, place_one: PlaceOne) -> OrderState:
    """Send `request` (a reduce-only market close) as chunks of at most `max_qty`."""
    states: list[OrderState] = []
    left = request.quantity
    for k in range(1, MAX_CHUNKS + 1):
        if left <= _tolerance(step):
            break
        quantity = min(left, _on_grid(max_qty, step))
        state = await place_one(attrs.evolve(request, quantity=quantity,
                                             client_order_id=chunk_id(request.client_order_id, k)))
        states.append(state)
        if state.filled_quantity <= 0:
            break  # the market took nothing: sending more now would only repeat that
        left = _on_grid(left - state.filled_quantity + _tolerance(step), step)
    return combined(request.client_order_id, states, wanted=request.quantity, step=step)


async def find_close(client_order_id: str, max_qty: float | None, step: float, find_one: FindOne) -> OrderState | None:
    """A close found by its client id, with the chunks that followed it added up.

    A next chunk can exist only after a chunk of the full `max_qty` that filled, or after
    one that filled in part; any other close is a single order and costs one look-up.
    """
    first = await find_one(client_order_id)
    if first is None:
        return None
    states = [first]
    for k in range(2, MAX_CHUNKS + 1):
        last = states[-1]
        full = max_qty is not None and last.quantity >= max_qty - _tolerance(step)
        partial = 0 < last.filled_quantity < last.quantity - _tolerance(step)
        if last.filled_quantity <= 0 or not (full or partial):
            break
        found = await find_one(chunk_id(client_order_id, k))
        if found is None:
            break
        states.append(found)
    if len(states) == 1:
        return first
    return combined(client_order_id, states, wanted=None, step=step)


def combined(client_order_id: str, states: list[OrderState], *, wanted: float | None, step: float) -> OrderState:
    """The chunks as one order: filled and average price over all of them."""
    last = states[-1]
    filled = sum(s.filled_quantity for s in states)
    cost = sum(s.filled_quantity * (s.average_price or 0.0) for s in states)
    quantity = wanted if wanted is not None else filled + max(0.0, last.quantity - last.filled_quantity)
    if filled <= 0:
        status = last.status
    elif filled >= quantity - _tolerance(step):
        status = OrderStatus.FILLED
    else:
        status = OrderStatus.CANCELED  # the rest expired unfilled, as Binance ends such a market order
    return attrs.evolve(states[0], client_order_id=client_order_id, quantity=quantity, status=status,
                        filled_quantity=filled, average_price=cost / filled if filled > 0 else None)

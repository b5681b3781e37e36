"""Resuming an open position after a crash: a trailing move may have been in flight.

A move places the next stop (the next id in the position's deterministic sequence) before the
store hears of it, then cancels the old one. Killed in between, the engine restarts with the old
stop on record while the exchange may hold the new one, or may already have filled it and closed
the position. The ids being deterministic, the restart asks the exchange for the ids after the
stored one: the last that rests (or filled) becomes the position's stop, and the one on record
is handed to the follower as stale, to be cancelled once the position is covered.
"""

from __future__ import annotations

import attrs

from engine import ids
from engine.events import EventKind
from engine.model import OrderKind, OrderRecord, OrderStatus, Position, TrailingRecord
from engine.nursery import orders
from engine.nursery.context import EngineContext
from engine.nursery.position_book import PositionBook

MAX_IN_FLIGHT = 5  # ids looked at past the stored one; a move is placed only after the last was answered


async def adopt_in_flight_stop(ctx: EngineContext, book: PositionBook, position: Position,
                               record: TrailingRecord | None) -> tuple[Position, TrailingRecord | None, str | None]:
    """(position, trailing record, the stop on record now superseded or None)."""
    stored = (record.stop_client_id if record is not None else None) or position.stop_client_id
    if stored is None:
        return position, record, None

    def emit(kind: EventKind, detail: str) -> None:
        ctx.event(kind, detail, position_id=position.id)

    found = None
    seq = ids.stop_seq(stored)
    for step in range(1, MAX_IN_FLIGHT + 1):
        cid = ids.stop_id(position.id, seq + step)
        state, known = await orders.lookup(ctx, position.symbol, cid, emit)
        if not known or state is None:
            break
        if state.status is OrderStatus.NEW or state.filled_quantity > 0:
            found = state
    if found is None:
        return position, record, None
    price = found.stop_price if found.stop_price is not None else position.stop_price
    adopted = attrs.evolve(position, stop_client_id=found.client_order_id, stop_price=price)
    ctx.writer.submit(OrderRecord(found.client_order_id, position.id, position.symbol, OrderKind.STOP, found.side,
                                  found.quantity, found.status, stop_price=price,
                                  fill_price=found.average_price if found.filled_quantity > 0 else None,
                                  updated_at=ctx.clock.now()))
    book.save(adopted)
    emit(EventKind.STOP_MOVED, f"{stored} -> {found.client_order_id} @ {price:g} (found at start-up: the move was "
                               f"in flight when the engine stopped)")
    if record is not None and price is not None:
        record = attrs.evolve(record, stop_client_id=found.client_order_id, stop_price=price)
    return adopted, record, stored

"""The atomic open: intent → entry → protective stop (or emergency close).

Every step updates an `OpenProgress`; whatever interrupts the procedure, the
progress says what is true on the exchange and `decide_outcome` names it.
Once an entry may have filled, everything that protects the money runs in
`settle`, shielded and bounded by `cleanup_timeout` (DESIGN.md invariant 3).
Orders are idempotent: every retry reuses the step's client order id and a
lost answer is looked up by that id before anything else is sent.
"""

from __future__ import annotations

import logging

import trio

from engine import ids
from engine.call_points import CallPoint
from engine.errors import CallTimeout, DuplicateOrderError, PermanentError, StorageError
from engine.events import EventKind
from engine.lifecycle import OpenProgress, position_after
from engine.model import (
    OrderKind,
    OrderRecord,
    OrderRequest,
    OrderState,
    OrderStatus,
    Position,
)
from engine.nursery import orders
from engine.nursery.context import EngineContext
from engine.sizing import initial_stop_price

log = logging.getLogger("trio_bot.open")


class Opener:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def open(self, p: OpenProgress, base: Position) -> None:
        ctx, s = self.ctx, p.signal
        entry = OrderRequest(s.symbol, s.side.entry_order_side, OrderKind.ENTRY, p.quantity,
                             base.entry_client_id)
        try:
            await ctx.call(CallPoint.RECORD_INTENT, ctx.storage.record_intent, base,
                           self._order_record(p, entry, OrderStatus.PENDING))
        except (StorageError, CallTimeout) as exc:
            p.intent_error = str(exc)
            self._event(p, EventKind.INTENT_FAILED, str(exc))
            return
        p.intent_stored = True
        ctx.positions[base.id] = base
        self._event(p, EventKind.INTENT_STORED, f"{s.side} {p.quantity:g} {s.symbol}, entry id {entry.client_order_id}")
        try:
            p.entry_sent = True
            self._event(p, EventKind.ENTRY_SENT, entry.client_order_id)
            self._record_entry(p, await ctx.order(CallPoint.ENTRY_ORDER, False, ctx.exchange.place_order, entry))
        except DuplicateOrderError as exc:
            p.entry_error = str(exc)  # an earlier send landed: look it up
        except PermanentError as exc:
            p.entry_error = f"rejected: {exc}"
            p.entry_resolved = True
            self._event(p, EventKind.ENTRY_REJECTED, str(exc))
        except Exception as exc:  # transient, timeout, anything: outcome unknown until looked up
            p.entry_error = str(exc) or type(exc).__name__
            self._event(p, EventKind.ENTRY_UNANSWERED, p.entry_error)
        finally:
            await self.settle_shielded(p, base)

    async def settle_shielded(self, p: OpenProgress, base: Position) -> None:
        """Resolve and protect whatever the exchange has; cancellation can't skip it."""
        with trio.move_on_after(self.ctx.config.cleanup_timeout, shield=True) as cleanup:
            await self._settle(p)
        if cleanup.cancelled_caught:
            p.cleanup_expired = True
            self._event(p, EventKind.CLEANUP_EXPIRED, f"after {self.ctx.config.cleanup_timeout:g}s")
        self._persist(p, base)

    async def _settle(self, p: OpenProgress) -> None:
        if p.entry_sent and not p.entry_resolved:
            await self._resolve_entry(p)
        if p.filled and not p.closed:
            await self._protect(p)
            if not p.protected and not p.closed:
                await self._emergency_close(p)

    # --- entry ---

    def _record_entry(self, p: OpenProgress, state: OrderState) -> None:
        if state.filled_quantity > 0:
            p.filled_quantity = state.filled_quantity
            p.fill_price = state.average_price
            p.entry_resolved = True
            self._event(p, EventKind.ENTRY_FILLED, f"{state.filled_quantity:g} @ {state.average_price:g}")
        elif state.status in (OrderStatus.REJECTED, OrderStatus.CANCELED):
            p.entry_resolved = True
            p.entry_error = f"entry order {state.status}"

    async def _resolve_entry(self, p: OpenProgress) -> None:
        cid = ids.entry_id(p.position_id)
        found, known = await orders.lookup(self.ctx, p.signal.symbol, cid, self._emitter(p))
        if not known:
            self._event(p, EventKind.ENTRY_UNRESOLVED, "could not look up the entry order")
            return
        if found is None:
            p.entry_resolved = True
            self._event(p, EventKind.ENTRY_NOT_FOUND, f"{cid}: the exchange never saw it")
            return
        self._record_entry(p, found)

    # --- protection ---

    def _record_stop(self, p: OpenProgress, state: OrderState) -> None:
        p.stop_status = state.status
        if state.stop_price is not None:
            p.stop_price = state.stop_price
        if state.status is OrderStatus.FILLED:
            p.stopped_out = True
            p.closed = True
            p.close_price = state.average_price
            self._event(p, EventKind.STOPPED_OUT, f"stop filled @ {state.average_price}")
        elif state.status is OrderStatus.NEW:
            self._event(p, EventKind.STOP_PLACED, f"{state.client_order_id} @ {p.stop_price:g}")

    async def _protect(self, p: OpenProgress) -> None:
        ctx, s = self.ctx, p.signal
        assert p.fill_price is not None
        p.stop_price = initial_stop_price(s.side, p.fill_price, ctx.config.stop_loss_percent,
                                          ctx.markets[s.symbol].tick_size)
        p.stop_client_id = ids.stop_id(p.position_id, 1)
        request = OrderRequest(s.symbol, s.side.exit_order_side, OrderKind.STOP, p.filled_quantity,
                               p.stop_client_id, p.stop_price)
        placed = await orders.place(ctx, request, self._emitter(p))
        if placed.state is not None:
            self._record_stop(p, placed.state)
        else:
            p.stop_error = placed.error

    async def _emergency_close(self, p: OpenProgress) -> None:
        ctx, s = self.ctx, p.signal
        self._event(p, EventKind.EMERGENCY_CLOSE, p.stop_error or "")
        request = OrderRequest(s.symbol, s.side.exit_order_side, OrderKind.CLOSE, p.filled_quantity,
                               ids.close_id(p.position_id))
        # A refused close is retried too: the money is at risk until it goes through.
        placed = await orders.place(ctx, request, self._emitter(p), retry_refused=True)
        if placed.state is not None and placed.state.filled_quantity > 0:
            p.closed = True
            p.close_price = placed.state.average_price
            self._event(p, EventKind.CLOSED, f"emergency close filled @ {placed.state.average_price}")
            return
        if await orders.is_flat(ctx, s.symbol):
            p.closed = True
            self._event(p, EventKind.CLOSED, "no position left on the exchange")
            return
        p.close_error = placed.error
        self._event(p, EventKind.UNPROTECTED, f"no stop-loss and close failed: {p.close_error}")
        log.error("position %s on %s is UNPROTECTED: %s", p.position_id, s.symbol, p.close_error)

    # --- records ---

    def _order_record(self, p: OpenProgress, req: OrderRequest, status: OrderStatus,
                      fill_price: float | None = None) -> OrderRecord:
        return OrderRecord(client_order_id=req.client_order_id, position_id=p.position_id,
                           symbol=req.symbol, kind=req.kind, side=req.side, quantity=req.quantity,
                           status=status, stop_price=req.stop_price, fill_price=fill_price,
                           updated_at=self.ctx.clock.now())

    def _persist(self, p: OpenProgress, base: Position) -> None:
        ctx, s = self.ctx, p.signal
        now = ctx.clock.now()
        if not p.intent_stored:
            return
        position = position_after(p, ctx.positions.get(base.id, base), now)
        ctx.save_position(position)
        entry_status = (OrderStatus.FILLED if p.filled else OrderStatus.UNKNOWN if not p.entry_resolved
                        else OrderStatus.REJECTED if p.entry_sent else OrderStatus.PENDING)
        records = [OrderRecord(base.entry_client_id, p.position_id, s.symbol, OrderKind.ENTRY,
                               s.side.entry_order_side, p.filled_quantity or p.quantity, entry_status,
                               fill_price=p.fill_price, updated_at=now)]
        if p.stop_client_id is not None and p.stop_status is not None:
            records.append(OrderRecord(p.stop_client_id, p.position_id, s.symbol, OrderKind.STOP,
                                       s.side.exit_order_side, p.filled_quantity, p.stop_status,
                                       stop_price=p.stop_price,
                                       fill_price=p.close_price if p.stopped_out else None, updated_at=now))
        if p.closed and not p.stopped_out:
            records.append(OrderRecord(ids.close_id(p.position_id), p.position_id, s.symbol, OrderKind.CLOSE,
                                       s.side.exit_order_side, p.filled_quantity, OrderStatus.FILLED,
                                       fill_price=p.close_price, updated_at=now))
        ctx.writer.submit(*records)

    def _emitter(self, p: OpenProgress) -> orders.Emit:
        return lambda kind, detail: self._event(p, kind, detail)

    def _event(self, p: OpenProgress, kind: EventKind, detail: str = "") -> None:
        self.ctx.event(kind, detail, signal_id=p.signal.id,
                       position_id=p.position_id if p.intent_stored else None)


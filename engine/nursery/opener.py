"""The atomic open: intent → entry → protective stop (or emergency close).

Each step advances an `OpenRun` through the open's state machine
(`engine.opening`): whatever interrupts the procedure, the run's step says what
is true on the exchange and the outcome is looked up from it. Once an entry may
have filled, everything that protects the money runs in `settle`, shielded and
bounded by `cleanup_timeout` (DESIGN.md invariant 3). Orders are idempotent:
every retry reuses the step's client order id and a lost answer is looked up by
that id before anything else is sent. An entry whose outcome one look-up cannot
settle is handed to the resolver (`engine/nursery/resolver.py`), which keeps
looking in the background so the wave is not held up; the position stays
`opening` in the store until it is decided.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from engine import ids
from engine.call_points import CallPoint
from engine.errors import CallTimeout, DuplicateOrderError, PermanentError, StorageError
from engine.events import EventKind
from engine.model import OrderKind, OrderRecord, OrderRequest, OrderState, OrderStatus, Position
from engine.nursery import orders
from engine.nursery.context import EngineContext
from engine.nursery.position_book import PositionBook
from engine.opening import OpenRun, Step
from engine.sizing import initial_stop_price

log = logging.getLogger("trio_bot.open")

# Takes over a run whose entry is still of unknown outcome, with what is left of its window
# (the engine's resolver).
Handover = Callable[[OpenRun, Position, float], None]


class Opener:
    def __init__(self, ctx: EngineContext, book: PositionBook, handover: Handover | None = None) -> None:
        self.ctx = ctx
        self.book = book
        self.handover = handover

    async def open(self, run: OpenRun, base: Position) -> None:
        ctx, s = self.ctx, run.signal
        entry = OrderRequest(s.symbol, s.side.entry_order_side, OrderKind.ENTRY, run.quantity,
                             base.entry_client_id)
        try:
            await ctx.call(CallPoint.RECORD_INTENT, ctx.storage.record_intent, base,
                           self._order_record(run, entry, OrderStatus.PENDING))
        except (StorageError, CallTimeout) as exc:
            run.advance(Step.INTENT_FAILED, intent_error=str(exc))
            self._event(run, EventKind.INTENT_FAILED, str(exc))
            return
        run.advance(Step.INTENT_STORED)
        self.book.stored(base)
        self._event(run, EventKind.INTENT_STORED,
                    f"{s.side} {run.quantity:g} {s.symbol}, entry id {entry.client_order_id}")
        try:
            run.advance(Step.ENTRY_SENT)
            self._event(run, EventKind.ENTRY_SENT, entry.client_order_id)
            self.entry_answer(run, await ctx.order(CallPoint.ENTRY_ORDER, False, entry.client_order_id,
                                                   ctx.exchange.place_order, entry))
        except DuplicateOrderError as exc:
            run.note(entry_error=str(exc))  # an earlier send landed: look it up
        except PermanentError as exc:
            run.advance(Step.ENTRY_FAILED, entry_error=f"rejected: {exc}")
            self._event(run, EventKind.ENTRY_REJECTED, str(exc))
        except Exception as exc:  # transient, timeout, anything: outcome unknown until looked up
            run.note(entry_error=str(exc) or type(exc).__name__)
            self._event(run, EventKind.ENTRY_UNANSWERED, str(run.facts.entry_error))
        finally:
            await self.settle_shielded(run, base)

    async def settle_shielded(self, run: OpenRun, base: Position, window: float | None = None) -> None:
        """Resolve and protect whatever the exchange has; cancellation can't skip it.

        An entry still of unknown outcome after one look-up is handed to the resolver
        (`handover`) for the rest of its `window` (default `unknown_outcome_window`), which
        keeps looking in the background: the wave is not held up. With no window left, the
        one look-up decides.
        """
        window = self.ctx.config.unknown_outcome_window if window is None else max(0.0, window)
        with trio.move_on_after(self.ctx.config.cleanup_timeout, shield=True) as cleanup:
            await self._settle(run, window)
        if cleanup.cancelled_caught:
            self._event(run, EventKind.CLEANUP_EXPIRED, f"after {self.ctx.config.cleanup_timeout:g}s")
        self.persist(run, base)
        if run.step is Step.ENTRY_SENT and self.handover is not None:
            self.handover(run, base, window)

    async def _settle(self, run: OpenRun, window: float) -> None:
        if run.step is Step.ENTRY_SENT:
            await self._first_lookup(run, window)
        if run.step is Step.FILLED:
            await self.protect(run)

    # --- entry ---

    def entry_answer(self, run: OpenRun, state: OrderState) -> None:
        """What an answer about the entry says: filled, refused, or (still) unknown."""
        if state.filled_quantity > 0:
            run.advance(Step.FILLED, filled_quantity=state.filled_quantity, fill_price=state.average_price)
            self._event(run, EventKind.ENTRY_FILLED, f"{state.filled_quantity:g} @ {state.average_price:g}")
        elif state.status in (OrderStatus.REJECTED, OrderStatus.CANCELED):
            run.advance(Step.ENTRY_FAILED, entry_error=f"entry order {state.status}")

    async def _first_lookup(self, run: OpenRun, window: float) -> None:
        """One look-up of an entry whose answer was lost: most are answered here.

        "Not found" right after a lost answer is no proof (Binance documents that a 503
        "Unknown error" / -1007 may still execute), so a run still `entry_sent` after it
        is left to the resolver, which keeps looking for `unknown_outcome_window`.
        """
        ctx, cid = self.ctx, ids.entry_id(run.position_id)
        try:  # one attempt, not retried: the resolver asks again, without holding up the wave
            found, known = await ctx.call_once(CallPoint.QUERY, ctx.config.read_deadline, ctx.exchange.fetch_order,
                                               run.signal.symbol, cid), True
        except Exception as exc:
            found, known = None, False
            self._event(run, EventKind.LOOKUP_FAILED, f"{cid}: {exc}")
        if known and found is not None:
            self.entry_answer(run, found)
        elif known and window <= 0:  # its window has passed: "not found" is believed
            run.advance(Step.ENTRY_NOT_FOUND)
            self._event(run, EventKind.ENTRY_NOT_FOUND, f"{cid}: the exchange never saw it")
        if run.step is Step.ENTRY_SENT:
            what = "could not look it up" if not known else "not found yet" if found is None else f"{found.status}"
            self._event(run, EventKind.ENTRY_UNRESOLVED, f"{cid}: {what}; being resolved")

    # --- protection ---

    async def protect(self, run: OpenRun) -> None:
        """A fill: place its stop-loss, else close it (callers shield this)."""
        ctx, s, f = self.ctx, run.signal, run.facts
        assert f.fill_price is not None
        stop_price = initial_stop_price(s.side, f.fill_price, ctx.config.stop_loss_percent,
                                        ctx.markets[s.symbol].tick_size)
        stop = OrderRequest(s.symbol, s.side.exit_order_side, OrderKind.STOP, f.filled_quantity,
                            ids.stop_id(run.position_id, 1), stop_price)
        close = OrderRequest(s.symbol, s.side.exit_order_side, OrderKind.CLOSE, f.filled_quantity,
                             ids.close_id(run.position_id))
        run.note(stop_client_id=stop.client_order_id, stop_price=stop_price)
        if run.resumed_after_crash:  # the crash may have come after this stop was placed, and it may have
            # filled since: its id, reusable once the order ended, must not become a new stop on nothing
            earlier, known = await orders.lookup(ctx, s.symbol, stop.client_order_id, self._emitter(run))
            if known and earlier is not None and earlier.filled_quantity > 0:
                run.note(stop_status=earlier.status, stop_price=earlier.stop_price or stop_price)
                run.advance(Step.STOPPED_OUT, close_price=earlier.average_price)
                self._event(run, EventKind.STOPPED_OUT, f"stop filled @ {earlier.average_price} while the engine "
                                                        "was down")
                return
        result = await orders.protect_or_close(ctx, stop, close, self._emitter(run))
        if result.stop is not None:
            run.note(stop_status=result.stop.status, stop_price=result.stop.stop_price or stop_price)
        run.note(stop_error=result.stop_error)
        if result.protected:
            run.advance(Step.PROTECTED)
            self._event(run, EventKind.STOP_PLACED, f"{stop.client_order_id} @ {run.facts.stop_price:g}")
        elif result.stopped_out:
            assert result.stop is not None
            run.advance(Step.STOPPED_OUT, close_price=result.stop.average_price)
            self._event(run, EventKind.STOPPED_OUT, f"stop filled @ {result.stop.average_price}")
        elif result.closed:
            run.advance(Step.CLOSED, close_price=result.close_price)
        else:
            run.advance(Step.UNPROTECTED, close_error=result.close_error)

    # --- records ---

    def _order_record(self, run: OpenRun, req: OrderRequest, status: OrderStatus) -> OrderRecord:
        return OrderRecord(client_order_id=req.client_order_id, position_id=run.position_id,
                           symbol=req.symbol, kind=req.kind, side=req.side, quantity=req.quantity,
                           status=status, stop_price=req.stop_price, updated_at=self.ctx.clock.now())

    def persist(self, run: OpenRun, base: Position) -> None:
        """Store the position and its orders as the run left them (through the writer)."""
        if not run.intent_stored:
            return
        ctx, s, f = self.ctx, run.signal, run.facts
        now = ctx.clock.now()
        self.book.save(run.position_after(self.book.get(base.id) or base, now))
        entry_status = (OrderStatus.FILLED if run.filled else OrderStatus.UNKNOWN if run.step is Step.ENTRY_SENT
                        else OrderStatus.REJECTED if run.step is not Step.INTENT_STORED else OrderStatus.PENDING)
        records = [OrderRecord(base.entry_client_id, run.position_id, s.symbol, OrderKind.ENTRY,
                               s.side.entry_order_side, f.filled_quantity or run.quantity, entry_status,
                               fill_price=f.fill_price, updated_at=now)]
        if f.stop_client_id is not None and f.stop_status is not None:
            records.append(OrderRecord(f.stop_client_id, run.position_id, s.symbol, OrderKind.STOP,
                                       s.side.exit_order_side, f.filled_quantity, f.stop_status,
                                       stop_price=f.stop_price,
                                       fill_price=f.close_price if run.step is Step.STOPPED_OUT else None,
                                       updated_at=now))
        if run.step is Step.CLOSED:
            records.append(OrderRecord(ids.close_id(run.position_id), run.position_id, s.symbol, OrderKind.CLOSE,
                                       s.side.exit_order_side, f.filled_quantity, OrderStatus.FILLED,
                                       fill_price=f.close_price, updated_at=now))
        ctx.writer.submit(*records)

    def _emitter(self, run: OpenRun) -> orders.Emit:
        return lambda kind, detail: self._event(run, kind, detail)

    def _event(self, run: OpenRun, kind: EventKind, detail: str = "") -> None:
        self.ctx.event(kind, detail, signal_id=run.signal.id,
                       position_id=run.position_id if run.intent_stored else None)

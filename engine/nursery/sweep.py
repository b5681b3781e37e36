"""The protection sweep: every `sweep_interval` seconds, make the exchange and the store agree.

Lifetime: a service started by `Engine.open` (unless `sweep_interval` is 0);
a failed sweep is logged and the next one runs on schedule. What it repairs,
each an event and a count in `repairs`:

* `missing_stop` — a stored open position without a live stop: its follower
  (the only task that touches that position's orders) places one or closes it;
* `position_gone` — stored open, not on the exchange: the follower records the
  exit (a filled stop, or a `manual` close);
* `adopted` — on the exchange but unknown to the store: stored, protected,
  tracked and reported;
* `orphan_stop` — a reduce-only order on a symbol with no position: cancelled;
* `stale_stop` — an older stop of a position whose stop has moved on: its
  follower cancels it;
* `size_mismatch` — the exchange holds another size than the store, or the stop
  covers less than is held: the follower takes the exchange's size and places a
  stop for all of it.

A position stored open without any stop (its stop and emergency close both
failed) is followed like any other: its follower places the stop, round after
round while the exchange keeps failing.

Symbols with an open in flight (`opening`) are left to the wave that owns them.
"""

from __future__ import annotations

import logging
from collections import Counter

import attrs
import trio

from engine import ids
from engine.call_points import CallPoint
from engine.events import EventKind, Repair
from engine.model import (
    ExchangePosition,
    ExitReason,
    OrderKind,
    OrderRecord,
    OrderRequest,
    OrderState,
    OrderStatus,
    Position,
    PositionStatus,
    TrailingStatus,
)
from engine.nursery import orders
from engine.nursery.context import EngineContext
from engine.nursery.position_book import PositionBook
from engine.nursery.trailing_manager import TrailingManager
from engine.sizing import initial_stop_price, realized_pnl

log = logging.getLogger("trio_bot.sweep")


class ProtectionSweep:
    def __init__(self, ctx: EngineContext, book: PositionBook, manager: TrailingManager) -> None:
        self.ctx = ctx
        self.book = book
        self.manager = manager
        self.repairs: Counter[str] = Counter()
        self.sweeps = 0
        self.deferred = 0  # positions left for the next round: their follower was changing them

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.ctx.config.sweep_interval)
            try:
                await self.sweep_once()
            except Exception:
                log.exception("protection sweep failed; next one in %gs", self.ctx.config.sweep_interval)

    def _repair(self, kind: Repair, detail: str, position_id: int | None = None) -> None:
        self.repairs[kind.value] += 1
        self.ctx.event(kind.event, detail, position_id=position_id)

    async def sweep_once(self) -> Counter[str]:
        """One pass; returns the repairs it made.

        A position is judged only if its follower was idle and changed nothing while the
        exchange was being read: a sweep that acted on a snapshot taken during a stop move
        could cancel the newest stop. Such a position is looked at again next round. One
        position's failure is recorded and the others are still repaired.
        """
        ctx = self.ctx
        before = Counter(self.repairs)
        self.sweeps += 1
        views = self.manager.snapshot()
        opening = {p.symbol for p in self.book.with_status(PositionStatus.OPENING)}
        stored_before = {p.id for p in self.book.with_status(PositionStatus.OPEN)}
        try:
            held = {p.symbol: p for p in await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_positions)}
            resting = await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_open_orders)
        except Exception as exc:
            ctx.event(EventKind.SWEEP_FAILED, f"could not read the exchange: {exc}")
            return Counter()
        opening |= {p.symbol for p in self.book.with_status(PositionStatus.OPENING)}
        stored = {p.symbol: p for p in self.book.with_status(PositionStatus.OPEN)}
        stops: dict[str, list[OrderState]] = {}
        for order in resting:
            if order.reduce_only and order.status is OrderStatus.NEW:
                stops.setdefault(order.symbol, []).append(order)

        def steady(position: Position) -> bool:
            """Unchanged since before the reads: the snapshot says something true about it."""
            now, then = self.manager.view(position.id), views.get(position.id)
            if position.id not in stored_before:
                return False
            if now is None and then is None:
                return True  # nobody follows it (no stop was ever placed): nothing can be moving
            return (now is not None and then is not None and not now.busy and not then.busy
                    and now.changes == then.changes)

        for symbol in sorted(held.keys() | stored.keys() | stops.keys()):
            if symbol in opening:
                continue  # the wave that owns the open settles it
            try:
                position = stored.get(symbol)
                there = held.get(symbol)
                if position is not None and not steady(position):
                    self.deferred += 1
                    continue
                if position is None and there is not None:
                    await self._adopt_after_rereading(symbol)
                elif position is not None and there is not None:
                    self._check(position, there, stops.get(symbol, []))
                elif position is not None:
                    self._repair(Repair.POSITION_GONE, f"{symbol} is no longer on the exchange", position.id)
                    self.manager.ensure_following(position)
                    self.manager.request_repair(position.id)
                else:
                    await self._cancel_orphans(symbol, stops.get(symbol, []))
            except Exception as exc:
                log.exception("protection sweep: %s failed", symbol)
                ctx.event(EventKind.SWEEP_FAILED, f"{symbol}: {exc!r}")
        made = self.repairs - before
        if made:
            log.warning("protection sweep repaired: %s", dict(made))
        return made

    def _check(self, position: Position, there: ExchangePosition, stops: list[OrderState]) -> None:
        """A stored open position the exchange holds: its stop, its size, its older stops.

        The sweep only diagnoses; the position's follower (the one task that touches its
        orders) re-reads the exchange and repairs.
        """
        view = self.manager.ensure_following(position)
        live = [o for o in stops if o.side is position.side.exit_order_side]
        own = [o for o in live if o.client_order_id == view.stop_client_id]
        tolerance = self.ctx.markets[position.symbol].step_size / 2
        if not own:
            self._repair(Repair.MISSING_STOP, f"{position.symbol}: {view.stop_client_id} is not live", position.id)
            self.manager.request_repair(position.id)
        elif there.side is not position.side or abs(there.quantity - position.quantity) > tolerance \
                or own[0].quantity < there.quantity - tolerance:
            self._repair(Repair.SIZE_MISMATCH,
                         f"{position.symbol}: the exchange holds {there.side} {there.quantity:g}, the store "
                         f"{position.side} {position.quantity:g}, the stop covers {own[0].quantity:g}", position.id)
            self.manager.request_repair(position.id)
        stale = [o.client_order_id for o in live if o.client_order_id != view.stop_client_id
                 and ids.position_of(o.client_order_id) == position.id]
        if stale:
            self._repair(Repair.STALE_STOP, f"{', '.join(stale)} still live", position.id)
            self.manager.cancel_stale(position.id, stale)

    async def _cancel_orphans(self, symbol: str, orphans: list[OrderState]) -> None:
        for order in orphans:
            if await orders.cancel(self.ctx, symbol, order.client_order_id, self._emit(None)):
                self._repair(Repair.ORPHAN_STOP, f"{order.client_order_id} on {symbol}: no position")

    async def _adopt_after_rereading(self, symbol: str) -> None:
        """Adopt only what a fresh read still shows and no wave has claimed meanwhile."""
        ctx = self.ctx
        held = [p for p in await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_positions) if p.symbol == symbol]
        if not held or symbol in self.book.busy_symbols:
            return
        resting = await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_open_orders, symbol)
        await self._adopt(held[0], [o for o in resting if o.reduce_only and o.status is OrderStatus.NEW])

    def _emit(self, position_id: int | None) -> orders.Emit:
        return lambda kind, detail: self.ctx.event(kind, detail, position_id=position_id)

    async def _adopt(self, there: ExchangePosition, stops: list[OrderState]) -> None:
        """A position the store does not know: store it, protect it, follow it."""
        ctx = self.ctx
        pid = self.book.allocate_id()
        now = ctx.clock.now()
        position = Position(id=pid, signal_id=f"adopted-{there.symbol}", wave_id="sweep", symbol=there.symbol,
                            side=there.side, status=PositionStatus.OPEN, quantity=there.quantity,
                            entry_client_id=ids.entry_id(pid), entry_price=there.entry_price,
                            trailing=TrailingStatus.PENDING, opened_at=now)
        self._repair(Repair.ADOPTED, f"{there.side} {there.quantity:g} {there.symbol} @ {there.entry_price:g}", pid)
        covering = [o for o in stops if o.side is there.side.exit_order_side and o.quantity >= there.quantity]
        if covering:
            stop = covering[0]
            position = attrs.evolve(position, stop_price=stop.stop_price, stop_client_id=stop.client_order_id)
            self.book.save(position)
            self.manager.follow_protected(position)
            return
        market = ctx.markets[there.symbol]
        price = self.manager.last_price(there.symbol) or there.entry_price
        reference = min(price, there.entry_price) if there.side.sign > 0 else max(price, there.entry_price)
        stop_price = initial_stop_price(there.side, reference, ctx.config.stop_loss_percent, market.tick_size)
        exit_side = there.side.exit_order_side
        request = OrderRequest(there.symbol, exit_side, OrderKind.STOP, there.quantity, ids.stop_id(pid, 1),
                               stop_price)
        close = OrderRequest(there.symbol, exit_side, OrderKind.CLOSE, there.quantity, ids.close_id(pid))
        with trio.move_on_after(ctx.config.cleanup_timeout, shield=True):
            result = await orders.protect_or_close(ctx, request, close, self._emit(pid))
        position = attrs.evolve(position, stop_price=stop_price, stop_client_id=request.client_order_id)
        if result.protected:
            ctx.writer.submit(OrderRecord(request.client_order_id, pid, there.symbol, OrderKind.STOP, exit_side,
                                          there.quantity, OrderStatus.NEW, stop_price=stop_price, updated_at=now))
            self.book.save(position)
            self.manager.follow_protected(position)
        elif result.stopped_out or result.closed:
            exit_price = result.stop.average_price if result.stopped_out and result.stop else result.close_price
            reason = ExitReason.STOP_LOSS if result.stopped_out else ExitReason.EMERGENCY_CLOSE
            pnl = realized_pnl(there.side, there.entry_price, exit_price, there.quantity) \
                if exit_price is not None else None
            self.book.save(attrs.evolve(position, status=PositionStatus.CLOSED, trailing=TrailingStatus.NONE,
                                        exit_price=exit_price, exit_reason=reason, realized_pnl=pnl,
                                        closed_at=ctx.clock.now()))
        else:  # unprotected (or out of time): its follower keeps trying to protect or close it
            self.book.save(position)
            self.manager.follow(position)
            self.manager.request_repair(pid)

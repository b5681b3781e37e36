"""The protection sweep: at start-up and every `sweep_interval` seconds, make the exchange and the store agree.

Lifetime: a service started by `Engine.open` (unless `sweep_interval` is 0), whose
first round runs before the first wave; a failed round is logged and the next one
runs on schedule. What it repairs, each an event and a count in `repairs`:

* `missing_stop` — a stored open position without a live stop: its follower
  places one or closes it (also a position stored without any stop, round after
  round while the exchange keeps failing);
* `position_gone` — stored open, none of the exchange's position is its share:
  the follower records the exit (a filled stop, or a `manual` close);
* `size_mismatch` — the exchange holds less than stored (the follower shrinks the
  position and its stop to what is held), a stop covers another size than held,
  or the exchange holds more than stored (the excess is adopted, below);
* `adopted` — on the exchange but unknown to the store, all of it or the excess
  over the stored positions (`engine.allocation`): stored as a position of its
  own, protected by its own stop, followed and reported;
* `orphan_stop` — a reduce-only order on a symbol nobody holds: cancelled;
* `stale_stop` — an older stop of a position whose stop has moved on: its
  follower cancels it.

The sweep only diagnoses followed positions: their follower, the one task that
touches their orders, re-reads the exchange and repairs. A symbol is judged only
if its positions' followers stood still while it was read (else `deferred` to the
next round); symbols with an open in flight (`opening`) are left to their owner.
See docs/DESIGN.md, "The protection sweep".
"""

from __future__ import annotations

import logging
from collections import Counter

import attrs
import trio

from engine import ids
from engine.allocation import allocate, excess_entry_price
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
        self.deferred = 0  # symbols left for the next round: a follower was changing them
        self.failed: str | None = None  # why the last sweep could not read the exchange

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

        A symbol is judged only if every stored position on it was idle, and changed
        nothing, from before the exchange was read until the moment it is judged: a sweep
        that acted on a snapshot taken during a stop move could cancel the newest stop.
        Such a symbol is looked at again next round (`deferred`). One symbol's failure is
        recorded and the others are still repaired.
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
            self.failed = str(exc) or type(exc).__name__
            return Counter()
        self.failed = None
        opening |= {p.symbol for p in self.book.with_status(PositionStatus.OPENING)}
        stored: dict[str, set[int]] = {}  # symbol -> ids of the positions open after the reads
        for p in self.book.with_status(PositionStatus.OPEN):
            stored.setdefault(p.symbol, set()).add(p.id)
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
                # The positions open before the reads, after them and now (an earlier symbol's
                # repair awaited) must be the same ones, each standing still: else next round.
                positions = self._open_on(symbol)
                if {p.id for p in positions} != stored.get(symbol, set()) \
                        or not all(steady(p) for p in positions):
                    self.deferred += 1
                    continue
                await self._judge(symbol, held.get(symbol), positions, stops.get(symbol, []))
            except Exception as exc:
                log.exception("protection sweep: %s failed", symbol)
                ctx.event(EventKind.SWEEP_FAILED, f"{symbol}: {exc!r}")
        made = self.repairs - before
        if made:
            log.warning("protection sweep repaired: %s", dict(made))
        return made

    def _open_on(self, symbol: str) -> list[Position]:
        return [p for p in self.book.with_status(PositionStatus.OPEN) if p.symbol == symbol]

    async def _judge(self, symbol: str, there: ExchangePosition | None, positions: list[Position],
                     stops: list[OrderState]) -> None:
        """One symbol: each stored position against its share of what is held, then the excess."""
        step = self.ctx.markets[symbol].step_size if positions or there is not None else 0.0
        split = allocate(there, positions, step)
        for position in positions:
            self._check(position, split.share(position.id), there, stops)
        if there is not None and split.excess > 0:
            await self._adopt_after_rereading(symbol)
        elif not positions and there is None:
            await self._cancel_orphans(symbol, stops)

    def _check(self, position: Position, share: float, there: ExchangePosition | None,
               stops: list[OrderState]) -> None:
        """A stored open position: its share of the exchange's position, its stop, its older stops.

        The sweep only diagnoses; the position's follower (the one task that touches its
        orders) re-reads the exchange and repairs.
        """
        view = self.manager.ensure_following(position)
        symbol, pid = position.symbol, position.id
        live = [o for o in stops if o.side is position.side.exit_order_side]
        own = [o for o in live if o.client_order_id == view.stop_client_id]
        tolerance = self.ctx.markets[symbol].step_size / 2
        if share <= tolerance:
            held = f"holds {there.side} {there.quantity:g}, none of it this position's" if there else "holds nothing"
            self._repair(Repair.POSITION_GONE, f"{symbol}: the exchange {held}", pid)
            self.manager.request_repair(pid)
            return
        if share < position.quantity - tolerance:
            self._repair(Repair.SIZE_MISMATCH, f"{symbol}: the exchange holds {share:g} of the stored "
                         f"{position.quantity:g} (closed in part outside trio-bot): the stop shrinks to it", pid)
            self.manager.request_repair(pid)
        elif not own:
            self._repair(Repair.MISSING_STOP, f"{symbol}: {view.stop_client_id} is not live", pid)
            self.manager.request_repair(pid)
        elif abs(own[0].quantity - position.quantity) > tolerance:
            self._repair(Repair.SIZE_MISMATCH, f"{symbol}: the stop covers {own[0].quantity:g} of the held "
                         f"{position.quantity:g}", pid)
            self.manager.request_repair(pid)
        stale = [o.client_order_id for o in live if o.client_order_id != view.stop_client_id
                 and ids.position_of(o.client_order_id) == pid]
        if stale:
            self._repair(Repair.STALE_STOP, f"{', '.join(stale)} still live", pid)
            self.manager.cancel_stale(pid, stale)

    async def _cancel_orphans(self, symbol: str, orphans: list[OrderState]) -> None:
        """Reduce-only orders on a symbol nobody holds: cancelled, if a fresh read agrees."""
        ctx = self.ctx
        if not orphans:
            return
        held = [p for p in await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_positions) if p.symbol == symbol]
        if held or symbol in self.book.busy_symbols:
            return  # something is held or being opened there now: next round judges it afresh
        for order in orphans:
            if await orders.cancel(self.ctx, symbol, order.client_order_id, self._emit(None)):
                self._repair(Repair.ORPHAN_STOP, f"{order.client_order_id} on {symbol}: no position")

    async def _adopt_after_rereading(self, symbol: str) -> None:
        """Adopt what a fresh read still shows beyond the stored positions, if none of them moved."""
        ctx = self.ctx
        views = {p.id: self.manager.view(p.id) for p in self._open_on(symbol)}
        held = [p for p in await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_positions) if p.symbol == symbol]
        positions = self._open_on(symbol)
        if not held or any(p.symbol == symbol for p in self.book.with_status(PositionStatus.OPENING)) \
                or {p.id: self.manager.view(p.id) for p in positions} != views \
                or any(v is not None and v.busy for v in views.values()):
            return  # nothing held, an open in flight, or a follower acted meanwhile: next round
        split = allocate(held[0], positions, ctx.markets[symbol].step_size)
        if split.excess <= 0:
            return
        resting = await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_open_orders, symbol)
        owned = {p.id for p in positions}
        strangers = [o for o in resting if o.reduce_only and o.status is OrderStatus.NEW
                     and ids.position_of(o.client_order_id) not in owned]
        await self._adopt(held[0], split.excess, excess_entry_price(held[0], positions, split.excess),
                          positions, strangers)

    async def _price(self, symbol: str) -> float | None:
        """The price now: the feed's newest, else asked (at start-up the feed has said nothing yet,
        and a stop placed from a stale entry price could be refused and the position closed)."""
        price = self.manager.last_price(symbol)
        if price is not None:
            return price
        try:
            return (await self.ctx.read(CallPoint.QUERY, self.ctx.exchange.fetch_prices, [symbol])).get(symbol)
        except Exception:
            return None

    def _emit(self, position_id: int | None) -> orders.Emit:
        return lambda kind, detail: self.ctx.event(kind, detail, position_id=position_id)

    async def _adopt(self, there: ExchangePosition, quantity: float, entry: float, stored: list[Position],
                     stops: list[OrderState]) -> None:
        """What the store does not know (all of the symbol, or the excess over the stored positions):
        store it as a position of its own, protect it, follow it."""
        ctx = self.ctx
        pid = self.book.allocate_id()
        now = ctx.clock.now()
        position = Position(id=pid, signal_id=f"adopted-{there.symbol}", wave_id="sweep", symbol=there.symbol,
                            side=there.side, status=PositionStatus.OPEN, quantity=quantity,
                            entry_client_id=ids.entry_id(pid), entry_price=entry,
                            trailing=TrailingStatus.PENDING, opened_at=now)
        if stored:
            total = sum(p.quantity for p in stored if p.side is there.side)
            self._repair(Repair.SIZE_MISMATCH, f"{there.symbol}: the exchange holds {there.side} "
                         f"{there.quantity:g}, the store {total:g}: the excess {quantity:g} is adopted as "
                         f"position {pid} with its own stop", stored[0].id)
        self._repair(Repair.ADOPTED, f"{there.side} {quantity:g} {there.symbol} @ {entry:g}"
                     + (f" (the excess over position {', '.join(str(p.id) for p in stored)})" if stored else ""),
                     pid)
        tolerance = ctx.markets[there.symbol].step_size / 2
        covering = [o for o in stops if o.side is there.side.exit_order_side and o.quantity >= quantity - tolerance]
        if covering:
            stop = covering[0]
            position = attrs.evolve(position, stop_price=stop.stop_price, stop_client_id=stop.client_order_id)
            self.book.save(position)
            self.manager.follow_protected(position)
            return
        market = ctx.markets[there.symbol]
        price = await self._price(there.symbol) or entry
        reference = min(price, entry) if there.side.sign > 0 else max(price, entry)
        stop_price = initial_stop_price(there.side, reference, ctx.config.stop_loss_percent, market.tick_size)
        exit_side = there.side.exit_order_side
        request = OrderRequest(there.symbol, exit_side, OrderKind.STOP, quantity, ids.stop_id(pid, 1), stop_price)
        close = OrderRequest(there.symbol, exit_side, OrderKind.CLOSE, quantity, ids.close_id(pid))
        with trio.move_on_after(ctx.config.cleanup_timeout, shield=True):
            result = await orders.protect_or_close(ctx, request, close, self._emit(pid))
        position = attrs.evolve(position, stop_price=stop_price, stop_client_id=request.client_order_id)
        if result.protected:
            ctx.writer.submit(OrderRecord(request.client_order_id, pid, there.symbol, OrderKind.STOP, exit_side,
                                          quantity, OrderStatus.NEW, stop_price=stop_price, updated_at=now))
            self.book.save(position)
            self.manager.follow_protected(position)
        elif result.stopped_out or result.closed:
            exit_price = result.stop.average_price if result.stopped_out and result.stop else result.close_price
            reason = ExitReason.STOP_LOSS if result.stopped_out else ExitReason.EMERGENCY_CLOSE
            pnl = realized_pnl(there.side, entry, exit_price, quantity) \
                if exit_price is not None else None
            self.book.save(attrs.evolve(position, status=PositionStatus.CLOSED, trailing=TrailingStatus.NONE,
                                        exit_price=exit_price, exit_reason=reason, realized_pnl=pnl,
                                        closed_at=ctx.clock.now()))
        else:  # unprotected (or out of time): its follower keeps trying to protect or close it
            self.book.save(position)
            self.manager.follow(position)
            self.manager.request_repair(pid)

"""The trailing manager: follows prices and moves every position's stop on the exchange.

Lifetime: a service started by `Engine.open` and stopped when the engine closes.
Shape: one follower task per open position, owned by the manager's nursery.
Prices arrive through `Exchange.stream_prices` into a one-slot mailbox per
position — the newest price wins — so a flood of ticks costs O(1) each, never
grows memory and never falls behind. Each follower owns its position's state;
no lock exists, and a slow or failing exchange call for one symbol delays no
other symbol. Restart policy: the price stream is restarted with backoff if
it fails; a follower never dies of an exchange error (it logs, keeps the old
stop, and tries again on the next price).

Moving a stop: the new reduce-only stop is placed first, then the old one is
cancelled, so there is never a moment without a stop. The move is shielded
and bounded (`cleanup_timeout`): shutdown cannot interrupt it between the two.

The per-position state the followers work on lives in `engine.nursery.follower`.
"""

from __future__ import annotations

import logging

import attrs
import trio

from engine import ids
from engine.call_points import CallPoint
from engine.events import EventKind
from engine.model import (
    ExitReason,
    OrderKind,
    OrderRecord,
    OrderRequest,
    OrderState,
    OrderStatus,
    Position,
    PositionStatus,
    TrailingRecord,
)
from engine.nursery import orders
from engine.nursery.context import EngineContext
from engine.nursery.follower import CloseRequest, Follower, FollowerView
from engine.nursery.position_book import PositionBook
from engine.nursery.retrying import Attempts
from engine.sizing import initial_stop_price, realized_pnl
from engine.trailing import TrailingParams, TrailingStop, TrailState, from_record

log = logging.getLogger("trio_bot.trailing")


class TrailingManager:
    def __init__(self, ctx: EngineContext, book: PositionBook) -> None:
        self.ctx = ctx
        self.book = book
        cfg = ctx.config
        self.params = TrailingParams(cfg.trailing_activation_percent, cfg.trailing_callback_percent,
                                     cfg.trailing_min_step_percent, cfg.trailing_min_interval)
        self._followers: dict[int, Follower] = {}
        self._by_symbol: dict[str, int] = {}
        self._last_prices: dict[str, float] = {}
        self.ticks = 0
        self._nursery: trio.Nursery | None = None

    # --- read-only views ---

    def snapshot(self) -> dict[int, FollowerView]:
        """Every followed position, by id, as it stands now (a copy: changing it changes nothing)."""
        return {pid: f.view() for pid, f in self._followers.items()}

    def view(self, position_id: int) -> FollowerView | None:
        f = self._followers.get(position_id)
        return f.view() if f is not None else None

    def last_price(self, symbol: str) -> float | None:
        """The newest price the feed gave for `symbol`."""
        return self._last_prices.get(symbol)

    # --- the service ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._stream)
                for follower in list(self._followers.values()):
                    nursery.start_soon(self._follow, follower)
                task_status.started()
        finally:
            # Stopped (shutdown): a wave child's shielded cleanup may still protect a fill after
            # this point. Its position keeps its exchange stop and is followed again at restart.
            self._nursery = None

    async def _stream(self) -> None:
        policy = self.ctx.config.price_stream_retry
        async for attempt in Attempts(policy):
            try:
                await self.ctx.exchange.stream_prices(self.on_price)
            except Exception as exc:
                log.warning("price stream failed (%s); restarting in %.1fs", exc, policy.delay(attempt))

    def on_price(self, symbol: str, price: float) -> None:
        """Synchronous and O(1): apply the tick to the pure state machine right here.

        Following the price is pure computation, so every tick counts (the best price is
        exact, not sampled) at no I/O cost. The symbol's follower task is woken only when
        there is exchange work: a stop move that is due, or a price through the stop.
        """
        self.ticks += 1
        self._last_prices[symbol] = price
        pid = self._by_symbol.get(symbol)
        if pid is None:
            return
        f = self._followers[pid]
        if f.closed:
            return
        nxt = f.ts.observe(price)
        if nxt.state is TrailState.TRIGGERED:
            f.crossed = True  # not adopted until the exchange confirms the fill
            f.wake.set()
            return
        if nxt is not f.ts and nxt != f.ts:
            f.ts = nxt
            self.ctx.writer.submit_trailing(pid, f)
            if nxt.move_due(trio.current_time(), self.params) is not None:
                f.wake.set()

    # --- registration ---

    def follow(self, position: Position, record: TrailingRecord | None = None) -> FollowerView:
        """Follow an open position (from a restart, or one the sweep found) from now on."""
        return self._track(position, record).view()

    def follow_protected(self, position: Position) -> FollowerView:
        """A position just got its stop: follow it, and have its trailing state stored.

        The signal's outcome never waits for that save; once stored, the book marks the
        position's trailing `active`.
        """
        follower = self._track(position)
        self.ctx.writer.submit_trailing(position.id, follower)
        return follower.view()

    def ensure_following(self, position: Position) -> FollowerView:
        """The position's follower, started now if it has none (the sweep found it unfollowed)."""
        follower = self._followers.get(position.id)
        return follower.view() if follower is not None else self.follow(position)

    def cancel_stale(self, position_id: int, client_order_ids: list[str]) -> None:
        """The sweep saw older stops of this position still live: its follower cancels them.

        Only the follower touches its position's orders, so a cancel can never race a move.
        """
        follower = self._followers.get(position_id)
        if follower is not None:
            follower.stale.update(client_order_ids)
            self.request_repair(position_id)

    def _track(self, position: Position, record: TrailingRecord | None = None) -> Follower:
        """A follower for any open position, protected or not.

        A position stored without a stop (its stop and emergency close both failed) gets
        the initial stop-loss level and a repair at once: its follower places the stop.
        """
        tick = self.ctx.markets[position.symbol].tick_size
        unprotected = position.stop_price is None
        if record is not None:
            ts = from_record(record, tick)
            cid = record.stop_client_id or position.stop_client_id or ids.stop_id(position.id, 1)
        else:
            entry = position.entry_price if position.entry_price is not None else self._last_prices.get(
                position.symbol)
            if entry is None:
                raise ValueError(f"position {position.id} on {position.symbol} has no entry price and no "
                                 "price has been seen yet")
            stop = position.stop_price
            if stop is None:
                price = self._last_prices.get(position.symbol, entry)
                reference = min(price, entry) if position.side.sign > 0 else max(price, entry)
                stop = initial_stop_price(position.side, reference, self.ctx.config.stop_loss_percent, tick)
            ts = TrailingStop.start(position.side, entry, stop, tick, self.params)
            cid = position.stop_client_id or ids.stop_id(position.id, 1)
        follower = Follower(manager=self, position=position, ts=ts, stop_cid=cid, stop_seq=ids.stop_seq(cid))
        follower.repair = unprotected
        self._followers[position.id] = follower
        self._by_symbol[position.symbol] = position.id
        if self._nursery is not None:
            self._nursery.start_soon(self._follow, follower)
        else:
            log.info("position %d on %s is protected by its stop; not followed, the trailing service has "
                     "stopped (a restart resumes following it)", position.id, position.symbol)
        return follower

    async def close(self, position_id: int) -> CloseRequest:
        """The operator's close: a reduce-only market close through the protected path.

        Done by the position's follower (the only task touching its orders), shielded and
        bounded by `cleanup_timeout`; the stop is cancelled only after the close filled. The
        caller may stop waiting (its own deadline); the close goes on regardless.
        """
        f = self._followers.get(position_id)
        if f is None or f.closed:
            raise LookupError(f"position {position_id} is not followed")
        request = CloseRequest()
        f.close_requests.append(request)
        f.wake.set()
        await request.done.wait()
        return request

    def request_repair(self, position_id: int) -> None:
        """The sweep saw something wrong (no live stop, no position): the follower checks."""
        follower = self._followers.get(position_id)
        if follower is not None:
            follower.repair = True
            follower.wake.set()

    # --- one follower per position ---

    async def _follow(self, f: Follower) -> None:
        """The position's only task doing exchange I/O: moves, exits and repairs, one at a time."""
        try:
            while not f.closed:
                due_at = f.ts.next_move_at(self.params)
                if due_at is not None or f.retry_at > trio.current_time():
                    due_at = max(due_at or 0.0, f.retry_at)
                if due_at is None:
                    await f.wake.wait()
                else:  # a worthwhile move held back by min_interval: wake when it is allowed
                    with trio.move_on_at(due_at):
                        await f.wake.wait()
                f.wake = trio.Event()
                f.busy = True  # the sweep leaves the position alone while its orders change
                try:
                    await self._act(f)
                finally:
                    f.busy = False
        finally:
            for request in f.close_requests:  # the follower ended first (shutdown, or a stop fired)
                request.closed = f.closed
                request.error = None if f.closed else "the engine stopped before the close was sent"
                request.done.set()
            f.close_requests.clear()
            self._untrack(f)

    async def _act(self, f: Follower) -> None:
        if f.close_requests:
            await self._operator_close(f)
            return
        if f.repair:
            f.repair = False
            await self._repair(f)
            return
        if f.crossed:
            f.crossed = False
            await self._confirm_exit(f)
        now = trio.current_time()
        if not f.closed and now >= f.retry_at:
            due = f.ts.move_due(now, self.params)
            if due is not None:
                await self._move(f, due)

    def _emit(self, f: Follower) -> orders.Emit:
        return lambda kind, detail: self.ctx.event(kind, detail, position_id=f.position.id)

    async def _move(self, f: Follower, stop_price: float) -> None:
        """New stop first, then cancel the old: never a moment without one."""
        ctx, p = self.ctx, f.position
        seq = f.stop_seq + 1
        request = OrderRequest(p.symbol, p.side.exit_order_side, OrderKind.STOP, p.quantity,
                               ids.stop_id(p.id, seq), stop_price)
        with trio.move_on_after(ctx.config.cleanup_timeout, shield=True):
            placed = await orders.place(ctx, request, self._emit(f))
            if placed.state is None:
                ctx.event(EventKind.STOP_MOVE_FAILED,
                          f"to {stop_price:g}: {placed.error}; stop stays at {f.ts.live_stop:g}", position_id=p.id)
                # The old stop stays live. Try again after a backoff, whatever the prices say,
                # so a refused level (e.g. "would immediately trigger") is never hammered.
                f.retry_at = trio.current_time() + max(ctx.config.protect_retry.backoff, self.params.min_interval, 0.1)
                return
            old = f.stop_cid
            f.stop_cid, f.stop_seq, f.moves = request.client_order_id, seq, f.moves + 1
            if placed.state.status is OrderStatus.FILLED:
                await self._closed(f, placed.state.average_price, ExitReason.TRAILING_STOP)
                return
            f.ts = f.ts.moved(stop_price, trio.current_time())
            self._save(f, attrs.evolve(p, stop_price=stop_price, stop_client_id=f.stop_cid),
                       OrderRecord(f.stop_cid, p.id, p.symbol, OrderKind.STOP, p.side.exit_order_side, p.quantity,
                                   OrderStatus.NEW, stop_price=stop_price, updated_at=ctx.clock.now()))
            ctx.event(EventKind.STOP_MOVED, f"{old} -> {f.stop_cid} @ {stop_price:g}", position_id=p.id)
            if not await orders.cancel(ctx, p.symbol, old, self._emit(f)):
                f.stale.add(old)  # still protected (two stops); the sweep cancels it later
                ctx.event(EventKind.STALE_STOP, f"{old} could not be cancelled yet", position_id=p.id)

    def _save(self, f: Follower, position: Position, *records: OrderRecord) -> None:
        f.changes += 1
        f.position = position
        self.book.save(position)
        self.ctx.writer.submit(*records)
        self.ctx.writer.submit_trailing(f.position.id, f)

    async def _confirm_exit(self, f: Follower) -> None:
        """Our feed crossed the stop: ask the exchange whether the stop really filled."""
        state, known = await orders.lookup(self.ctx, f.position.symbol, f.stop_cid, self._emit(f))
        if known and state is not None and state.filled_quantity > 0:
            await self._stop_filled(f, state)
        elif known and (state is None or state.status is not OrderStatus.NEW):
            await self._repair(f)
        # Still resting: the exchange has not crossed it yet; the next price decides.

    async def _stop_filled(self, f: Follower, state: OrderState) -> None:
        """The stop filled: the position is closed, or (its market order filled in part, the rest
        expired) smaller, and what is left gets a new stop."""
        p = f.position
        if orders.fills_all(state, p.quantity):
            await self._closed(f, state.average_price, self._stop_exit(f))
            return
        left = p.quantity - state.filled_quantity
        self.ctx.event(EventKind.SIZE_CHANGED, f"{p.quantity:g} -> {left:g} (stop {f.stop_cid} filled "
                                               f"{state.filled_quantity:g} @ {state.average_price}; the rest expired)",
                       position_id=p.id)
        self._save(f, attrs.evolve(p, quantity=left))
        await self._replace_missing_stop(f)

    async def _repair(self, f: Follower) -> None:
        """Make the exchange match, from a fresh read of it.

        A filled stop closes the position; a position gone from the exchange is recorded
        closed; a size different from the store is taken from the exchange (the stop must
        cover what is held); a missing stop, or one for less than the held size, is
        replaced; older stops still live are cancelled once the position is covered.
        """
        ctx, p = self.ctx, f.position
        state, known = await orders.lookup(ctx, p.symbol, f.stop_cid, self._emit(f))
        if not known:
            return
        if state is not None and state.filled_quantity > 0:
            await self._stop_filled(f, state)
            return
        try:
            held = [x for x in await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_positions) if x.symbol == p.symbol]
        except Exception:
            return  # the next repair request (or sweep) tries again
        if not held:
            await self._closed(f, self._last_prices.get(p.symbol), ExitReason.MANUAL)
            return
        there = held[0]
        tolerance = ctx.markets[p.symbol].step_size / 2
        if there.side is p.side and abs(there.quantity - p.quantity) > tolerance:
            ctx.event(EventKind.SIZE_CHANGED, f"{p.quantity:g} -> {there.quantity:g} (the exchange's size)",
                      position_id=p.id)
            self._save(f, attrs.evolve(p, quantity=there.quantity))
        live = state is not None and state.status is OrderStatus.NEW
        if live and state is not None and state.quantity < f.position.quantity - tolerance:
            await self._move(f, f.ts.live_stop)  # a stop for the full size first, then the short one goes
        elif not live:
            await self._replace_missing_stop(f)
        await self._cancel_stale(f)

    async def _cancel_stale(self, f: Follower) -> None:
        for cid in sorted(f.stale):
            if cid == f.stop_cid or await orders.cancel(self.ctx, f.position.symbol, cid, self._emit(f)):
                f.stale.discard(cid)

    async def _replace_missing_stop(self, f: Follower) -> None:
        ctx, p = self.ctx, f.position
        price = self._last_prices.get(p.symbol)
        stop = f.ts.live_stop
        if price is not None and f.ts.crossed(price):
            # The old level is already through the market: protect from the current price.
            stop = initial_stop_price(p.side, price, ctx.config.stop_loss_percent, ctx.markets[p.symbol].tick_size)
        seq = f.stop_seq + 1
        request = OrderRequest(p.symbol, p.side.exit_order_side, OrderKind.STOP, p.quantity,
                               ids.stop_id(p.id, seq), stop)
        close = OrderRequest(p.symbol, p.side.exit_order_side, OrderKind.CLOSE, p.quantity, ids.close_id(p.id, seq))
        ctx.event(EventKind.STOP_MISSING, f"{f.stop_cid} is not live; placing {request.client_order_id} @ {stop:g}",
                  position_id=p.id)
        with trio.move_on_after(ctx.config.cleanup_timeout, shield=True):
            result = await orders.protect_or_close(ctx, request, close, self._emit(f))
            if result.protected:
                f.stop_cid, f.stop_seq = request.client_order_id, seq
                f.ts = attrs.evolve(f.ts, live_stop=stop, wanted_stop=stop) if stop != f.ts.live_stop else f.ts
                self._save(f, attrs.evolve(p, stop_price=stop, stop_client_id=f.stop_cid),
                           OrderRecord(f.stop_cid, p.id, p.symbol, OrderKind.STOP, p.side.exit_order_side,
                                       p.quantity, OrderStatus.NEW, stop_price=stop, updated_at=ctx.clock.now()))
            elif result.stopped_out:
                assert result.stop is not None
                f.stop_cid, f.stop_seq = request.client_order_id, seq
                await self._closed(f, result.stop.average_price, self._stop_exit(f))
            elif result.closed:
                await self._closed(f, result.close_price, ExitReason.EMERGENCY_CLOSE)

    async def _operator_close(self, f: Follower) -> None:
        ctx, p = self.ctx, f.position
        f.stop_seq += 1  # the close takes a fresh, deterministic id; later stops never reuse it
        close = OrderRequest(p.symbol, p.side.exit_order_side, OrderKind.CLOSE, p.quantity,
                             ids.close_id(p.id, f.stop_seq))
        ctx.event(EventKind.OPERATOR_CLOSE, f"reduce-only market close {close.client_order_id}", position_id=p.id)
        error: str | None = None
        with trio.move_on_after(ctx.config.cleanup_timeout, shield=True):
            placed = await orders.place(ctx, close, self._emit(f), retry_refused=True)
            filled = placed.state.filled_quantity if placed.state is not None else 0.0
            if placed.state is not None and filled > 0:
                ctx.writer.submit(OrderRecord(close.client_order_id, p.id, p.symbol, OrderKind.CLOSE, close.side,
                                              filled, OrderStatus.FILLED,
                                              fill_price=placed.state.average_price, updated_at=ctx.clock.now()))
            if placed.state is not None and orders.fills_all(placed.state, p.quantity):
                await self._closed(f, placed.state.average_price, ExitReason.OPERATOR)
            elif filled > 0:  # the rest expired (price band): still held, still protected by its stop
                error = f"closed only {filled:g} of {p.quantity:g}; the rest stays, protected by its stop"
                ctx.event(EventKind.SIZE_CHANGED, f"{p.quantity:g} -> {p.quantity - filled:g} ({error})",
                          position_id=p.id)
                self._save(f, attrs.evolve(p, quantity=p.quantity - filled))
                await self._repair(f)
            else:
                error = placed.error or "the close did not fill"
                ctx.event(EventKind.OPERATOR_CLOSE_FAILED, f"{error}; the stop stays in place", position_id=p.id)
                await self._repair(f)  # e.g. the stop fired meanwhile: record that exit
        if not f.closed and error is None:
            error = f"no answer within cleanup_timeout ({ctx.config.cleanup_timeout:g}s); the stop stays in place"
        requests, f.close_requests = f.close_requests, []
        for request in requests:
            request.closed = f.closed
            request.exit_price = f.position.exit_price
            request.error = None if f.closed else error
            request.done.set()

    async def _closed(self, f: Follower, exit_price: float | None, reason: ExitReason) -> None:
        """The position is gone from the exchange: record the exit, clear its leftover orders."""
        ctx, p = self.ctx, f.position
        f.closed = True
        f.ts = attrs.evolve(f.ts, state=TrailState.TRIGGERED)
        pnl = realized_pnl(p.side, p.entry_price, exit_price, p.quantity) \
            if exit_price is not None and p.entry_price is not None else None
        closed = attrs.evolve(p, status=PositionStatus.CLOSED, exit_price=exit_price, exit_reason=reason,
                              realized_pnl=pnl, closed_at=ctx.clock.now())
        self._save(f, closed)
        ctx.event(EventKind.POSITION_CLOSED, f"{reason} @ {exit_price}, pnl {pnl}", position_id=p.id)
        with trio.move_on_after(ctx.config.cleanup_timeout, shield=True):
            try:
                left = await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_open_orders, p.symbol)
            except Exception as exc:
                ctx.event(EventKind.CLEANUP_FAILED, f"could not list orders left on {p.symbol}: {exc}",
                          position_id=p.id)
                return
            for order in left:
                # Only this position's own orders: another position on the symbol (opened by a
                # later wave meanwhile) keeps its stop. Strangers' orders are the sweep's to judge.
                if order.reduce_only and ids.position_of(order.client_order_id) == p.id:
                    await orders.cancel(ctx, p.symbol, order.client_order_id, self._emit(f))

    @staticmethod
    def _stop_exit(f: Follower) -> ExitReason:
        return ExitReason.TRAILING_STOP if f.ts.activated else ExitReason.STOP_LOSS

    def _untrack(self, f: Follower) -> None:
        if self._followers.get(f.position.id) is f:
            del self._followers[f.position.id]
        if self._by_symbol.get(f.position.symbol) == f.position.id:
            del self._by_symbol[f.position.symbol]


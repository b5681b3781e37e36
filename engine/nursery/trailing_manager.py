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

The per-position state the followers work on lives in `engine.nursery.follower`; what a
follower does on the exchange (move, confirm an exit, repair, close) in
`engine.nursery.follower_actions`. A symbol may have more than one followed position
(an excess the sweep adopted): each tick goes to every follower of its symbol.
"""

from __future__ import annotations

import logging

import trio

from engine import ids
from engine.model import (
    Position,
    TrailingRecord,
)
from engine.nursery.context import EngineContext
from engine.nursery.follower import CloseRequest, Follower, FollowerView
from engine.nursery.follower_actions import FollowerActions
from engine.nursery.position_book import PositionBook
from engine.nursery.retrying import Attempts
from engine.sizing import initial_stop_price
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
        self._by_symbol: dict[str, list[int]] = {}  # one or more (an adopted excess) per symbol
        self._last_prices: dict[str, float] = {}
        self.actions = FollowerActions(ctx, book, self._last_prices, self.params.min_interval)
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
        for pid in self._by_symbol.get(symbol, ()):
            f = self._followers[pid]
            if f.closed:
                continue
            nxt = f.ts.observe(price)
            if nxt.state is TrailState.TRIGGERED:
                f.crossed = True  # not adopted until the exchange confirms the fill
                f.wake.set()
                continue
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
        same = self._by_symbol.setdefault(position.symbol, [])
        if position.id not in same:
            same.append(position.id)
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
                # The sweep judges a position only if it saw it idle, with the same count, before
                # and after reading the exchange: any action in between (even one that changed
                # nothing in the store) makes the sweep look again next round.
                f.busy, f.changes = True, f.changes + 1
                try:
                    await self._act(f)
                finally:
                    f.busy, f.changes = False, f.changes + 1
        finally:
            for request in f.close_requests:  # the follower ended first (shutdown, or a stop fired)
                request.closed = f.closed
                request.error = None if f.closed else "the engine stopped before the close was sent"
                request.done.set()
            f.close_requests.clear()
            self._untrack(f)

    async def _act(self, f: Follower) -> None:
        actions = self.actions
        if f.close_requests:
            await actions.operator_close(f)
            return
        if f.repair:
            f.repair = False
            await actions.repair(f)
            return
        if f.crossed:
            f.crossed = False
            await actions.confirm_exit(f)
        now = trio.current_time()
        if not f.closed and now >= f.retry_at:
            due = f.ts.move_due(now, self.params)
            if due is not None:
                await actions.move(f, due)

    def _untrack(self, f: Follower) -> None:
        if self._followers.get(f.position.id) is not f:
            return  # replaced by a newer follower of the same position
        del self._followers[f.position.id]
        same = self._by_symbol.get(f.position.symbol, [])
        if f.position.id in same:
            same.remove(f.position.id)
        if not same:
            self._by_symbol.pop(f.position.symbol, None)


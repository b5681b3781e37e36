"""The engine: owns the service nursery, the ports and the waves.

    async with Engine.open(config, exchange, storage) as engine:
        record = await engine.process_wave(signals)

`open` starts the state writer, loads markets and state, resolves positions left
`opening` by a crash (invariant 5), starts the trailing manager and the resolver of unknown
entry outcomes, runs a first protection sweep (its repairs go into the restart summary) and
starts the sweep's rounds. Leaving the block first waits (bounded, said on screen) for
entries of unknown outcome to be resolved or their windows to pass, then drains the
writer for at most `shutdown_timeout` seconds, then stops every service:
nothing the engine started outlives it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from engine.call_points import CallPoint
from engine.config import EngineConfig
from engine.events import EventKind
from engine.model import Market, PauseState, Position, PositionStatus, Signal, WaveRecord
from engine.nursery.calls import bounded
from engine.nursery.clocks import SystemClock
from engine.nursery.context import EngineContext
from engine.nursery.opener import Opener
from engine.nursery.position_book import PositionBook
from engine.nursery.ratelimit import RateLimiter
from engine.nursery.resolver import Resolver
from engine.nursery.resume import adopt_in_flight_stop
from engine.nursery.sweep import ProtectionSweep
from engine.nursery.trailing_manager import TrailingManager
from engine.nursery.wave import OutcomeListener, WaveRunner
from engine.nursery.writer import StateWriter
from engine.opening import OpenRun, Step
from engine.ports import Exchange, Storage, WallClock
from engine.wave_recovery import RestartSummary, complete_wave

log = logging.getLogger("trio_bot.engine")


class Engine:
    """The services of one engine, each owning its state: the position book (positions, ids,
    saving), the trailing manager (followers, prices), the sweep (repairs) and the wave
    runner; they reach each other through methods, never through each other's dicts."""

    def __init__(self, ctx: EngineContext, listener: OutcomeListener | None = None) -> None:
        self.ctx = ctx
        self._waves_started = 0
        self._resumed: list[int] = []  # positions resumed at start-up, re-read after the first sweep
        self.summary = RestartSummary()  # what start-up found and did, for the operator
        self.book = PositionBook(ctx)
        self.opener = Opener(ctx, self.book)
        self.trailing = TrailingManager(ctx, self.book)
        self.sweep = ProtectionSweep(ctx, self.book, self.trailing)
        self.resolver = Resolver(ctx, self.opener, self.trailing)
        self.opener.handover = self.resolver.take
        self.waves = WaveRunner(ctx, self.book, self.opener, self.trailing, listener, self.resolver)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: EngineConfig,
        exchange: Exchange,
        storage: Storage,
        *,
        clock: WallClock | None = None,
        listener: OutcomeListener | None = None,
        limiter: RateLimiter | None = None,
    ) -> AsyncIterator[Engine]:
        writer = StateWriter(storage, config)
        # Shutdown order: the services that produce state (trailing manager, sweep) stop first —
        # a stop move in flight finishes, shielded — then the writer drains what they left.
        async with trio.open_nursery() as services:
            await services.start(writer.run)
            try:
                markets = await bounded(CallPoint.LOAD_MARKETS, config.call_timeout, exchange.load_markets)
                limiter = limiter or RateLimiter(config.order_rate_per_second, config.order_burst)
                engine = cls(EngineContext(config, exchange, storage, writer, clock or SystemClock(),
                                           markets=markets, limiter=limiter), listener)
                async with trio.open_nursery() as producers:
                    await producers.start(engine.trailing.run)
                    await producers.start(engine.resolver.run)
                    try:
                        with engine.resolver.held():
                            await engine._start()
                        if config.sweep_interval > 0:
                            await engine._first_sweep()
                            await producers.start(engine.sweep.run)
                        yield engine
                    finally:
                        # An entry whose answer was lost may still execute: wait (bounded, said on
                        # screen) until each is resolved or its window has passed.
                        await engine.resolver.wait_for_pending()
                        producers.cancel_scope.cancel()
            finally:
                with trio.move_on_after(config.shutdown_timeout, shield=True):
                    await writer.drain()
                if writer.backlog:
                    log.error("shutdown: %d state records could not be stored within %gs",
                              writer.backlog, config.shutdown_timeout)
                services.cancel_scope.cancel()

    @property
    def config(self) -> EngineConfig:
        return self.ctx.config

    @property
    def markets(self) -> Mapping[str, Market]:
        return self.ctx.markets

    def positions(self, *, include_closed: bool = False) -> list[Position]:
        """The engine's live view (what it has written or is writing)."""
        return self.book.all(include_closed=include_closed)

    async def process_wave(self, raw_signals: Sequence[Mapping[str, Any]]) -> WaveRecord:
        """Run one wave to completion; always returns, with one outcome per signal."""
        self._waves_started += 1
        return await self.waves.run(f"w{self._waves_started}", raw_signals)

    # --- the operator's pause: waves still arrive, their valid signals are skipped ---

    PAUSE_KEY = "entries_paused"

    @property
    def pause_state(self) -> PauseState | None:
        return self.ctx.paused

    async def pause(self, reason: str = "") -> PauseState:
        """Pause new entries, durably: stored before it takes effect, so a restart keeps it.

        Stops, trailing, exits and the sweep go on. A wave already running starts no new signal.
        """
        state = self.ctx.paused or PauseState(reason=reason, since=self.ctx.clock.now())
        if self.ctx.paused is not None and reason and reason != state.reason:
            state = PauseState(reason=reason, since=state.since)
        await self.ctx.call(CallPoint.STORAGE_WRITE, self.ctx.storage.put_setting, self.PAUSE_KEY,
                            json.dumps({"reason": state.reason, "since": state.since}))
        if self.ctx.paused != state:
            self.ctx.paused = state
            self.ctx.event(EventKind.ENTRIES_PAUSED, state.reason)
        return state

    async def resume(self) -> None:
        await self.ctx.call(CallPoint.STORAGE_WRITE, self.ctx.storage.put_setting, self.PAUSE_KEY, None)
        if self.ctx.paused is not None:
            self.ctx.paused = None
            self.ctx.event(EventKind.ENTRIES_RESUMED)

    def stop_current_wave(self, reason: str) -> None:
        """For graceful shutdown: the running wave ends now, cleanup still runs."""
        self.waves.stop_current(reason)

    async def flush(self) -> bool:
        """Wait (bounded by `shutdown_timeout`) until queued state is stored; True if it was."""
        with trio.move_on_after(self.config.shutdown_timeout):
            await self.ctx.writer.drain()
            return True
        return False

    async def _start(self) -> None:
        ctx = self.ctx
        max_id = await ctx.call(CallPoint.STORAGE_READ, ctx.storage.max_position_id)
        self._waves_started = await ctx.call(CallPoint.STORAGE_READ, ctx.storage.wave_count)
        stored_pause = await ctx.call(CallPoint.STORAGE_READ, ctx.storage.setting, self.PAUSE_KEY)
        if stored_pause is not None:
            data = json.loads(stored_pause)
            ctx.paused = PauseState(reason=str(data.get("reason", "")), since=float(data.get("since", 0.0)))
            ctx.event(EventKind.ENTRIES_PAUSED,
                      f"still paused since the last run: {ctx.paused.reason}".rstrip(": "))
        self.book.load(await ctx.call(CallPoint.STORAGE_READ, ctx.storage.positions), max_id)
        for position in self.book.with_status(PositionStatus.OPENING):
            await self._reconcile_opening(position)
        for position in self.book.with_status(PositionStatus.OPEN):
            if self.trailing.view(position.id) is not None:
                continue  # just protected by reconciliation
            if position.stop_price is None:  # stored without a stop: its follower places one now
                self.trailing.follow(position)
                self.summary.unprotected += 1
                ctx.event(EventKind.TRAILING_RESUMED, "no stop on record: protecting it now", position_id=position.id)
                continue
            try:
                record = await ctx.read(CallPoint.STORAGE_TRAILING, ctx.storage.trailing, position.id)
            except Exception as exc:
                ctx.event(EventKind.TRAILING_LOAD_FAILED, str(exc), position_id=position.id)
                record = None
            stored_stop = position.stop_price
            position, record, superseded = await adopt_in_flight_stop(ctx, self.book, position, record)
            self.trailing.follow(position, record)
            if superseded is not None:  # a move landed while we were down: the old stop goes once covered
                self.trailing.cancel_stale(position.id, [superseded])
            else:
                self._resumed.append(position.id)
            self.summary.resumed_with_stop(position.id, position.symbol, position.side.value, position.quantity,
                                           record.stop_price if record else position.stop_price or stored_stop)
            ctx.event(EventKind.TRAILING_RESUMED, f"best {record.best_price:g}, stop {record.stop_price:g}"
                      if record else "no stored trailing state: starting afresh", position_id=position.id)
        await self._complete_unfinished_waves()

    async def _first_sweep(self) -> None:
        """Before the first wave: whatever a crash or an outage left, repaired now and summarised."""
        deferred = self.sweep.deferred
        repairs = await self.sweep.sweep_once()
        self.summary.swept(repairs, self.sweep.failed, self.sweep.deferred - deferred)
        # The exchange went on without us: a stop may have filled. Each resumed follower re-reads its
        # stop and position now; else, busy trailing a stop that is gone on a flat symbol, it would
        # keep the sweep from judging the symbol until the next round.
        for position_id in self._resumed:
            self.trailing.request_repair(position_id)
        self._resumed.clear()

    async def _complete_unfinished_waves(self) -> None:
        """Every wave ends: one stopped by a crash gets one outcome per signal now."""
        ctx = self.ctx
        waves = await ctx.read(CallPoint.STORAGE_READ, ctx.storage.unfinished_waves)
        if not waves:
            return
        stored = await ctx.read(CallPoint.STORAGE_READ, ctx.storage.positions, include_closed=True)
        by_signal = {(p.wave_id, p.signal_id): p for p in stored}
        by_signal.update({(p.wave_id, p.signal_id): p for p in self.book.all(include_closed=True)})
        for wave in waves:
            claims = await ctx.read(CallPoint.STORAGE_READ, ctx.storage.wave_claims, wave.id)
            positions = {sid: p for (wid, sid), p in by_signal.items() if wid == wave.id}
            outcomes = complete_wave(wave.outcomes, claims, positions)
            record = WaveRecord(wave.id, wave.at, wave.started_at, max(0.0, ctx.clock.now() - wave.started_at),
                                outcomes, interrupted=True)
            ctx.writer.submit(record)
            self.summary.waves_completed += 1
            c = record.counts
            ctx.event(EventKind.WAVE_INTERRUPTED, f"completed at start-up: {c.opened} opened, {c.failed} failed, "
                      f"{c.timed_out} timed out, {c.skipped} skipped, {c.rejected} rejected", wave_id=wave.id)

    async def _reconcile_opening(self, position: Position) -> None:
        """An intent left by a crash: ask the exchange what became of its entry, then protect.

        Still unknown after one look-up, it goes to the resolver with what is left of its
        window, counted from when the intent was stored.
        """
        ctx = self.ctx
        signal = Signal(position.signal_id, position.symbol, position.side, 0.0, 0)
        run = OpenRun.resumed(signal, position.id, position.quantity, "found `opening` at start-up")
        ctx.event(EventKind.RECONCILE_OPENING, position.entry_client_id, position_id=position.id)
        window = ctx.config.unknown_outcome_window
        try:
            stored = await ctx.read(CallPoint.STORAGE_READ, ctx.storage.orders, position.id)
            sent = max(o.updated_at for o in stored if o.client_order_id == position.entry_client_id)
            window -= max(0.0, ctx.clock.now() - sent)
        except Exception:  # no record of when: the whole window
            log.info("position %d: no stored time for its entry; resolving it for the whole window", position.id)
        await self.opener.settle_shielded(run, position, window)
        after = self.book.get(position.id)
        if run.step is Step.PROTECTED:
            self.summary.reconciled_opened += 1
        elif after is not None and after.status is PositionStatus.CLOSED and after.entry_price is None:
            self.summary.reconciled_never_executed += 1
        else:
            self.summary.reconciled_other += 1
        if run.step is Step.PROTECTED:
            self.trailing.follow_protected(self.book[position.id])

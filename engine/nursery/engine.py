"""The engine: owns the service nursery, the ports and the waves.

    async with Engine.open(config, exchange, storage) as engine:
        record = await engine.process_wave(signals)

`open` loads markets and state, resolves positions left `opening` by a crash
(invariant 5), and starts the state writer. Leaving the block drains the
writer for at most `shutdown_timeout` seconds, then stops every service:
nothing the engine started outlives it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from engine.call_points import CallPoint
from engine.config import EngineConfig
from engine.events import EventKind
from engine.lifecycle import OpenProgress
from engine.model import (
    PauseState,
    Position,
    PositionStatus,
    Signal,
    TrailingRecord,
    TrailingStatus,
    WaveRecord,
)
from engine.nursery.clocks import SystemClock
from engine.nursery.context import EngineContext
from engine.nursery.opener import Opener
from engine.nursery.sweep import ProtectionSweep
from engine.nursery.trailing_manager import TrailingManager
from engine.nursery.wave import OutcomeListener, WaveRunner
from engine.nursery.writer import StateWriter
from engine.ports import Exchange, Storage, WallClock

log = logging.getLogger("trio_bot.engine")


class Engine:
    def __init__(self, ctx: EngineContext, listener: OutcomeListener | None = None) -> None:
        self.ctx = ctx
        self._next_position_id = 1
        self._waves_started = 0
        self.opener = Opener(ctx)
        self.trailing = TrailingManager(ctx)
        self.sweep = ProtectionSweep(ctx, self.trailing, self._allocate_position_id)
        self.waves = WaveRunner(ctx, self.opener, self._allocate_position_id, self._on_protected, listener)

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
    ) -> AsyncIterator[Engine]:
        engine: Engine | None = None

        def trailing_saved(record: TrailingRecord) -> None:
            if engine is not None:
                engine._trailing_saved(record)

        writer = StateWriter(storage, config, on_trailing_saved=trailing_saved)
        ctx = EngineContext(config, exchange, storage, writer, clock or SystemClock())
        engine = cls(ctx, listener)
        # Shutdown order: the services that produce state (trailing manager, sweep) stop first —
        # a stop move in flight finishes, shielded — then the writer drains what they left.
        async with trio.open_nursery() as services:
            await services.start(writer.run)
            try:
                async with trio.open_nursery() as producers:
                    await producers.start(engine.trailing.run)
                    try:
                        await engine._start()
                        if config.sweep_interval > 0:
                            await producers.start(engine.sweep.run)
                        yield engine
                    finally:
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

    def positions(self, *, include_closed: bool = False) -> list[Position]:
        """The engine's live view (what it has written or is writing)."""
        return [p for p in sorted(self.ctx.positions.values(), key=lambda p: p.id)
                if include_closed or p.status is not PositionStatus.CLOSED]

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

    def _allocate_position_id(self) -> int:
        # Allocated in rank order by the wave, so ids (and client order ids) are deterministic.
        pid = self._next_position_id
        self._next_position_id += 1
        return pid

    async def _start(self) -> None:
        ctx = self.ctx
        ctx.markets = await ctx.call(CallPoint.LOAD_MARKETS, ctx.exchange.load_markets)
        self._next_position_id = await ctx.call(CallPoint.STORAGE_READ, ctx.storage.max_position_id) + 1
        self._waves_started = await ctx.call(CallPoint.STORAGE_READ, ctx.storage.wave_count)
        stored_pause = await ctx.call(CallPoint.STORAGE_READ, ctx.storage.setting, self.PAUSE_KEY)
        if stored_pause is not None:
            data = json.loads(stored_pause)
            ctx.paused = PauseState(reason=str(data.get("reason", "")), since=float(data.get("since", 0.0)))
            ctx.event(EventKind.ENTRIES_PAUSED,
                      f"still paused since the last run: {ctx.paused.reason}".rstrip(": "))
        for position in await ctx.call(CallPoint.STORAGE_READ, ctx.storage.positions):
            ctx.positions[position.id] = position
        for position in [p for p in ctx.positions.values() if p.status is PositionStatus.OPENING]:
            await self._reconcile_opening(position)
        for position in [p for p in ctx.positions.values() if p.status is PositionStatus.OPEN]:
            if position.id in self.trailing.followers or position.stop_price is None:
                continue  # just protected by reconciliation, or left for the sweep to protect
            try:
                record = await ctx.read(CallPoint.STORAGE_TRAILING, ctx.storage.trailing, position.id)
            except Exception as exc:
                ctx.event(EventKind.TRAILING_LOAD_FAILED, str(exc), position_id=position.id)
                record = None
            self.trailing.track(position, record)
            ctx.event(EventKind.TRAILING_RESUMED, f"best {record.best_price:g}, stop {record.stop_price:g}" if record
                      else "no stored trailing state: starting afresh", position_id=position.id)

    async def _reconcile_opening(self, position: Position) -> None:
        """An intent left by a crash: ask the exchange what became of its entry, then protect."""
        signal = Signal(position.signal_id, position.symbol, position.side, 0.0, 0)
        progress = OpenProgress(signal=signal, position_id=position.id, quantity=position.quantity,
                                intent_stored=True, entry_sent=True,
                                entry_error="found `opening` at start-up")
        self.ctx.event(EventKind.RECONCILE_OPENING, position.entry_client_id, position_id=position.id)
        await self.opener.settle_shielded(progress, position)
        if progress.protected:
            self._on_protected(position.id)

    def _on_protected(self, position_id: int) -> None:
        """A position just got its stop: the trailing manager follows it from now on.

        Its trailing state goes to the writer; the signal's outcome never waits for that save.
        """
        follower = self.trailing.track(self.ctx.positions[position_id])
        self.ctx.writer.submit_trailing(position_id, follower.latest_record)

    def _trailing_saved(self, record: TrailingRecord) -> None:
        position = self.ctx.positions.get(record.position_id)
        if position is not None and position.trailing is not TrailingStatus.ACTIVE \
                and position.status is PositionStatus.OPEN:
            self.ctx.save_position(attrs.evolve(position, trailing=TrailingStatus.ACTIVE))
            self.ctx.event(EventKind.TRAILING_SAVED, f"stop {record.stop_price:g}", position_id=record.position_id)




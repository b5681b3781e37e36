"""The wave nursery: one child per signal, filled to the target, always finishing.

Each signal runs in its own nursery child under `signal_timeout`; the wave
runs under `wave_timeout`. A child records its one outcome synchronously in
its `finally`, so even a child cancelled by the wave deadline answers, and the
report is derived from those outcomes — never from how many were "validated".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from engine import ids
from engine.call_points import CallPoint
from engine.events import EventKind
from engine.model import (
    Balance,
    HandledSignal,
    Outcome,
    OutcomeResolved,
    Position,
    PositionStatus,
    Signal,
    SignalOutcome,
    WaveOutcome,
    WaveRecord,
)
from engine.nursery.context import EngineContext
from engine.nursery.opener import Opener
from engine.nursery.position_book import PositionBook
from engine.nursery.resolver import Resolver
from engine.nursery.trailing_manager import TrailingManager
from engine.opening import Ending, OpenRun, Step
from engine.validation import Screened, claims_of, screen_size, screen_wave, wave_size
from engine.wave_book import WaveBook
from engine.wave_recovery import NOT_ATTEMPTED

log = logging.getLogger("trio_bot.wave")

OutcomeListener = Callable[[str, SignalOutcome], None]


@attrs.define
class _Snapshot:
    prices: dict[str, float]
    balance: Balance


class WaveRunner:
    def __init__(self, ctx: EngineContext, book: PositionBook, opener: Opener, trailing: TrailingManager,
                 listener: OutcomeListener | None = None, resolver: Resolver | None = None) -> None:
        self.ctx = ctx
        self.book = book
        self.opener = opener
        self.trailing = trailing
        self.resolver = resolver
        self._listener = listener
        self._current: trio.CancelScope | None = None
        self._stop_reason: str | None = None
        self.running_wave: str | None = None
        # The running wave's book and fill loop: a resolution arriving while it runs updates both.
        self._wave_book: WaveBook | None = None
        self._wake: trio.MemorySendChannel[None] | None = None
        if resolver is not None:
            resolver.observers.append(self._on_resolved)

    def _on_resolved(self, resolved: OutcomeResolved) -> None:
        """An entry of unknown outcome was decided: if its wave still runs, the wave's own record
        (and target accounting) takes the new outcome; otherwise the stored one was updated."""
        book = self._wave_book
        if book is None or resolved.wave_id != self.running_wave:
            return
        for outcome in book.outcomes:
            if outcome.position_id == resolved.position_id:
                book.resolve(attrs.evolve(outcome, outcome=resolved.outcome, reason=resolved.reason,
                                          trailing=resolved.trailing, resolved_at=resolved.resolved_at))
                if self._wake is not None:
                    self._wake.send_nowait(None)  # a failed one frees a place in the wave
                return

    def stop_current(self, reason: str) -> None:
        """Cancel the running wave: children clean up (shielded), the rest are skipped."""
        if self._current is not None:
            self._stop_reason = reason
            self._current.cancel()

    async def run(self, wave_id: str, raw_signals: Sequence[Mapping[str, Any]]) -> WaveRecord:
        ctx, cfg = self.ctx, self.ctx.config
        t0 = trio.current_time()
        started_at = ctx.clock.now()
        ctx.event(EventKind.WAVE_STARTED, f"{wave_size(raw_signals)} signals", wave_id=wave_id)
        claimed = False
        try:
            handled = await self._claim(WaveRecord(wave_id, t0, started_at), claims_of(raw_signals))
            claimed = True
        finally:
            if not claimed:
                # Stopped while the wave's start was being stored (it may have been): nothing was
                # attempted, and the wave's final record says so before exit.
                self._interrupted_before_start(wave_id, t0, started_at, raw_signals)
        if isinstance(handled, str):
            screened = screen_wave(raw_signals, ctx.markets, self.book.busy_symbols)
            refused = tuple(SignalOutcome(s.id, s.rank, s.symbol, s.side.value, Outcome.REJECTED, handled,
                                          score=s.score) for s in screened.candidates)
            screened = Screened((), tuple(sorted(screened.rejected + refused, key=lambda o: o.rank)))
        else:
            screened = screen_wave(raw_signals, ctx.markets, self.book.busy_symbols, handled)
        book = WaveBook(screened.candidates, target=cfg.max_positions_per_wave,
                        concurrency=cfg.max_concurrent_signals)
        book.add(screened.rejected)
        for outcome in screened.rejected:
            self._announce(wave_id, outcome)
        # Stored from the start: had the engine died now, that is what became of each candidate.
        # Each child overwrites its own as it ends; a restart completes whatever is left.
        provisional = tuple(SignalOutcome(s.id, s.rank, s.symbol, s.side.value, Outcome.SKIPPED, NOT_ATTEMPTED,
                                          score=s.score) for s in screened.candidates)
        ctx.writer.submit(WaveRecord(wave_id, t0, started_at, None, book.outcomes + provisional))
        skip_reason = f"the wave's target of {cfg.max_positions_per_wave} positions was reached"
        self._stop_reason = None
        self.running_wave = wave_id
        self._wave_book = book
        ended = False
        try:
            with trio.move_on_after(cfg.wave_timeout) as wave_scope:
                self._current = wave_scope
                if ctx.paused is None:
                    snapshot = await self._snapshot(wave_id, sorted({s.symbol for s in screened.candidates}))
                    if isinstance(snapshot, str):
                        skip_reason = snapshot
                    else:
                        await self._fill(wave_id, book, snapshot)
                if ctx.paused is not None and not book.target_reached:  # paused: nothing new starts
                    skip_reason = ctx.paused.skip_reason
            ended = True
        finally:
            if not ended:
                # The engine itself is being stopped (SIGINT/SIGTERM cancel the run; the
                # cancellation may arrive wrapped in a group): the children have answered,
                # shielded; the wave's final record is still stored before exit.
                self._current = None
                self.running_wave = None
                self._wave_book = None
                for outcome in book.skip_rest(NOT_ATTEMPTED):
                    self._announce(wave_id, outcome)
                ctx.writer.submit(WaveRecord(wave_id, t0, started_at, trio.current_time() - t0, book.outcomes,
                                             interrupted=True))
                ctx.event(EventKind.WAVE_INTERRUPTED, "the engine stopped during the wave", wave_id=wave_id)
        self._current = None
        self.running_wave = None
        self._wave_book = None
        interrupted = self._stop_reason is not None
        if wave_scope.cancelled_caught:
            skip_reason = self._stop_reason or (
                f"the wave deadline ({cfg.wave_timeout:g}s) passed before it was attempted")
        elif book.pending and not book.target_reached:
            n = len(book.pending)
            skip_reason += f", counting {n} entr{'y' if n == 1 else 'ies'} whose outcome is being resolved"
        for outcome in book.skip_rest(skip_reason):  # every signal's outcome gets its event
            self._announce(wave_id, outcome)
        record = WaveRecord(wave_id, t0, started_at, trio.current_time() - t0, book.outcomes,
                            interrupted=interrupted)
        ctx.writer.submit(record)
        c = record.counts
        ctx.event(EventKind.WAVE_FINISHED, f"{c.opened} opened, {c.failed} failed, {c.timed_out} timed out, "
                  f"{c.skipped} skipped, {c.rejected} rejected in {record.duration:.2f}s", wave_id=wave_id)
        return record

    def _interrupted_before_start(self, wave_id: str, t0: float, started_at: float,
                                  raw_signals: Sequence[Mapping[str, Any]]) -> None:
        ctx = self.ctx
        screened = screen_wave(raw_signals, ctx.markets, self.book.busy_symbols)
        outcomes = screened.rejected + tuple(
            SignalOutcome(s.id, s.rank, s.symbol, s.side.value, Outcome.SKIPPED, NOT_ATTEMPTED, score=s.score)
            for s in screened.candidates)
        outcomes = tuple(sorted(outcomes, key=lambda o: o.rank))
        for outcome in outcomes:
            self._announce(wave_id, outcome)
        ctx.writer.submit(WaveRecord(wave_id, t0, started_at, trio.current_time() - t0, outcomes, interrupted=True))
        ctx.event(EventKind.WAVE_INTERRUPTED, "the engine stopped during the wave", wave_id=wave_id)

    async def _claim(self, wave: WaveRecord, claims: dict[str, int]) -> dict[str, HandledSignal] | str:
        """Store the wave's start and claim its ids; the earlier claims, or why it could not check.

        Retried like a read: a repeated claim finds its own rows and reports only other waves'.
        Without the answer no signal of the wave may trade: it could be a repeat.
        """
        ctx, retention = self.ctx, self.ctx.config.signal_memory_retention
        forget_before = wave.started_at - retention if retention > 0 else None
        try:
            return await ctx.read(CallPoint.CLAIM_SIGNALS, ctx.storage.claim_signals, wave, claims,
                                  forget_before=forget_before)
        except Exception as exc:
            ctx.event(EventKind.SIGNAL_CLAIM_FAILED, str(exc), wave_id=wave.id)
            return f"could not check the signal ids against those already handled: {exc}"

    async def _snapshot(self, wave_id: str, symbols: list[str]) -> _Snapshot | str:
        """Prices and free margin, read concurrently; a reason string if the exchange can't say."""
        if not symbols:
            return _Snapshot({}, Balance(0.0, 0.0))
        ctx = self.ctx
        result: dict[str, Any] = {}

        async def read(key: str, fn: Callable[[], Any]) -> None:
            try:
                result[key] = await fn()
            except Exception as exc:
                result.setdefault("error", f"could not read {key} from the exchange: {exc}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, "prices", lambda: ctx.read(CallPoint.QUERY, ctx.exchange.fetch_prices,
                                                                symbols))
            nursery.start_soon(read, "balance", lambda: ctx.read(CallPoint.QUERY, ctx.exchange.fetch_balance))
        if "error" in result:
            ctx.event(EventKind.WAVE_SNAPSHOT_FAILED, result["error"], wave_id=wave_id)
            return str(result["error"])
        return _Snapshot(result["prices"], result["balance"])

    async def _fill(self, wave_id: str, book: WaveBook, snapshot: _Snapshot) -> None:
        ctx, cfg = self.ctx, self.ctx.config
        free = snapshot.balance.free
        wake_send, wake_receive = trio.open_memory_channel[None](math.inf)
        self._wake = wake_send

        def release(margin: float) -> None:
            nonlocal free
            free += margin

        async with trio.open_nursery() as nursery:
            while True:
                while ctx.paused is None and (signal := book.next_to_start()) is not None:
                    price = snapshot.prices.get(signal.symbol)
                    market = ctx.markets[signal.symbol]
                    why: str | None = f"the exchange gave no price for {signal.symbol}"
                    quantity = 0.0
                    if price is not None:
                        try:
                            quantity, why = screen_size(cfg.position_size_usdt, cfg.leverage, price, market,
                                                        free)
                        except Exception as exc:  # a sizing bug costs this signal, never the wave
                            log.exception("sizing signal %s failed", signal.id)
                            why = f"internal error while sizing the order: {exc!r}"[:300]
                    if why is not None or price is None:
                        outcome = SignalOutcome(signal.id, signal.rank, signal.symbol, signal.side.value,
                                                Outcome.REJECTED, why, score=signal.score)
                        book.finish(outcome)
                        self._announce(wave_id, outcome)
                        continue
                    margin = quantity * price / cfg.leverage
                    free -= margin
                    nursery.start_soon(self._child, wave_id, book, signal, quantity, margin, release,
                                       wake_send, self.book.allocate_id(), name=f"signal-{signal.id}")
                if book.idle or (ctx.paused is not None and not book.in_flight):
                    break
                await wake_receive.receive()
        self._wake = None

    async def _child(self, wave_id: str, book: WaveBook, signal: Signal, quantity: float, margin: float,
                     release: Callable[[float], None], wake: trio.MemorySendChannel[None],
                     position_id: int) -> None:
        ctx, cfg = self.ctx, self.ctx.config
        run = OpenRun(signal=signal, position_id=position_id, quantity=quantity)
        base = Position(id=position_id, signal_id=signal.id, wave_id=wave_id, symbol=signal.symbol,
                        side=signal.side, status=PositionStatus.OPENING, quantity=quantity,
                        entry_client_id=ids.entry_id(position_id))
        ctx.event(EventKind.SIGNAL_STARTED, f"rank {signal.rank}: {signal.side} {signal.symbol}",
                  wave_id=wave_id, signal_id=signal.id)
        ending, crash = Ending.COMPLETED, None
        try:
            with trio.move_on_after(cfg.signal_timeout) as scope:
                await self.opener.open(run, base)
            if scope.cancelled_caught:
                ending = Ending.SIGNAL_DEADLINE
        except trio.Cancelled:
            ending = Ending.WAVE_DEADLINE
            raise
        except Exception as exc:  # a bug in one child must not crash the wave
            log.exception("signal %s crashed", signal.id)
            ending, crash = Ending.CRASHED, exc
        finally:
            outcome = run.outcome(ending, crash)
            # Handed to the resolver: reported provisionally, updated when it is decided.
            pending = self.resolver is not None and self.resolver.is_pending(position_id)
            if pending and self.resolver is not None:
                self.resolver.ended(position_id, ending)
            if run.step is Step.PROTECTED:
                self.trailing.follow_protected(self.book[position_id])
            elif not pending:  # an entry being resolved may yet fill: its margin stays reserved
                release(margin)
            book.finish(outcome, pending=pending)
            ctx.writer.submit(WaveOutcome(wave_id, outcome))
            self._announce(wave_id, outcome)
            wake.send_nowait(None)

    def _announce(self, wave_id: str, outcome: SignalOutcome) -> None:
        detail = f"{outcome.outcome}" + (f": {outcome.reason}" if outcome.reason else "")
        self.ctx.event(EventKind.SIGNAL_OUTCOME, detail,
                       wave_id=wave_id, signal_id=outcome.signal_id, position_id=outcome.position_id)
        if self._listener is not None:
            try:
                self._listener(wave_id, outcome)
            except Exception:  # whoever listens (a console, an embedder) must not break the wave
                log.exception("the outcome listener failed for signal %s", outcome.signal_id)

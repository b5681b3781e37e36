"""The unknown-outcome resolver: entries whose answer was lost, looked up until the exchange says.

A request whose answer never came (a timeout, a lost response, a call cancelled in
flight, Binance's 503 "Unknown error" / -1007) may still execute: cancelling an HTTP
request does not un-send it. The opener looks such an entry up once; if that does not
settle it, the run is handed over here and the wave goes on, reporting the signal
`timed_out` ("being resolved"). The position stays `opening` in the store, so a crash
in the meantime is resolved by the next start-up's reconciliation.

For `unknown_outcome_window` seconds the entry is looked up by client id every
`LOOKUP_EVERY` seconds. A fill found is protected at once (`Opener.protect`, shielded
by `cleanup_timeout`) and followed by the trailing manager; an order still unknown to
the exchange when the window ends was never executed. Either way the signal's stored
outcome is updated (`OutcomeResolved`, with the time), and the running wave, if it is
still that signal's, takes the new outcome into its own record.

Lifetime: a service in the engine's producer nursery. Each resolution is its own
child, shielded until its window ends: shutdown (engine exit, SIGINT, SIGTERM) waits
for it, bounded, and says what it is waiting for (`wait_for_pending`). A look-up that
cannot reach the exchange proves nothing, so an entry the exchange could not be asked
about is still looked up after its window (less often, and no longer shielded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import attrs
import trio

from engine import ids
from engine.events import EventKind
from engine.model import OrderState, OutcomeResolved, Position
from engine.nursery import orders
from engine.nursery.context import EngineContext
from engine.nursery.opener import Opener
from engine.nursery.trailing_manager import TrailingManager
from engine.opening import Ending, OpenRun, Step, resolution

log = logging.getLogger("trio_bot.resolver")

# How often an entry of unknown outcome is looked up within its window: a late fill is
# seen at most this long after the exchange shows it, and protected one order round trip later.
LOOKUP_EVERY = 0.5
# After the window, while the exchange cannot be asked (or shows the entry still resting).
LOOKUP_BEYOND_EVERY = 5.0

Observer = Callable[[OutcomeResolved], None]


@attrs.define(eq=False)
class Pending:
    """One entry being resolved."""

    run: OpenRun
    base: Position
    give_up_at: float  # Trio time at which "not found" is believed
    window: float
    first_error: str | None
    ending: Ending = Ending.COMPLETED  # how the signal's child ended (a deadline, or not)
    found: OrderState | None = None
    known: bool = False  # the last look-up got an answer (found or not)
    # Set once shutdown need not wait any longer: decided (and a fill protected), or past the
    # window without an answer.
    settled: trio.Event = attrs.field(factory=trio.Event)
    scope: trio.CancelScope | None = None  # its shielded window, while it runs


class Resolver:
    def __init__(self, ctx: EngineContext, opener: Opener, trailing: TrailingManager) -> None:
        self.ctx = ctx
        self.opener = opener
        self.trailing = trailing
        self.observers: list[Observer] = []  # told of each resolution (the wave runner)
        self.resolved: dict[str, int] = {}  # how many resolutions ended how (outcome → count)
        self._pending: dict[int, Pending] = {}
        self._nursery: trio.Nursery | None = None
        self._held: list[Pending] | None = None
        self._wait: trio.CancelScope | None = None
        self._abandoned = False

    # --- views ---

    def pending(self) -> list[Pending]:
        """Entries being resolved, oldest first."""
        return sorted(self._pending.values(), key=lambda p: p.give_up_at)

    def is_pending(self, position_id: int) -> bool:
        return position_id in self._pending

    # --- the service ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Queue what is taken until the block ends (start-up: the interrupted waves are
        completed first, so a resolution is always written after the record it updates)."""
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            for pending in held:
                self._start(pending)

    def take(self, run: OpenRun, base: Position, window: float) -> None:
        """Synchronous (called from a child's cleanup): resolve this run in the background, for
        `window` more seconds at most before "not found" is believed."""
        pending = Pending(run, base, trio.current_time() + window, window, run.facts.entry_error)
        self._pending[run.position_id] = pending
        if self._held is not None:
            self._held.append(pending)
        else:
            self._start(pending)

    def ended(self, position_id: int, ending: Ending) -> None:
        """How the signal's child ended (its wave tells): a deadline makes "never executed" `timed_out`."""
        pending = self._pending.get(position_id)
        if pending is not None:
            pending.ending = ending

    def _start(self, pending: Pending) -> None:
        if self._nursery is None:  # the engine is closing: the store keeps it `opening` for the restart
            self._forget(pending)
            log.warning("position %d: entry of unknown outcome left for reconciliation at the next start",
                        pending.run.position_id)
            return
        self._nursery.start_soon(self._resolve, pending, name=f"resolve-{pending.run.position_id}")

    def _forget(self, pending: Pending) -> None:
        self._pending.pop(pending.run.position_id, None)
        pending.settled.set()

    async def wait_for_pending(self) -> None:
        """Shutdown: wait until every entry of unknown outcome is resolved (a fill protected) or
        its window has passed; bounded, and it says on screen what it waits for."""
        pending = [p for p in self.pending() if not p.settled.is_set()]
        if not pending or self._abandoned:
            return
        now = trio.current_time()
        bound = max(0.0, max(p.give_up_at for p in pending) - now) + self.ctx.config.cleanup_timeout
        what = ", ".join(f"position {p.run.position_id} ({p.run.signal.symbol}, signal {p.run.signal.id}, "
                         f"window ends in {max(0.0, p.give_up_at - now):.0f}s)" for p in pending)
        log.warning("shutdown: waiting up to %.0fs for %d entr%s of unknown outcome to be resolved "
                    "(a second Ctrl-C stops waiting): %s", bound, len(pending), "y" if len(pending) == 1 else "ies",
                    what)
        self.ctx.event(EventKind.RESOLVER_WAITING, f"up to {bound:.0f}s for {what}")
        with trio.move_on_after(bound, shield=True) as self._wait:
            for p in pending:
                await p.settled.wait()
        self._wait = None

    def abandon_for_shutdown(self) -> str | None:
        """The operator's second Ctrl-C: stop waiting for entries of unknown outcome; what was
        left, for the screen (None: nothing was waited for).

        Nothing is decided for them: each stays `opening` in the store, so the next start looks
        it up again (and protects it if it filled). Until then a fill has no stop, which is why
        this is the operator's call and never the default.
        """
        if self._abandoned:
            return None
        self._abandoned = True
        left = [p for p in self.pending() if not p.settled.is_set()]
        for p in left:
            if p.scope is not None:
                p.scope.cancel()
        if self._wait is not None:
            self._wait.cancel()
        if not left:
            return None
        what = ", ".join(f"position {p.run.position_id} ({p.run.signal.symbol})" for p in left)
        self.ctx.event(EventKind.RESOLVER_ABANDONED, f"left for the next start: {what}")
        return (f"not waiting any longer for {what}: left `opening` for the next start to look up; "
                "a fill meanwhile has no stop until then")

    # --- one resolution ---

    async def _resolve(self, p: Pending) -> None:
        try:
            # Shielded: shutdown does not cut a window short (bounded by the window itself; the
            # slack lets the last look-up finish).
            with trio.CancelScope(shield=True, deadline=p.give_up_at + self.ctx.config.cleanup_timeout) as p.scope:
                if self._abandoned:
                    p.scope.cancel()
                await self._look(p, until=p.give_up_at, every=LOOKUP_EVERY)
            p.scope = None
            await self._protect(p)
            if p.run.step is Step.ENTRY_SENT:
                # Past the window and the exchange could not say (or shows it resting): no proof
                # either way, so keep asking, less often and no longer holding up a shutdown.
                p.settled.set()
                await self._look(p, until=float("inf"), every=LOOKUP_BEYOND_EVERY)
                await self._protect(p)
            self._finish(p)
        finally:
            self._forget(p)

    async def _protect(self, p: Pending) -> None:
        """A fill found: its stop-loss (or an emergency close) now, shielded by `cleanup_timeout`."""
        if p.run.step is not Step.FILLED:
            return
        timeout = self.ctx.config.cleanup_timeout
        with trio.move_on_after(timeout, shield=True) as cleanup:
            await self.opener.protect(p.run)
        if cleanup.cancelled_caught:
            self._event(p, EventKind.CLEANUP_EXPIRED, f"after {timeout:g}s")

    async def _look(self, p: Pending, *, until: float, every: float) -> None:
        """Look the entry up until it is decided or `until`; "not found" decides only once the
        window has passed."""
        run, cid = p.run, ids.entry_id(p.run.position_id)
        while True:
            p.found, p.known = None, False
            p.found, p.known = await orders.lookup(self.ctx, run.signal.symbol, cid, self._emit(p))
            if p.known and p.found is not None:
                self.opener.entry_answer(run, p.found)
                if run.step is not Step.ENTRY_SENT:
                    return
            now = trio.current_time()
            if p.known and p.found is None and now >= p.give_up_at:
                run.advance(Step.ENTRY_NOT_FOUND)
                self._event(p, EventKind.ENTRY_NOT_FOUND,
                            f"{cid}: the exchange never saw it (looked up for {p.window:g}s)")
                return
            if now >= until:
                return
            await trio.sleep(min(every, until - now))

    def _finish(self, p: Pending) -> None:
        """Store what the resolution found and update the signal's outcome."""
        run, ctx = p.run, self.ctx
        self.opener.persist(run, p.base)
        if run.step is Step.ENTRY_SENT:
            return  # cancelled past its window without an answer: `opening` stays for the restart
        kind, reason, trailing = resolution(run, p.ending, f"{p.window:g}s", p.first_error)
        if run.step is Step.PROTECTED:
            position = self.opener.book.get(run.position_id)
            if position is not None:
                self.trailing.follow_protected(position)
        resolved = OutcomeResolved(p.base.wave_id, run.position_id, run.signal.id, kind, reason, trailing,
                                   ctx.clock.now())
        ctx.writer.submit(resolved)
        self.resolved[kind.value] = self.resolved.get(kind.value, 0) + 1
        detail = f"{kind}" + (f": {reason}" if reason else "")
        self._event(p, EventKind.ENTRY_RESOLVED, detail)
        # On screen without -v: the operator was told "being resolved" and hears how it ended.
        log.warning("signal %s (position %d, %s, wave %s) resolved: %s", run.signal.id, run.position_id,
                    run.signal.symbol, p.base.wave_id, detail)
        for observe in self.observers:
            try:
                observe(resolved)
            except Exception:  # an observer's bug must not lose the resolution
                log.exception("a resolution observer failed for position %d", run.position_id)

    def _emit(self, p: Pending) -> orders.Emit:
        return lambda kind, detail: self._event(p, kind, detail)

    def _event(self, p: Pending, kind: EventKind, detail: str = "") -> None:
        self.ctx.event(kind, detail, wave_id=p.base.wave_id, signal_id=p.run.signal.id,
                       position_id=p.run.position_id)


"""Wave accounting: which candidate starts next, and the one outcome of each signal.

Pure and synchronous so the wave nursery can call it from a child's `finally`
(even while cancelled) and so the filling rules can be property-tested.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from engine.model import Counts, Outcome, Signal, SignalOutcome


class WaveBook:
    """Fills a wave: target positions, bounded concurrency, replacements from the buffer."""

    def __init__(self, candidates: Iterable[Signal], *, target: int, concurrency: int) -> None:
        self._queue = deque(sorted(candidates, key=lambda s: s.rank))
        self.target = target
        self.concurrency = concurrency
        self.in_flight: dict[str, Signal] = {}
        self.opened = 0
        # Ranks reported provisionally while the resolver decides their entry: counted towards
        # the target (each may yet be a position), never waited for.
        self.pending: set[int] = set()
        self._outcomes: dict[int, SignalOutcome] = {}

    def next_to_start(self) -> Signal | None:
        """The next candidate to start now, or None if the rules say wait (or stop)."""
        if not self._queue:
            return None
        if len(self.in_flight) >= self.concurrency:
            return None
        if self.opened + len(self.pending) + len(self.in_flight) >= self.target:
            return None
        signal = self._queue.popleft()
        self.in_flight[signal.id] = signal
        return signal

    def finish(self, outcome: SignalOutcome, *, pending: bool = False) -> None:
        """Record the one outcome of a started signal; a second outcome is a bug.

        `pending`: the outcome is provisional, its entry's outcome is being resolved.
        """
        if outcome.rank in self._outcomes:
            raise RuntimeError(f"signal {outcome.signal_id} got a second outcome")
        self.in_flight.pop(outcome.signal_id, None)
        self._outcomes[outcome.rank] = outcome
        if pending:
            self.pending.add(outcome.rank)
        if outcome.outcome is Outcome.OPENED:
            self.opened += 1

    def resolve(self, outcome: SignalOutcome) -> bool:
        """A provisional outcome decided while the wave still runs; False if it was not pending."""
        if outcome.rank not in self.pending:
            return False
        self.pending.discard(outcome.rank)
        self._outcomes[outcome.rank] = outcome
        if outcome.outcome is Outcome.OPENED:
            self.opened += 1
        return True

    def add(self, outcomes: Iterable[SignalOutcome]) -> None:
        """Outcomes decided without starting a child (rejections)."""
        for outcome in outcomes:
            if outcome.rank in self._outcomes:
                raise RuntimeError(f"signal {outcome.signal_id} got a second outcome")
            self._outcomes[outcome.rank] = outcome

    @property
    def target_reached(self) -> bool:
        return self.opened >= self.target

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing more can start."""
        return not self.in_flight and (not self._queue or self.opened + len(self.pending) >= self.target)

    def skip_rest(self, reason: str) -> list[SignalOutcome]:
        """Every candidate never started becomes `skipped` with `reason`; returns those outcomes
        (each is announced like any other)."""
        skipped = []
        while self._queue:
            s = self._queue.popleft()
            skipped.append(SignalOutcome(
                signal_id=s.id, rank=s.rank, symbol=s.symbol, side=s.side.value,
                outcome=Outcome.SKIPPED, reason=reason, score=s.score))
            self._outcomes[s.rank] = skipped[-1]
        return skipped

    @property
    def outcomes(self) -> tuple[SignalOutcome, ...]:
        return tuple(self._outcomes[r] for r in sorted(self._outcomes))

    @property
    def counts(self) -> Counts:
        return Counts.of(self.outcomes)

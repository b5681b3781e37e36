"""The open as an explicit state machine: its steps, the legal moves between them, and
the outcome each final step implies.

The opener advances an `OpenRun` one step at a time; a move the table does not allow
raises `IllegalStep`, so a bug cannot leave a run in a state nobody designed. Whatever
point a run was interrupted at, its outcome is a lookup from the final step and how
the child ended (`Ending`) — no cascade of conditions, and every pair has exactly one
answer (tests/test_opening.py walks every path through the table).

Kept pure (no Trio) so the tests can end a run at every step.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import attrs

from engine.model import (
    ExitReason,
    OrderStatus,
    Outcome,
    Position,
    PositionStatus,
    Signal,
    SignalOutcome,
    TrailingStatus,
)
from engine.sizing import realized_pnl


class Step(StrEnum):
    NEW = "new"  # nothing stored, nothing sent
    INTENT_FAILED = "intent_failed"  # the intent could not be stored: no order was sent
    INTENT_STORED = "intent_stored"  # the position row exists (`opening`); no order yet
    ENTRY_SENT = "entry_sent"  # the entry may have reached the exchange: unknown until resolved
    ENTRY_FAILED = "entry_failed"  # refused, or found rejected/cancelled
    ENTRY_NOT_FOUND = "entry_not_found"  # looked up: the exchange never saw it
    FILLED = "filled"  # money at risk: no stop yet
    PROTECTED = "protected"  # a live stop-loss covers the fill
    STOPPED_OUT = "stopped_out"  # the stop filled while the open was finishing
    CLOSED = "closed"  # no stop could be placed; the emergency close went through
    UNPROTECTED = "unprotected"  # no stop and the close failed: the alarm


TRANSITIONS: Mapping[Step, frozenset[Step]] = {
    Step.NEW: frozenset({Step.INTENT_FAILED, Step.INTENT_STORED}),
    Step.INTENT_STORED: frozenset({Step.ENTRY_SENT}),
    Step.ENTRY_SENT: frozenset({Step.FILLED, Step.ENTRY_FAILED, Step.ENTRY_NOT_FOUND}),
    Step.FILLED: frozenset({Step.PROTECTED, Step.STOPPED_OUT, Step.CLOSED, Step.UNPROTECTED}),
    Step.INTENT_FAILED: frozenset(),
    Step.ENTRY_FAILED: frozenset(),
    Step.ENTRY_NOT_FOUND: frozenset(),
    Step.PROTECTED: frozenset(),
    Step.STOPPED_OUT: frozenset(),
    Step.CLOSED: frozenset(),
    Step.UNPROTECTED: frozenset(),
}

# Steps after which the exchange holds (or may hold) the position.
FILLED_STEPS = frozenset({Step.FILLED, Step.PROTECTED, Step.STOPPED_OUT, Step.CLOSED, Step.UNPROTECTED})
# A fill that is neither covered by a live stop nor closed: money at risk.
EXPOSED_STEPS = frozenset({Step.FILLED, Step.UNPROTECTED})


class Ending(StrEnum):
    """How the signal's child ended."""

    COMPLETED = "completed"
    SIGNAL_DEADLINE = "signal deadline"
    WAVE_DEADLINE = "wave deadline"
    CRASHED = "crashed"  # a bug in the child; its cleanup still ran

    @property
    def deadline(self) -> str:
        """The deadline a reason names ("signal deadline" unless the wave's fired)."""
        return "wave deadline" if self is Ending.WAVE_DEADLINE else "signal deadline"

    @property
    def timed_out(self) -> bool:
        return self in (Ending.SIGNAL_DEADLINE, Ending.WAVE_DEADLINE)


class IllegalStep(RuntimeError):
    """A move the transition table does not allow: a bug in the opener, never bad input."""


@attrs.frozen
class Facts:
    """What the run learned on the way; which ones are set depends on the step reached."""

    intent_error: str | None = None
    entry_error: str | None = None  # why the entry did not (or may not have) filled
    filled_quantity: float = 0.0
    fill_price: float | None = None
    stop_client_id: str | None = None
    stop_price: float | None = None
    stop_status: OrderStatus | None = None
    stop_error: str | None = None
    close_price: float | None = None
    close_error: str | None = None


@attrs.define
class OpenRun:
    """One signal's open: where it is (`step`) and what it knows (`facts`)."""

    signal: Signal
    position_id: int
    quantity: float
    step: Step = Step.NEW
    facts: Facts = attrs.field(factory=Facts)
    resumed_after_crash: bool = False  # its first stop may already be on the exchange, even filled

    @classmethod
    def resumed(cls, signal: Signal, position_id: int, quantity: float, why: str) -> OpenRun:
        """A run a crash left at `entry_sent` (the store says `opening`): resolve it from there."""
        return cls(signal, position_id, quantity, Step.ENTRY_SENT, Facts(entry_error=why), resumed_after_crash=True)

    def advance(self, step: Step, **facts: object) -> None:
        if step not in TRANSITIONS[self.step]:
            raise IllegalStep(f"open of position {self.position_id}: {self.step} -> {step} is not a legal move")
        self.step = step
        self.note(**facts)

    def note(self, **facts: object) -> None:
        """Record facts without moving (an unanswered entry stays `entry_sent`)."""
        self.facts = attrs.evolve(self.facts, **facts)  # type: ignore[arg-type]

    @property
    def intent_stored(self) -> bool:
        return self.step not in (Step.NEW, Step.INTENT_FAILED)

    @property
    def filled(self) -> bool:
        return self.step in FILLED_STEPS

    @property
    def exposed(self) -> bool:
        return self.step in EXPOSED_STEPS

    def outcome(self, ending: Ending, crash: BaseException | None = None) -> SignalOutcome:
        """The one outcome of this run ended this way (`OUTCOMES`)."""
        kind, template, trailing = verdict(self.step, ending)
        f, s = self.facts, self.signal
        why = f.close_error or f.stop_error or "cleanup deadline expired"
        reason = None if template is None else template.format(
            deadline=ending.deadline, intent_error=f.intent_error, stop_error=f.stop_error, why=why,
            entry_error=f.entry_error or "the exchange has no such order",
            unknown=f.entry_error or ending.deadline, crash=repr(crash))
        return SignalOutcome(signal_id=s.id, rank=s.rank, symbol=s.symbol, side=s.side.value, outcome=kind,
                             reason=reason, position_id=self.position_id if self.intent_stored else None,
                             trailing=trailing, score=s.score)

    def position_status(self) -> PositionStatus:
        if self.step in (Step.PROTECTED, *EXPOSED_STEPS):
            return PositionStatus.OPEN
        if self.step is Step.ENTRY_SENT:
            return PositionStatus.OPENING  # sent but never resolved: start-up reconciliation decides
        return PositionStatus.CLOSED

    def position_after(self, base: Position, now: float) -> Position:
        """The stored position row that matches the run."""
        f, status = self.facts, self.position_status()
        protected = self.step is Step.PROTECTED
        closed = self.step in (Step.STOPPED_OUT, Step.CLOSED)
        return attrs.evolve(
            base,
            status=status,
            quantity=f.filled_quantity or base.quantity,
            entry_price=f.fill_price,
            stop_price=f.stop_price if f.stop_status is OrderStatus.NEW else base.stop_price,
            stop_client_id=f.stop_client_id if f.stop_status is OrderStatus.NEW else None,
            exit_price=f.close_price if closed else None,
            exit_reason=(ExitReason.STOP_LOSS if self.step is Step.STOPPED_OUT
                         else ExitReason.EMERGENCY_CLOSE if self.step is Step.CLOSED else None),
            opened_at=now if self.filled and base.opened_at is None else base.opened_at,
            closed_at=now if status is PositionStatus.CLOSED else None,
            trailing=TrailingStatus.PENDING if protected else TrailingStatus.NONE,
            realized_pnl=(realized_pnl(base.side, f.fill_price, f.close_price, f.filled_quantity)
                          if closed and f.fill_price is not None and f.close_price is not None else None),
        )


Verdict = tuple[Outcome, str | None, TrailingStatus]


def _failed(reason: str) -> Verdict:
    return Outcome.FAILED, reason, TrailingStatus.NONE


def _timed_out(reason: str) -> Verdict:
    return Outcome.TIMED_OUT, reason, TrailingStatus.NONE


_UNPROTECTED = _failed("UNPROTECTED position: no stop-loss and the close failed ({why})")


def _by_ending(completed: Verdict, deadline: Verdict | None = None) -> Mapping[Ending, Verdict]:
    """One verdict when the child completed, one when a deadline ended it (the same unless
    given); a crash before money was at risk is always the crash's fault."""
    return {Ending.COMPLETED: completed, Ending.SIGNAL_DEADLINE: deadline or completed,
            Ending.WAVE_DEADLINE: deadline or completed, Ending.CRASHED: _failed("internal error: {crash}")}


# Provisional: the entry's answer was lost and the resolver (engine/nursery/resolver.py) keeps
# looking it up in the background; the stored outcome is updated when it is decided.
_UNKNOWN = "entry order outcome unknown ({unknown}); being resolved"

# The final step, and a verdict for every way the child can end. Protected beats a deadline
# (the position is open and safe); an exposed fill is never hidden, not even by a crash.
OUTCOMES: Mapping[Step, Verdict | Mapping[Ending, Verdict]] = {
    Step.PROTECTED: (Outcome.OPENED, None, TrailingStatus.PENDING),
    Step.FILLED: _UNPROTECTED,
    Step.UNPROTECTED: _UNPROTECTED,
    Step.NEW: _by_ending(_timed_out("{deadline} fired before the intent was stored; no order sent")),
    Step.INTENT_FAILED: _by_ending(_failed("could not store the position intent, no order sent: {intent_error}")),
    Step.INTENT_STORED: _by_ending(_timed_out("{deadline} fired before the entry order was sent")),
    Step.ENTRY_SENT: _by_ending(_timed_out(_UNKNOWN)),
    Step.ENTRY_FAILED: _by_ending(_failed("entry order failed: {entry_error}")),
    Step.ENTRY_NOT_FOUND: _by_ending(_failed("entry order failed: {entry_error}"), _timed_out(
        "{deadline} fired before the entry order filled; the exchange has no such order")),
    Step.STOPPED_OUT: _by_ending(_failed("the stop-loss triggered while the position was being opened")),
    Step.CLOSED: _by_ending(_failed("stop-loss could not be placed ({stop_error}); "
                                    "position closed by emergency close")),
}


def verdict(step: Step, ending: Ending) -> Verdict:
    """The outcome kind, reason template and trailing status for a run ended this way."""
    row = OUTCOMES[step]
    return row if isinstance(row, tuple) else row[ending]


# What a resolution decided, by the step the resolver left the run at. The wave had reported
# the signal `timed_out` ("being resolved"); this replaces it.
RESOLVED: Mapping[Step, Verdict] = {
    Step.PROTECTED: (Outcome.OPENED, "the entry filled after its answer was lost ({unknown}); "
                                     "protected when the fill was found", TrailingStatus.PENDING),
    Step.ENTRY_NOT_FOUND: _failed("the entry was never executed: its answer was lost ({unknown}) and the "
                                  "exchange had no such order after {window}"),
    Step.ENTRY_FAILED: _failed("entry order failed: {entry_error}"),
    Step.STOPPED_OUT: _failed("the entry filled after its answer was lost; its stop-loss triggered at once"),
    Step.CLOSED: _failed("the entry filled after its answer was lost; no stop-loss could be placed "
                         "({stop_error}), closed by emergency close"),
    Step.FILLED: _UNPROTECTED,
    Step.UNPROTECTED: _UNPROTECTED,
    Step.ENTRY_SENT: _timed_out("entry order outcome still unknown after {window} ({unknown}); "
                                "the exchange could not be asked: left for reconciliation"),
}


_NEVER_EXECUTED_IN_TIME = _timed_out("{deadline} fired before the entry order was answered; the exchange never "
                                     "executed it (looked up for {window})")


def resolution(run: OpenRun, ending: Ending, window: str,
               first_error: str | None) -> tuple[Outcome, str | None, TrailingStatus]:
    """The outcome, reason and trailing status of a run the resolver has finished with.

    `ending` is how the signal's child ended: an entry never executed is `timed_out` if a
    deadline cut it short, `failed` otherwise (as it would have been, answered in time).
    """
    kind, template, trailing = (_NEVER_EXECUTED_IN_TIME if run.step is Step.ENTRY_NOT_FOUND and ending.timed_out
                                else RESOLVED[run.step])
    f = run.facts
    why = f.close_error or f.stop_error or "cleanup deadline expired"
    reason = None if template is None else template.format(
        unknown=first_error or f.entry_error or "no answer", window=window, stop_error=f.stop_error,
        entry_error=f.entry_error, why=why, deadline=ending.deadline)
    return kind, reason, trailing

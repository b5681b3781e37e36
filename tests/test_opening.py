"""The open's state machine: legal moves only, and one true outcome for every way a run can end."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.model import OrderStatus, Outcome, Position, PositionStatus, Side, Signal, TrailingStatus
from engine.opening import (
    EXPOSED_STEPS,
    FILLED_STEPS,
    OUTCOMES,
    TRANSITIONS,
    Ending,
    IllegalStep,
    OpenRun,
    Step,
)

SIGNAL = Signal("s1", "FORMUSDT", Side.LONG, 9.0, 0)
BASE = Position(id=1, signal_id="s1", wave_id="w1", symbol="FORMUSDT", side=Side.LONG,
                status=PositionStatus.OPENING, quantity=245.0, entry_client_id="tb-1-entry")
FILL = {"filled_quantity": 245.0, "fill_price": 0.8132}


def run_to(*steps: Step, **facts: object) -> OpenRun:
    run = OpenRun(SIGNAL, 1, 245.0)
    for step in steps:
        run.advance(step, **(FILL if step is Step.FILLED else {}))
    run.note(**facts)
    return run


FILLED = (Step.INTENT_STORED, Step.ENTRY_SENT, Step.FILLED)


def test_protected_is_opened_even_after_a_deadline() -> None:
    run = run_to(*FILLED, Step.PROTECTED, stop_status=OrderStatus.NEW, stop_price=0.7969)
    for ending in Ending:
        out = run.outcome(ending)
        assert out.outcome is Outcome.OPENED and out.position_id == 1
        assert out.trailing is TrailingStatus.PENDING
    assert run.position_status() is PositionStatus.OPEN


def test_intent_failure_means_no_order() -> None:
    run = OpenRun(SIGNAL, 1, 245.0)
    run.advance(Step.INTENT_FAILED, intent_error="disk full")
    out = run.outcome(Ending.COMPLETED)
    assert out.outcome is Outcome.FAILED and "no order sent: disk full" in out.reason and out.position_id is None


def test_deadline_before_intent() -> None:
    out = OpenRun(SIGNAL, 1, 245.0).outcome(Ending.SIGNAL_DEADLINE)
    assert out.outcome is Outcome.TIMED_OUT and out.reason == (
        "signal deadline fired before the intent was stored; no order sent")


def test_rejected_entry_is_failed_and_closed() -> None:
    run = run_to(Step.INTENT_STORED, Step.ENTRY_SENT)
    run.advance(Step.ENTRY_FAILED, entry_error="rejected: margin")
    out = run.outcome(Ending.COMPLETED)
    assert out.outcome is Outcome.FAILED and out.reason == "entry order failed: rejected: margin"
    assert run.position_status() is PositionStatus.CLOSED


def test_unresolved_entry_stays_opening_for_reconciliation() -> None:
    run = run_to(Step.INTENT_STORED, Step.ENTRY_SENT, entry_error="502")
    assert run.position_status() is PositionStatus.OPENING
    assert run.outcome(Ending.WAVE_DEADLINE).outcome is Outcome.TIMED_OUT
    assert run.outcome(Ending.COMPLETED).outcome is Outcome.TIMED_OUT  # provisional: the resolver decides
    assert run.outcome(Ending.COMPLETED).reason == "entry order outcome unknown (502); being resolved"


def test_emergency_close_is_failed_with_the_stop_error() -> None:
    run = run_to(*FILLED, stop_error="3 attempts failed, last: 502")
    run.advance(Step.CLOSED, close_price=0.81)
    out = run.outcome(Ending.COMPLETED)
    assert out.outcome is Outcome.FAILED and "502" in out.reason and "emergency close" in out.reason
    assert run.position_status() is PositionStatus.CLOSED
    row = run.position_after(BASE, now=5.0)
    assert (row.exit_reason.value, row.exit_price, row.closed_at) == ("emergency_close", 0.81, 5.0)


def test_exposure_is_never_hidden_not_even_by_a_crash() -> None:
    run = run_to(*FILLED, stop_error="rejected")
    run.advance(Step.UNPROTECTED, close_error="exchange down")
    assert run.exposed
    for ending in Ending:
        out = run.outcome(ending, RuntimeError("bug"))
        assert out.outcome is Outcome.FAILED and out.reason.startswith("UNPROTECTED")
        assert "exchange down" in out.reason


def test_a_crash_before_any_fill_is_named() -> None:
    out = run_to(Step.INTENT_STORED).outcome(Ending.CRASHED, KeyError("x"))
    assert out.outcome is Outcome.FAILED and out.reason == "internal error: KeyError('x')"


def test_an_illegal_move_raises_and_changes_nothing() -> None:
    run = run_to(Step.INTENT_STORED)
    with pytest.raises(IllegalStep, match="intent_stored -> filled"):
        run.advance(Step.FILLED)
    assert run.step is Step.INTENT_STORED
    done = run_to(*FILLED, Step.PROTECTED)
    for step in Step:
        with pytest.raises(IllegalStep):
            done.advance(step)


def test_every_step_has_an_outcome_for_every_ending() -> None:
    assert set(TRANSITIONS) == set(Step) == set(OUTCOMES)


@st.composite
def paths(draw: st.DrawFn) -> list[Step]:
    """A walk through the table from `new`, stopping anywhere (a deadline can end it at any step)."""
    path = [Step.NEW]
    while TRANSITIONS[path[-1]] and draw(st.booleans()):
        path.append(draw(st.sampled_from(sorted(TRANSITIONS[path[-1]]))))
    return path


@given(paths(), st.sampled_from(list(Ending)), st.booleans())
def test_every_path_yields_one_outcome_consistent_with_the_exchange(path: list[Step], ending: Ending,
                                                                      errors: bool) -> None:
    run = OpenRun(SIGNAL, 1, 245.0)
    for step in path[1:]:
        facts: dict[str, object] = dict(FILL) if step is Step.FILLED else {}
        if step is Step.PROTECTED:
            facts.update(stop_client_id="tb-1-stop1", stop_price=0.7969, stop_status=OrderStatus.NEW)
        if step is Step.CLOSED:
            facts.update(close_price=0.81)
        if errors:
            facts.update({Step.INTENT_FAILED: {"intent_error": "disk full"},
                          Step.ENTRY_FAILED: {"entry_error": "rejected: margin"},
                          Step.UNPROTECTED: {"close_error": "exchange down"}}.get(step, {}))
        run.advance(step, **facts)
    out = run.outcome(ending, RuntimeError("bug") if ending is Ending.CRASHED else None)
    row = run.position_after(BASE, now=1.0)

    # What the exchange holds after this path: a position (with a live stop or not), or nothing.
    holds = run.step in FILLED_STEPS and run.step not in (Step.STOPPED_OUT, Step.CLOSED)
    stop_live = run.step is Step.PROTECTED
    assert (out.outcome is Outcome.OPENED) == (holds and stop_live)
    if holds and not stop_live:  # money at risk: said loudly, kept open for the sweep
        assert out.outcome is Outcome.FAILED and out.reason.startswith("UNPROTECTED")
        assert row.status is PositionStatus.OPEN and run.step in EXPOSED_STEPS
    if not holds:
        assert out.outcome is not Outcome.OPENED
        expected = PositionStatus.OPENING if run.step is Step.ENTRY_SENT else PositionStatus.CLOSED
        assert row.status is expected  # unknown entries are left for reconciliation, never guessed
    assert (out.position_id is not None) == run.intent_stored
    assert (out.trailing is TrailingStatus.PENDING) == stop_live
    assert (out.reason is None) == (out.outcome is Outcome.OPENED)
    assert "{" not in (out.reason or "")  # every template was filled
    if ending is Ending.CRASHED and not holds:
        assert out.reason == "internal error: RuntimeError('bug')"

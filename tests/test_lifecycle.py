"""decide_outcome: whatever step the open stopped at, the outcome tells the truth."""

from engine.lifecycle import OpenProgress, decide_outcome
from engine.model import OrderStatus, Outcome, PositionStatus, Side, Signal, TrailingStatus

SIGNAL = Signal("s1", "FORMUSDT", Side.LONG, 9.0, 0)


def progress(**kw):
    return OpenProgress(signal=SIGNAL, position_id=1, quantity=245.0, **kw)


def filled(**kw):
    return progress(intent_stored=True, entry_sent=True, entry_resolved=True, filled_quantity=245.0,
                    fill_price=0.8132, **kw)


def test_protected_is_opened_even_after_a_deadline():
    p = filled(stop_status=OrderStatus.NEW, stop_price=0.7969)
    for timed_out in (False, True):
        out = decide_outcome(p, timed_out=timed_out)
        assert out.outcome is Outcome.OPENED and out.position_id == 1
        assert out.trailing is TrailingStatus.PENDING
    assert p.position_status() is PositionStatus.OPEN


def test_intent_failure_means_no_order():
    out = decide_outcome(progress(intent_error="disk full"), timed_out=False)
    assert out.outcome is Outcome.FAILED and "no order sent" in out.reason and out.position_id is None


def test_deadline_before_intent():
    out = decide_outcome(progress(), timed_out=True)
    assert out.outcome is Outcome.TIMED_OUT and "before the intent was stored" in out.reason


def test_rejected_entry_is_failed_and_closed():
    p = progress(intent_stored=True, entry_sent=True, entry_resolved=True, entry_error="rejected: margin")
    out = decide_outcome(p, timed_out=False)
    assert out.outcome is Outcome.FAILED and "rejected: margin" in out.reason
    assert p.position_status() is PositionStatus.CLOSED


def test_unresolved_entry_stays_opening_for_reconciliation():
    p = progress(intent_stored=True, entry_sent=True, entry_error="502")
    assert p.position_status() is PositionStatus.OPENING
    assert decide_outcome(p, timed_out=True).outcome is Outcome.TIMED_OUT
    assert "left for reconciliation" in decide_outcome(p, timed_out=False).reason


def test_emergency_close_is_failed_with_the_stop_error():
    p = filled(stop_error="3 attempts failed, last: 502", closed=True, close_price=0.81)
    out = decide_outcome(p, timed_out=False)
    assert out.outcome is Outcome.FAILED and "502" in out.reason and "emergency close" in out.reason
    assert p.position_status() is PositionStatus.CLOSED


def test_exposure_is_never_hidden():
    p = filled(stop_error="rejected", close_error="exchange down")
    assert p.exposed
    out = decide_outcome(p, timed_out=True)
    assert out.outcome is Outcome.FAILED and out.reason.startswith("UNPROTECTED")

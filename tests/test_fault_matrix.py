"""Every effect at every fault point: the outcome and what is on the exchange."""

import pytest

from tests.conftest import assert_invariants, run, scenario, wave_signals

ONE = {"max_positions_per_wave": 1, "max_concurrent_signals": 1}
EFFECTS = ["error", "reject", "hang", "delay", "lost_response"]


def one_signal_run(*faults, engine=None):
    data = scenario(engine={**ONE, **(engine or {})}, faults=list(faults),
                    waves=[{"at": 0.0, "signals": wave_signals(1)}])
    report = run(data)
    assert_invariants(report)
    (signal,) = report["waves"][0]["signals"]
    return report, signal


def fault(point, effect, times=1, **extra):
    f = {"point": point, "effect": effect, "match": {"symbol": "FORMUSDT"}, "seconds": 5.0, **extra}
    if times is not None:
        f["times"] = times
    return f


EXPECTED = {
    # point: {effect: outcome}
    "exchange.entry_order": {"error": "failed", "reject": "failed", "hang": "failed",
                             "delay": "opened", "lost_response": "opened"},
    "exchange.stop_order": dict.fromkeys(["error", "hang", "delay", "lost_response"], "opened")
    | {"reject": "failed"},
    "exchange.cancel_order": dict.fromkeys(EFFECTS, "opened"),
    "exchange.query": dict.fromkeys(EFFECTS, "opened"),
    "storage.write": {"error": "failed", "reject": "failed", "hang": "failed", "delay": "opened",
                      "lost_response": "failed"},
    "storage.read": dict.fromkeys(EFFECTS, "opened"),
    "storage.trailing": dict.fromkeys(EFFECTS, "opened"),
}


@pytest.mark.parametrize(("point", "effect"), [(p, e) for p in EXPECTED for e in EFFECTS])
def test_effect_at_point(point, effect):
    # A delayed entry is answered within its own deadline (`entry_timeout`, 5 s): 2 s.
    late = {"seconds": 2.0} if (point, effect) == ("exchange.entry_order", "delay") else {}
    report, signal = one_signal_run(fault(point, effect, **late))
    assert signal["outcome"] == EXPECTED[point][effect], signal
    on_exchange = report["exchange"]["positions"]
    if signal["outcome"] == "opened":
        assert [p["symbol"] for p in on_exchange] == ["FORMUSDT"]
        stops = [o for o in report["exchange"]["open_orders"] if o["symbol"] == "FORMUSDT"]
        assert len(stops) == 1, "exactly one stop, never two"
        assert signal["reason"] is None
    else:
        assert on_exchange == []
        assert signal["reason"]
    if point == "storage.write" and effect in ("error", "reject", "hang", "lost_response"):
        assert "no order sent" in signal["reason"]
        assert report["positions"] == []
    if point == "storage.trailing":
        assert signal["trailing"] == "active", "the writer retries until the save lands"


@pytest.mark.parametrize("effect", EFFECTS)
def test_close_faults_after_a_rejected_stop_still_close(effect):
    report, signal = one_signal_run(fault("exchange.stop_order", "reject", times=None),
                                    fault("exchange.close_order", effect))
    assert signal["outcome"] == "failed"
    assert "emergency close" in signal["reason"]
    assert report["exchange"]["positions"] == []
    (position,) = report["positions"]
    assert (position["status"], position["exit_reason"]) == ("closed", "emergency_close")


def test_stop_errors_every_time_means_emergency_close_after_all_retries():
    _report, signal = one_signal_run(fault("exchange.stop_order", "error", times=None, message="502 Bad Gateway"))
    assert signal["outcome"] == "failed"
    assert "3 attempts failed, last: 502 Bad Gateway" in signal["reason"]


def test_stop_and_close_both_impossible_is_reported_unprotected():
    data = scenario(engine=ONE, waves=[{"at": 0.0, "signals": wave_signals(1)}],
                    faults=[fault("exchange.stop_order", "reject", times=None),
                            fault("exchange.close_order", "error", times=None)])
    report = run(data)
    (signal,) = report["waves"][0]["signals"]
    assert signal["outcome"] == "failed" and signal["reason"].startswith("UNPROTECTED")
    assert report["invariants"]["unprotected_positions"] == 1


def test_entry_hang_every_time_fails_cleanly_within_the_signal_deadline():
    report, signal = one_signal_run(fault("exchange.entry_order", "hang", times=None))
    assert signal["outcome"] == "failed"
    assert "did not answer within 5s" in signal["reason"]  # the entry's own deadline (entry_timeout)
    assert report["waves"][0]["duration"] < 30.0


def test_lost_entry_and_lost_stop_never_duplicate():
    report, signal = one_signal_run(fault("exchange.entry_order", "lost_response"),
                                    fault("exchange.stop_order", "lost_response"))
    assert signal["outcome"] == "opened"
    assert report["invariants"]["duplicate_entries"] == 0
    assert len(report["exchange"]["open_orders"]) == 1


def test_failure_is_replaced_from_the_buffer():
    report = run(scenario(faults=[fault("exchange.entry_order", "reject")]))
    counts = report["waves"][0]["counts"]
    assert counts == {"candidates": 6, "rejected": 0, "skipped": 0, "attempted": 6, "opened": 5,
                      "failed": 1, "timed_out": 0}
    assert_invariants(report)


def test_call_deadline_during_a_delayed_entry_fails_after_looking_it_up():
    _report, signal = one_signal_run(fault("exchange.entry_order", "delay", seconds=25.0),
                                    engine={"signal_timeout": 20.0, "call_timeout": 15.0, "entry_timeout": 15.0})
    assert signal["outcome"] == "failed"
    assert "did not answer within 15s" in signal["reason"]


# Deadlines nest, so the signal deadline can only catch the entry call when something before it
# was slow: a 1s intent write puts the 11.5s entry call deadline after the 12s signal deadline.
SIGNAL_FIRST = {"signal_timeout": 12.0, "call_timeout": 11.5, "entry_timeout": 11.5}
SLOW_INTENT = fault("storage.write", "delay", seconds=1.0)


def test_signal_deadline_before_the_entry_lands_is_timed_out():
    report, signal = one_signal_run(SLOW_INTENT, fault("exchange.entry_order", "delay", seconds=25.0),
                                    engine=SIGNAL_FIRST)
    assert signal["outcome"] == "timed_out"
    assert "signal deadline" in signal["reason"]
    assert report["exchange"]["positions"] == []


def test_signal_deadline_after_the_entry_landed_protects_it():
    report, signal = one_signal_run(SLOW_INTENT, fault("exchange.entry_order", "lost_response"),
                                    engine=SIGNAL_FIRST)
    assert signal["outcome"] == "opened"  # protected by the shielded cleanup: opened beats timed out
    assert len(report["exchange"]["open_orders"]) == 1


def test_wave_deadline_skips_the_unstarted_and_times_out_the_running():
    # The hung entry is looked up for 1 s after its deadline (unknown_outcome_window), in the
    # background: the wave's deadline does not wait for it.
    data = scenario(engine={"max_concurrent_signals": 1, "wave_timeout": 12.0, "signal_timeout": 12.0,
                            "call_timeout": 10.0, "entry_timeout": 10.0, "unknown_outcome_window": 1.0},
                    faults=[{"point": "exchange.entry_order", "effect": "hang"}])
    report = run(data)
    wave = report["waves"][0]
    first, *rest = wave["signals"]
    assert first["outcome"] == "failed"  # its call deadline (10s) fired inside the wave's 12s
    assert rest[0]["outcome"] == "timed_out"
    assert all(s["outcome"] == "skipped" and "wave deadline" in s["reason"] for s in rest[1:])
    assert_invariants(report)


def test_an_entry_answered_after_its_deadline_is_resolved_not_guessed():
    # The simulated exchange applies a delayed request only after its delay, so an entry cut off
    # by its deadline (5 s) never executed there: the resolver finds it so once its window ends.
    report, signal = one_signal_run(fault("exchange.entry_order", "delay", seconds=8.0),
                                    engine={"unknown_outcome_window": 20.0})
    assert signal["outcome"] == "failed" and signal["resolved_at"] is not None
    assert signal["reason"].startswith("the entry was never executed: its answer was lost (exchange.entry_order "
                                       "did not answer within 5s)")
    assert report["exchange"]["positions"] == []

"""The pure trailing stop: ratchet, symmetry, trigger, rounding."""

from hypothesis import given
from hypothesis import strategies as st

from engine.model import Side
from engine.trailing import TrailingParams, TrailingStop, TrailState

PARAMS = TrailingParams(activation_percent=1.5, callback_percent=0.5, min_step_percent=0.1, min_interval=1.0)


def long_at_100():
    return TrailingStop.start(Side.LONG, 100.0, 98.0, 0.01, PARAMS)


def short_at_100():
    return TrailingStop.start(Side.SHORT, 100.0, 102.0, 0.01, PARAMS)


def test_long_path_activation_ratchet_trigger():
    ts = long_at_100().observe(101.0)
    assert ts.state is TrailState.WAITING and ts.wanted_stop == 98.0 and ts.move_due(0.0, PARAMS) is None
    ts = ts.observe(101.5)
    assert ts.state is TrailState.ACTIVE and ts.wanted_stop == 100.99  # floor(101.5 * 0.995)
    assert ts.move_due(0.0, PARAMS) == 100.99
    ts = ts.moved(100.99, 0.0).observe(103.0)
    assert ts.wanted_stop == 102.48
    assert ts.move_due(0.5, PARAMS) is None  # min_interval holds it back...
    assert ts.next_move_at(PARAMS) == 1.0
    assert ts.move_due(1.0, PARAMS) == 102.48  # ...until it has passed
    ts = ts.moved(102.48, 1.0).observe(102.0)
    assert ts.wanted_stop == 102.48 and ts.best_price == 103.0  # never loosens
    ts = ts.observe(102.48)
    assert ts.state is TrailState.TRIGGERED and ts.activated


def test_short_path_mirrors_the_long():
    ts = short_at_100().observe(98.5)
    assert ts.state is TrailState.ACTIVE and ts.wanted_stop == 99.0  # ceil(98.5 * 1.005 = 98.9925)
    assert ts.move_due(0.0, PARAMS) == ts.wanted_stop


def test_before_activation_a_cross_of_the_initial_stop_triggers_as_stop_loss():
    ts = long_at_100().observe(97.99)
    assert ts.state is TrailState.TRIGGERED and not ts.activated


def test_small_improvements_are_not_worth_an_exchange_call():
    ts = long_at_100().observe(101.5).moved(100.99, 0.0).observe(101.55)
    assert ts.wanted_stop == 101.04 and ts.improvement_percent() < 0.1
    assert ts.move_due(10.0, PARAMS) is None and ts.next_move_at(PARAMS) is None


prices = st.lists(st.floats(50.0, 150.0), min_size=1, max_size=60)


def run(ts, path, move=True):
    stops = [ts.wanted_stop]
    t = 0.0
    for price in path:
        ts = ts.observe(price)
        if ts.state is TrailState.TRIGGERED:
            break
        stops.append(ts.wanted_stop)
        t += 1.0
        due = ts.move_due(t, PARAMS)
        if move and due is not None:
            ts = ts.moved(due, t)
    return ts, stops


@given(prices)
def test_long_stop_is_monotonic_and_below_best(path):
    ts, stops = run(long_at_100(), path)
    assert stops == sorted(stops)
    if ts.state is TrailState.ACTIVE:
        assert ts.wanted_stop <= ts.best_price * (1 - PARAMS.callback_percent / 100) + 1e-9 or ts.wanted_stop == 98.0


@given(prices)
def test_long_and_short_are_symmetric(path):
    """Mirrored paths (200 - p) activate alike, and each side keeps its stop the callback
    behind its best price (within one tick, rounded away from the price)."""
    long_ts, short_ts = long_at_100(), short_at_100()
    for price in path:
        long_ts, short_ts = long_ts.observe(price), short_ts.observe(200.0 - price)
        if TrailState.TRIGGERED in (long_ts.state, short_ts.state):
            break
        assert long_ts.state is short_ts.state
        if long_ts.state is TrailState.ACTIVE:
            long_gap = (long_ts.best_price - long_ts.wanted_stop) / long_ts.best_price * 100
            short_gap = (short_ts.wanted_stop - short_ts.best_price) / short_ts.best_price * 100
            for gap, best in ((long_gap, long_ts.best_price), (short_gap, short_ts.best_price)):
                assert 0.5 - 1e-9 <= gap <= 0.5 + 0.01 / best * 100 + 1e-9


@given(prices)
def test_trigger_exactly_when_the_price_crosses_the_live_stop(path):
    ts = long_at_100()
    for price in path:
        before = ts
        ts = ts.observe(price)
        assert (ts.state is TrailState.TRIGGERED) == (before.state is TrailState.TRIGGERED or price <= before.live_stop)
        if ts.state is not TrailState.TRIGGERED and ts.move_due(0.0, TrailingParams(1.5, 0.5)) is not None:
            ts = ts.moved(ts.wanted_stop, 0.0)


@given(st.floats(100.0, 200.0), st.sampled_from([0.01, 0.05, 0.1, 0.5, 1.0]), st.floats(0.1, 5.0))
def test_rounding_never_brings_the_stop_closer_than_the_callback(best, tick, callback):
    params = TrailingParams(activation_percent=0.0, callback_percent=callback)
    long_ts = TrailingStop.start(Side.LONG, 100.0, 90.0, tick, params).observe(best)
    short_ts = TrailingStop.start(Side.SHORT, 300.0 - best, 310.0, tick, params).observe(300.0 - best)
    assert long_ts.wanted_stop <= best * (1 - callback / 100) + 1e-9
    assert short_ts.wanted_stop >= (300.0 - best) * (1 + callback / 100) - 1e-9


@given(st.floats(0.0, 1e6), st.floats(0.0, 100.0))
def test_a_move_is_due_exactly_when_next_move_at_says(last, interval):
    params = TrailingParams(1.5, 0.5, 0.0, interval)
    ts = long_at_100().observe(110.0).moved(100.0, last).observe(110.0)
    due_at = ts.next_move_at(params)
    assert due_at is not None and ts.move_due(due_at, params) is not None

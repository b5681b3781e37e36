import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.model import Outcome, Side, Signal, SignalOutcome
from engine.wave_book import WaveBook


def signals(n):
    return [Signal(str(i), f"S{i}", Side.LONG, float(n - i), i) for i in range(n)]


def end(signal, outcome):
    return SignalOutcome(signal.id, signal.rank, signal.symbol, "long", outcome)


def test_buffer_replaces_a_failure_and_the_rest_is_skipped():
    book = WaveBook(signals(6), target=5, concurrency=5)
    started = [book.next_to_start() for _ in range(6)]
    assert started[-1] is None  # never more in flight than still needed
    book.finish(end(started[0], Outcome.FAILED))
    replacement = book.next_to_start()
    assert replacement.rank == 5
    for s in [*started[1:5], replacement]:
        book.finish(end(s, Outcome.OPENED))
    assert book.idle and book.target_reached
    book.skip_rest("target reached")
    assert book.counts.opened == 5 and book.counts.failed == 1 and book.counts.consistent


def test_second_outcome_is_a_bug():
    book = WaveBook(signals(1), target=1, concurrency=1)
    s = book.next_to_start()
    book.finish(end(s, Outcome.OPENED))
    with pytest.raises(RuntimeError):
        book.finish(end(s, Outcome.FAILED))


@given(n=st.integers(0, 30), target=st.integers(1, 10), concurrency=st.integers(1, 10),
       results=st.lists(st.sampled_from([Outcome.OPENED, Outcome.FAILED, Outcome.TIMED_OUT]), max_size=60))
def test_filling_rules_hold_for_any_sequence(n, target, concurrency, results):
    book = WaveBook(signals(n), target=target, concurrency=concurrency)
    results = iter(results)
    while True:
        while book.next_to_start() is not None:
            pass
        assert len(book.in_flight) <= concurrency
        assert book.opened + len(book.in_flight) <= target
        if book.idle:
            break
        first = min(book.in_flight.values(), key=lambda x: x.rank)
        book.finish(end(first, next(results, Outcome.OPENED)))
    book.skip_rest("done")
    counts = book.counts
    assert counts.candidates == n and counts.consistent
    assert counts.opened <= target
    # Skipped only when the target was reached; otherwise every candidate was tried.
    assert counts.skipped == 0 or counts.opened == target

"""Pure bookkeeping of the live sources: wave assembly, delivery memory, frames, reconnect backoff."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from adapters.signals.assembly import Delivered, WaveAssembler
from adapters.signals.backoff import Backoff
from adapters.signals.frames import Control, Malformed, SignalFrame, WaveFrame, parse_frame


def test_single_signals_are_gathered_per_key_until_the_window_after_the_first_closes():
    assembler = WaveAssembler(wave_window=2.0)
    assembler.add("A", {"id": "a1"}, now=10.0)
    assembler.add("B", {"id": "b1"}, now=10.5)
    assembler.add("A", {"id": "a2"}, now=11.9)
    assert assembler.next_deadline() == 12.0
    assert assembler.due(11.99) == []
    assert assembler.due(12.0) == [("A", [{"id": "a1"}, {"id": "a2"}], 10.0)]
    assembler.add("A", {"id": "a3"}, now=12.1)  # after its window: the start of a new wave under A
    assert assembler.due(12.6) == [("B", [{"id": "b1"}], 10.5)]
    assert assembler.flush() == [("A", [{"id": "a3"}], 12.1)]
    assert assembler.next_deadline() is None


@given(st.lists(st.tuples(st.sampled_from("KLM"), st.floats(0, 100)), max_size=40))
def test_every_signal_is_delivered_exactly_once_and_never_before_its_window(arrivals):
    assembler = WaveAssembler(wave_window=1.5)
    delivered: list[str] = []
    for n, (key, at) in enumerate(sorted(arrivals, key=lambda a: a[1])):
        for _, signals, first_at in assembler.due(at):
            assert first_at + 1.5 <= at
            delivered += [s["id"] for s in signals]
        assembler.add(key, {"id": str(n)}, now=at)
    delivered += [s["id"] for _, signals, _ in assembler.flush() for s in signals]
    assert sorted(delivered, key=int) == [str(n) for n in range(len(arrivals))]


def test_delivered_drops_repeats_keeps_signals_without_an_id_and_forgets_the_oldest():
    memory = Delivered(capacity=3)
    fresh, repeats = memory.split([{"id": "1"}, {"id": 2}, {"symbol": "no id"}])
    assert (fresh, repeats) == ([{"id": "1"}, {"id": 2}, {"symbol": "no id"}], 0)
    fresh, repeats = memory.split([{"id": "2"}, {"id": "3"}, {"id": "1"}])
    assert (fresh, repeats) == ([{"id": "3"}], 2)
    memory.remember(["4"])
    assert "1" not in memory and "4" in memory and len(memory) == 3


def test_frames_name_what_is_wrong_and_never_raise():
    assert parse_frame('{"type": "wave", "wave": "k", "signals": [1]}') == WaveFrame("k", [1])
    assert parse_frame('[{"id": 1}]') == WaveFrame(None, [{"id": 1}])
    assert parse_frame('{"type": "signal", "wave": 7, "signal": {"id": 1}}') == SignalFrame("7", {"id": 1})
    assert parse_frame('{"type": "heartbeat"}') == Control("heartbeat")
    assert isinstance(parse_frame(b"\xff\xfe"), Malformed)
    bad = parse_frame('{"type": "wave", "wave": true, "signals": []}')
    assert isinstance(bad, Malformed) and "wave key True" in bad.reason


@given(st.binary(max_size=64) | st.text(max_size=64))
def test_any_bytes_parse_to_some_frame(data):
    assert isinstance(parse_frame(data), WaveFrame | SignalFrame | Control | Malformed)


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets():
    backoff = Backoff(0.5, 8.0, random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    caps = [min(8.0, 0.5 * 2**n) for n in range(10)]
    assert all(0.25 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert len(set(delays)) == len(delays)  # jittered: clients restarting together spread out
    assert max(delays) > 4.0
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_hostile_frames_are_malformed_never_an_exception():
    deep = parse_frame("[" * 100_000 + "]" * 100_000)
    assert isinstance(deep, Malformed) and "nested too deeply" in deep.reason
    for key in ['"' + "k" * 1000 + '"', '"\\u001b[2J"', str(10 ** 300), '""']:
        bad = parse_frame('{"type": "wave", "wave": ' + key + ', "signals": []}')
        assert isinstance(bad, Malformed) and "wave key" in bad.reason and len(bad.reason) < 300
        assert "\x1b" not in bad.reason

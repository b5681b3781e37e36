"""The append-only timeline: every step of every signal, with its time — the record the
incident had to rebuild from log files."""

import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.faults import FaultPlan
from adapters.sim.faulty_storage import FaultyStorage
from adapters.sim.scenario import ExchangeSpec, FaultSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.nursery.clocks import VirtualWallClock
from tests.conftest import PRICES, wave_signals
from trio_bot import Engine

SPEC = ExchangeSpec(latency=0.05, markets=tuple(MarketSpec(s, p) for s, p in PRICES.items()))


async def test_each_step_of_a_signal_is_an_event_in_order(autojump_clock):
    faults = FaultPlan([FaultSpec("exchange.stop_order", "error", {"symbol": "FORMUSDT"}, "502 Bad Gateway", 1)])
    inner = await SQLiteStore.open(":memory:")
    async with Engine.open(EngineConfig(), SimExchange.from_spec(SPEC, faults=faults), FaultyStorage(inner, faults),
                           clock=VirtualWallClock()) as engine:
        await engine.process_wave(wave_signals(6))
    events = await inner.events(signal_id="4974690")
    kinds = [e.kind for e in events]
    assert kinds == ["signal_started", "intent_stored", "entry_sent", "entry_filled", "stop_attempt_failed",
                     "stop_placed", "signal_outcome"]
    assert "502 Bad Gateway" in events[4].detail
    times = [e.at for e in events]
    assert times == sorted(times) and times[-1] - times[0] > 0.5  # the retry's backoff shows
    position_events = [e.kind for e in await inner.events(position_id=1)]
    assert position_events[-1] == "trailing_saved"
    wave_events = [e.kind for e in await inner.events() if e.wave_id == "w1" and e.signal_id is None]
    assert wave_events == ["wave_started", "wave_finished"]
    await inner.aclose()


async def test_a_lost_write_retried_does_not_duplicate_events(autojump_clock):
    faults = FaultPlan([FaultSpec("storage.write", "lost_response", {"symbol": "FORMUSDT"}, times=2)])
    inner = await SQLiteStore.open(":memory:")
    async with Engine.open(EngineConfig(), SimExchange.from_spec(SPEC), FaultyStorage(inner, faults)) as engine:
        await engine.process_wave(wave_signals(1))
        await trio.sleep(30)  # virtual: one call deadline and a backoff
        assert engine.ctx.writer.failures >= 1  # a batch landed, its answer was lost, it was retried
    events = await inner.events()
    assert len({e.uid for e in events}) == len(events)
    assert [e.kind for e in events].count("signal_outcome") == 1
    await inner.aclose()


async def test_every_signal_has_its_outcome_event_skipped_ones_too(autojump_clock):
    inner = await SQLiteStore.open(":memory:")
    async with Engine.open(EngineConfig(max_positions_per_wave=2), SimExchange.from_spec(SPEC), inner,
                           clock=VirtualWallClock()) as engine:
        record = await engine.process_wave(wave_signals(6))
        await engine.flush()
        skipped = [o for o in record.outcomes if o.outcome.value == "skipped"]
        assert skipped, "the wave's target must leave candidates skipped for this test to mean anything"
        events = [e for e in await inner.events() if e.kind == "signal_outcome"]
    assert sorted(e.signal_id for e in events) == sorted(o.signal_id for o in record.outcomes)
    for outcome in skipped:
        (event,) = [e for e in events if e.signal_id == outcome.signal_id]
        assert event.detail == f"skipped: {outcome.reason}"
    await inner.aclose()

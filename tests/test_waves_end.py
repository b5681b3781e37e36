"""Every wave ends with one outcome per signal, even when the engine stops in its middle:
a crash is completed at the next start-up, a shutdown stores the final record before exit."""

import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.faults import FaultPlan
from adapters.sim.scenario import FaultSpec
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.ids import entry_id
from engine.model import (
    OrderKind,
    OrderRequest,
    OrderSide,
    Outcome,
    SignalOutcome,
    WaveRecord,
)
from engine.wave_recovery import NOT_ATTEMPTED
from tests.conftest import wave_signals
from tests.test_restart import SPEC, intent
from trio_bot import Engine


async def test_a_wave_a_crash_left_without_an_end_is_completed_at_start_up(autojump_clock, tmp_path):
    db = str(tmp_path / "bot.db")
    exchange = SimExchange.from_spec(SPEC)
    store = await SQLiteStore.open(db)
    # What a kill -9 mid-wave leaves: the wave and its claims, provisional outcomes, one open
    # in flight (its entry reached the exchange), and one id whose provisional outcome never landed.
    await store.claim_signals(WaveRecord("w1", 0.0, 1000.0), {"s1": 0, "s2": 1, "s3": 2})
    await store.write([WaveRecord("w1", 0.0, 1000.0, None, (
        SignalOutcome("s1", 0, "FORMUSDT", "long", Outcome.SKIPPED, NOT_ATTEMPTED),
        SignalOutcome("s2", 1, "NEOUSDT", "long", Outcome.SKIPPED, NOT_ATTEMPTED)))])
    await store.record_intent(*intent(1, "FORMUSDT", 245.0))
    await exchange.place_order(OrderRequest("FORMUSDT", OrderSide.BUY, OrderKind.ENTRY, 245.0, entry_id(1)))
    await store.aclose()

    store = await SQLiteStore.open(db)
    async with Engine.open(EngineConfig(), exchange, store) as engine:
        lines = engine.summary.lines()
        assert exchange.unprotected_positions() == []
    (wave,) = await store.waves()
    assert wave.interrupted and wave.duration is not None and wave.counts.consistent
    got = {o.signal_id: (o.outcome.value, o.reason) for o in wave.outcomes}
    assert got == {
        "s1": ("opened", "the engine stopped while opening it; reconciliation found it filled and protected"),
        "s2": ("skipped", NOT_ATTEMPTED),
        "s3": ("skipped", NOT_ATTEMPTED)}
    assert lines == ["1 unfinished opens reconciled: 1 opened and protected, 0 never executed, "
                     "0 closed or still unknown",
                     "1 interrupted waves completed (one outcome per signal)",
                     "start-up sweep: the exchange matches the store, every position held has its stop"]
    assert {k: h.outcome for k, h in (await store.handled_signals(["s1", "s2"])).items()} == {
        "s1": "opened", "s2": "skipped"}
    await store.aclose()


async def test_stopping_the_engine_mid_wave_stores_the_waves_final_record(autojump_clock):
    faults = FaultPlan([FaultSpec("exchange.entry_order", "delay", {"symbol": "ALICEUSDT"}, seconds=5.0)])
    exchange = SimExchange.from_spec(SPEC, faults=faults)
    store = await SQLiteStore.open(":memory:")
    config = EngineConfig(max_positions_per_wave=3, max_concurrent_signals=1, sweep_interval=0)
    async with Engine.open(config, exchange, store) as engine:
        with trio.move_on_after(2.0):  # what SIGINT does to `trio-bot run`: the whole run is cancelled
            await engine.process_wave(wave_signals(3))
    (wave,) = await store.waves()
    assert wave.interrupted and wave.duration is not None and wave.counts.consistent
    assert [(o.signal_id, o.outcome.value) for o in wave.outcomes] == [
        ("4974690", "opened"), ("4974691", "timed_out"), ("4974692", "skipped")]
    assert wave.outcomes[2].reason == NOT_ATTEMPTED
    await store.aclose()

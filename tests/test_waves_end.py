"""Every wave ends with one outcome per signal, even when the engine stops in its middle:
a crash is completed at the next start-up, a shutdown stores the final record before exit."""

from collections.abc import Mapping

import pytest
import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.faults import FaultPlan
from adapters.sim.faulty_storage import FaultyStorage
from adapters.sim.scenario import FaultSpec
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.ids import entry_id
from engine.model import (
    HandledSignal,
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


class _SlowClaims(FaultyStorage):
    """Storing a wave's start takes `seconds`, before (`landed=False`) or after it is committed."""

    def __init__(self, inner: SQLiteStore, seconds: float, *, landed: bool) -> None:
        super().__init__(inner, FaultPlan([]))
        self.seconds, self.landed = seconds, landed

    async def claim_signals(self, wave: WaveRecord, claims: Mapping[str, int], *,
                            forget_before: float | None = None) -> dict[str, HandledSignal]:
        if not self.landed:
            await trio.sleep(self.seconds)
        known = await super().claim_signals(wave, claims, forget_before=forget_before)
        if self.landed:
            await trio.sleep(self.seconds)
        return known


@pytest.mark.parametrize("landed", [False, True], ids=["before-commit", "after-commit"])
async def test_stopping_the_engine_while_the_waves_start_is_stored_still_stores_its_end(autojump_clock, landed):
    # A SIGINT a few milliseconds after a wave began (a crash trial found it): the run was
    # cancelled while the wave's start and signal ids were being stored, and the wave was left
    # without an end although the run exited cleanly.
    inner = await SQLiteStore.open(":memory:")
    store = _SlowClaims(inner, 3.0, landed=landed)
    config = EngineConfig(max_positions_per_wave=3, sweep_interval=0)
    exchange = SimExchange.from_spec(SPEC)
    async with Engine.open(config, exchange, store) as engine:
        with trio.move_on_after(1.0):  # what SIGINT does to `trio-bot run`: the whole run is cancelled
            await engine.process_wave([*wave_signals(3), {"id": "bad", "symbol": "NOPEUSDT", "side": "long",
                                                          "score": 1.0}])
    (wave,) = await inner.waves()
    assert wave.interrupted and wave.duration is not None and wave.counts.consistent
    assert [(o.signal_id, o.outcome.value, o.reason) for o in wave.outcomes[:3]] == [
        (sid, "skipped", NOT_ATTEMPTED) for sid in ("4974690", "4974691", "4974692")]
    assert wave.outcomes[3].outcome is Outcome.REJECTED
    assert exchange.positions_snapshot() == [] and exchange.fills == []
    await inner.aclose()

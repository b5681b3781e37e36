"""Cancel the wave at every moment of the open procedure in turn.

With 50 ms per exchange call the whole open (snapshot, intent, entry, stop,
look-ups) spans a few hundred virtual milliseconds; stopping the wave at each
5 ms step lands the cancellation on every await point. Whatever the moment,
there is one consistent outcome and no unprotected exposure.
"""

import pytest
import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.faults import FaultPlan
from adapters.sim.scenario import ExchangeSpec, FaultSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from tests.conftest import PRICES, wave_signals
from trio_bot import Engine

SPEC = ExchangeSpec(latency=0.05, markets=tuple(MarketSpec(s, p) for s, p in PRICES.items()))
CONFIG = EngineConfig(max_positions_per_wave=2, max_concurrent_signals=2)


async def open_and_cancel_at(delay: float, faults: FaultPlan) -> tuple:
    exchange = SimExchange.from_spec(SPEC, faults=faults)
    store = await SQLiteStore.open(":memory:", call_timeout=CONFIG.call_timeout)
    async with Engine.open(CONFIG, exchange, store) as engine:
        records = []

        async def wave():
            records.append(await engine.process_wave(wave_signals(3)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wave)
            await trio.sleep(delay)
            engine.stop_current_wave("stopped by the test")
    positions = {p.id: p for p in await store.positions(include_closed=True)}
    await store.aclose()
    return records[0], exchange, positions


@pytest.mark.parametrize("delay", [i * 0.005 for i in range(0, 100)])
@pytest.mark.parametrize("lossy", [False, True], ids=["clean", "lost-responses"])
async def test_cancel_at_each_moment(autojump_clock, delay, lossy):
    faults = FaultPlan([FaultSpec("exchange.entry_order", "lost_response", times=1),
                        FaultSpec("exchange.stop_order", "lost_response", times=1)] if lossy else [])
    record, exchange, stored = await open_and_cancel_at(delay, faults)
    counts = record.counts
    assert counts.candidates == 3 and counts.consistent
    assert exchange.unprotected_positions() == []
    assert all(n == 1 for n in exchange.entry_fill_counts().values())
    held = {p.symbol for p in exchange.positions_snapshot()}
    for outcome in record.outcomes:
        opened = outcome.outcome == "opened"
        assert opened == (outcome.symbol in held), (delay, outcome)
        if outcome.position_id is not None and outcome.position_id in stored:
            status = stored[outcome.position_id].status
            assert (status == "open") == opened or status == "opening", (delay, outcome, status)
        if outcome.outcome == "skipped":
            assert outcome.reason in ("stopped by the test",
                                      "the wave's target of 2 positions was reached")

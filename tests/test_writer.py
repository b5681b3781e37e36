"""The state writer keeps order, drops only what a later upsert overwrites, and never loses a record."""

import trio

from adapters.sim.faults import FaultPlan
from adapters.sim.faulty_storage import FaultyStorage
from adapters.sim.scenario import FaultSpec
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.model import Event, Position, PositionStatus, Side
from engine.nursery.writer import StateWriter, compact


def pos(pid, qty):
    return Position(id=pid, signal_id="s", wave_id="w", symbol="X", side=Side.LONG, status=PositionStatus.OPEN,
                    quantity=qty, entry_client_id=f"tb-{pid}-entry")


def test_compact_keeps_the_last_upsert_per_key_in_order():
    e1, e2 = Event(at=1.0, kind="a", uid="1"), Event(at=2.0, kind="b", uid="2")
    batch = [pos(1, 1.0), e1, pos(2, 1.0), pos(1, 2.0), e2, pos(1, 3.0)]
    assert compact(batch) == [e1, pos(2, 1.0), e2, pos(1, 3.0)]
    assert compact([e1, e2]) == [e1, e2]


async def test_failed_writes_are_retried_until_they_land(autojump_clock):
    store = await SQLiteStore.open(":memory:")
    faults = FaultPlan([FaultSpec("storage.write", "error", times=3)])
    writer = StateWriter(FaultyStorage(store, faults), EngineConfig())
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for k in range(10):
            writer.submit(pos(1, float(k)), Event(at=float(k), kind="k", uid=str(k)))
        with trio.fail_after(60):
            await writer.drain()
        nursery.cancel_scope.cancel()
    assert writer.failures == 3
    assert (await store.position(1)).quantity == 9.0
    assert len(await store.events()) == 10
    await store.aclose()

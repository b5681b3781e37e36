"""One storage contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
import trio

from adapters.sqlite_store import SCHEMA_VERSION
from engine.errors import StorageError
from engine.model import (
    Event,
    ExitReason,
    HandledSignal,
    OrderKind,
    OrderRecord,
    OrderSide,
    OrderStatus,
    Outcome,
    OutcomeResolved,
    Position,
    PositionStatus,
    Side,
    SignalOutcome,
    TrailingRecord,
    TrailingStatus,
    WaveOutcome,
    WaveRecord,
)
from trio_bot.aio import asyncio_loop
from trio_bot.storage import open_storage


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def store(url):
    async with asyncio_loop():
        s = await open_storage(url, call_timeout=10.0)
        try:
            yield s
        finally:
            await s.aclose()


def position(pid=1, **kw):
    base = dict(id=pid, signal_id=f"s{pid}", wave_id="w1", symbol="FORMUSDT", side=Side.LONG,
                status=PositionStatus.OPENING, quantity=245.0, entry_client_id=f"tb-{pid}-entry")
    return Position(**{**base, **kw})


def entry(pid=1):
    return OrderRecord(f"tb-{pid}-entry", pid, "FORMUSDT", OrderKind.ENTRY, OrderSide.BUY, 245.0, OrderStatus.PENDING,
                       updated_at=1.5)


def outcome(sid, rank, kind=Outcome.OPENED, **kw):
    return SignalOutcome(sid, rank, "FORMUSDT", "long", kind, **kw)


async def test_migrate_is_idempotent_and_versioned(store):
    await store.migrate()
    await store.migrate()
    assert await store.schema_version() == SCHEMA_VERSION


async def test_every_record_round_trips_exactly(store):
    full = position(status=PositionStatus.CLOSED, entry_price=0.8132, stop_price=0.7969, stop_client_id="tb-1-stop2",
                    exit_price=0.1 + 0.2, exit_reason=ExitReason.TRAILING_STOP, realized_pnl=-1e-9,
                    trailing=TrailingStatus.ACTIVE, opened_at=1_760_851_800.123456, closed_at=1_760_851_900.5)
    await store.record_intent(position(), entry())
    stop = OrderRecord("tb-1-stop2", 1, "FORMUSDT", OrderKind.STOP, OrderSide.SELL, 245.0, OrderStatus.NEW,
                       stop_price=0.7969, updated_at=2.0)
    trailing = TrailingRecord(1, "FORMUSDT", Side.LONG, 0.8132, 0.8254, 0.5, "active", 0.85, 0.8457, "tb-1-stop2", 3.0)
    wave = WaveRecord("w1", 0.0, 1_760_851_800.0, 2.31, (outcome("a", 0, score=9.1),
                                                          outcome("b", 1, Outcome.REJECTED, reason="nope")))
    event = Event(at=4.0, kind="stop_moved", wave_id="w1", signal_id="a", position_id=1, detail="x", uid="u1")
    await store.write([full, stop, trailing, wave, event])
    assert await store.position(1) == full
    assert await store.orders(1) == [attrs_evolve_status(entry(), OrderStatus.PENDING), stop]
    assert await store.trailing(1) == trailing
    assert await store.waves() == [wave]
    assert await store.events() == [event]
    assert await store.max_position_id() == 1 and await store.wave_count() == 1


def attrs_evolve_status(order, status):
    import attrs

    return attrs.evolve(order, status=status)


async def test_upserts_and_outcomes_that_arrive_one_by_one(store):
    await store.write([WaveRecord("w1", 0.0, 10.0, None, (outcome("b", 1, Outcome.REJECTED, reason="bad"),))])
    await store.write([WaveOutcome("w1", outcome("a", 0))])
    await store.write([WaveRecord("w1", 0.0, 10.0, 1.5, ())])  # the final record keeps what children stored
    (wave,) = await store.waves()
    assert wave.duration == 1.5 and [o.signal_id for o in wave.outcomes] == ["a", "b"]
    await store.write([position(status=PositionStatus.OPEN)])
    await store.write([position(status=PositionStatus.CLOSED, exit_reason=ExitReason.MANUAL)])
    assert (await store.position(1)).status is PositionStatus.CLOSED
    assert await store.positions() == [] and len(await store.positions(include_closed=True)) == 1


async def test_intent_is_atomic_and_never_overwrites(store):
    await store.record_intent(position(), entry())
    with pytest.raises(StorageError, match="already exists"):
        await store.record_intent(position(1, symbol="NEOUSDT"), entry(2))  # same position id
    assert await store.orders(2) == [] and (await store.position(1)).symbol == "FORMUSDT"


async def test_a_bad_batch_stores_nothing(store):
    with pytest.raises(TypeError):
        await store.write([position(5), "not a record"])
    assert await store.position(5) is None


async def test_events_are_ordered_filtered_and_never_duplicated(store):
    events = [Event(at=float(i), kind=f"k{i}", signal_id="s1" if i % 2 else "s2", position_id=i % 3, uid=f"u{i}")
              for i in range(6)]
    await store.write(events)
    await store.write(events[:2])  # a retried batch
    assert await store.events() == events
    assert [e.kind for e in await store.events(signal_id="s1")] == ["k1", "k3", "k5"]
    assert [e.kind for e in await store.events(position_id=0, signal_id="s2")] == ["k0"]


async def test_last_waves_are_the_newest_in_order(store):
    for i in range(1, 6):
        await store.write([WaveRecord(f"w{i}", 0.0, float(i), 1.0, (outcome("a", 0),))])
    assert [w.id for w in await store.waves(last=2)] == ["w4", "w5"]
    assert await store.waves(last=0) == []


async def test_one_wave_is_read_by_its_id_with_its_outcomes(store):
    for i in range(1, 4):
        await store.write([WaveRecord(f"w{i}", 0.0, float(i), 1.0, (outcome("b", 1), outcome(f"a{i}", 0)))])
    found = await store.wave("w2")
    assert found == (await store.waves())[1]
    assert [o.signal_id for o in found.outcomes] == ["a2", "b"]  # by rank, as `waves` gives them
    assert await store.wave("w9") is None


async def test_many_writers_at_once(store):
    async def writer(n):
        await store.record_intent(position(n), entry(n))
        for k in range(5):
            await store.write([position(n, status=PositionStatus.OPEN, quantity=float(k)),
                               Event(at=float(k), kind="tick", position_id=n, uid=f"{n}-{k}")])

    async with trio.open_nursery() as nursery:
        for n in range(1, 31):
            nursery.start_soon(writer, n)
    stored = await store.positions()
    assert len(stored) == 30 and all(p.quantity == 4.0 for p in stored)
    assert len(await store.events()) == 150


async def test_data_survives_reopening(url):
    async with asyncio_loop():
        first = await open_storage(url, call_timeout=10.0)
        await first.record_intent(position(), entry())
        await first.aclose()
        second = await open_storage(url, call_timeout=10.0)
        try:
            assert (await second.position(1)).entry_client_id == "tb-1-entry"
        finally:
            await second.aclose()


async def test_operator_settings_are_durable_and_can_be_removed(url):
    async with asyncio_loop():
        first = await open_storage(url, call_timeout=10.0)
        try:
            assert await first.setting("entries_paused") is None
            await first.put_setting("entries_paused", '{"reason": "a"}')
            await first.put_setting("entries_paused", '{"reason": "b"}')  # an upsert, not a second row
        finally:
            await first.aclose()
        second = await open_storage(url, call_timeout=10.0)
        try:
            assert await second.setting("entries_paused") == '{"reason": "b"}'
            await second.put_setting("entries_paused", None)
            assert await second.setting("entries_paused") is None
            await second.put_setting("entries_paused", None)  # removing twice is fine
        finally:
            await second.aclose()


async def test_a_waves_events_include_its_signals_and_their_positions(store):
    await store.write([WaveRecord("w1", 0.0, 1.0, 1.0, (outcome("a", 0, position_id=7), outcome("b", 1))),
                       WaveRecord("w2", 0.0, 2.0, 1.0, (outcome("c", 0),))])
    await store.write([
        Event(at=1.0, kind="wave_started", wave_id="w1", uid="e1"),
        Event(at=1.1, kind="intent_stored", signal_id="a", position_id=7, uid="e2"),
        Event(at=1.2, kind="signal_outcome", wave_id="w1", signal_id="b", uid="e3"),
        Event(at=1.3, kind="trailing_saved", position_id=7, uid="e4"),
        Event(at=2.0, kind="wave_started", wave_id="w2", uid="e5"),
        Event(at=2.1, kind="intent_stored", signal_id="c", position_id=8, uid="e6"),
    ])
    assert [e.uid for e in await store.events(wave_id="w1")] == ["e1", "e2", "e3", "e4"]
    assert [e.uid for e in await store.events(wave_id="w2")] == ["e5", "e6"]
    assert [e.uid for e in await store.events(since=1.25)] == ["e4", "e5", "e6"]
    assert [e.uid for e in await store.events(wave_id="w1", since=1.15)] == ["e3", "e4"]
    assert await store.events(wave_id="nope") == []


async def test_signal_claims_remember_each_id_once_with_its_wave_and_outcome(store):
    w1 = WaveRecord("w1", 0.0, 1000.0)
    assert await store.claim_signals(w1, {"a": 0, "b": 2}) == {}
    assert await store.claim_signals(w1, {"a": 0, "b": 2}) == {}  # a retried claim finds its own rows
    assert [w.id for w in await store.waves()] == ["w1"] and await store.wave_count() == 1
    # The outcome stored for the claimed copy (rank 2) is written back; another copy's is not.
    await store.write([WaveOutcome("w1", outcome("b", 1, Outcome.REJECTED, reason="duplicate")),
                       WaveOutcome("w1", outcome("b", 2, Outcome.OPENED))])
    await store.write([WaveRecord("w1", 0.0, 1000.0, 1.0, (outcome("a", 0, Outcome.FAILED),))])
    earlier = await store.claim_signals(WaveRecord("w2", 5.0, 2000.0), {"b": 0, "c": 1})
    assert earlier == {"b": HandledSignal("b", "w1", 2, 1000.0, Outcome.OPENED)}
    assert await store.handled_signals(["a", "c", "zzz"]) == {
        "a": HandledSignal("a", "w1", 0, 1000.0, Outcome.FAILED),
        "c": HandledSignal("c", "w2", 1, 2000.0, None)}


async def test_signal_claims_older_than_the_retention_are_forgotten(store):
    await store.claim_signals(WaveRecord("w1", 0.0, 1000.0), {"a": 0})
    await store.claim_signals(WaveRecord("w2", 0.0, 5000.0), {"b": 0})
    earlier = await store.claim_signals(WaveRecord("w3", 0.0, 9000.0), {"a": 0, "b": 1}, forget_before=4000.0)
    assert set(earlier) == {"b"}
    assert (await store.handled_signals(["a"]))["a"].wave_id == "w3"


async def test_a_resolved_outcome_updates_the_signal_and_its_claim(store):
    """An entry of unknown outcome decided after its wave: the attempted copy (the one with the
    position) gets the new outcome and the time; another copy of the id and other waves keep theirs."""
    w1 = WaveRecord("w1", 0.0, 1000.0)
    await store.claim_signals(w1, {"a": 1})
    pending = outcome("a", 1, Outcome.TIMED_OUT, reason="entry order outcome unknown (503); being resolved",
                      position_id=7)
    copy = outcome("a", 0, Outcome.REJECTED, reason="duplicate signal id in the wave")
    await store.write([WaveRecord("w1", 0.0, 1000.0, 1.0, (copy, pending)),
                       WaveRecord("w2", 5.0, 1001.0, 1.0, (outcome("z", 0, position_id=7),))])
    await store.write([OutcomeResolved("w1", 7, "a", Outcome.OPENED, "filled late", TrailingStatus.PENDING,
                                       1_760_851_861.25)])
    waves = {w.id: w for w in await store.waves()}
    assert waves["w1"].outcomes == (copy, attrs_evolve_resolved(pending))
    assert waves["w2"].outcomes == (outcome("z", 0, position_id=7),)
    assert (await store.handled_signals(["a"]))["a"].outcome is Outcome.OPENED


def attrs_evolve_resolved(o):
    import attrs

    return attrs.evolve(o, outcome=Outcome.OPENED, reason="filled late", trailing=TrailingStatus.PENDING,
                        resolved_at=1_760_851_861.25)

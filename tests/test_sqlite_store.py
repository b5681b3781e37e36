"""SQLiteStore and FaultyStorage: exact round trips, one transaction per call, faults by point."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from adapters.sim.faults import FaultPlan
from adapters.sim.faulty_storage import FaultyStorage
from adapters.sim.scenario import FaultSpec
from adapters.sqlite_store import MIGRATIONS, SCHEMA_VERSION, SQLiteStore, sqlite_path
from engine.errors import StorageError
from engine.model import (
    Event,
    ExitReason,
    OrderKind,
    OrderRecord,
    OrderSide,
    OrderStatus,
    Outcome,
    Position,
    PositionStatus,
    Side,
    SignalOutcome,
    TrailingRecord,
    TrailingStatus,
    WaveOutcome,
    WaveRecord,
)
from engine.ports import Record


def make_position(pid: int = 1, **changes: Any) -> Position:
    base = Position(id=pid, signal_id=f"sig-{pid}", wave_id="w1", symbol="BTCUSDT", side=Side.LONG,
                    status=PositionStatus.OPENING, quantity=0.123, entry_client_id=f"e-{pid}")
    return attrs.evolve(base, **changes)


def make_order(pid: int = 1, **changes: Any) -> OrderRecord:
    base = OrderRecord(client_order_id=f"e-{pid}", position_id=pid, symbol="BTCUSDT", kind=OrderKind.ENTRY,
                       side=OrderSide.BUY, quantity=0.123, status=OrderStatus.PENDING)
    return attrs.evolve(base, **changes)


def make_trailing(pid: int = 1, **changes: Any) -> TrailingRecord:
    base = TrailingRecord(position_id=pid, symbol="BTCUSDT", side=Side.LONG, entry_price=100.0,
                          activation_price=101.5, callback_percent=0.8, state="armed", best_price=100.0,
                          stop_price=98.0, stop_client_id=None, updated_at=1_760_851_800.25)
    return attrs.evolve(base, **changes)


def make_outcome(signal_id: str, rank: int, **changes: Any) -> SignalOutcome:
    base = SignalOutcome(signal_id=signal_id, rank=rank, symbol="ETHUSDT", side="short",
                         outcome=Outcome.OPENED, position_id=rank + 1, trailing=TrailingStatus.ACTIVE,
                         score=0.1 + 0.2)
    return attrs.evolve(base, **changes)


@pytest.fixture(params=["memory", "file"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    path = ":memory:" if request.param == "memory" else str(tmp_path / "state.db")
    s = await SQLiteStore.open(path, call_timeout=5.0)
    yield s
    await s.aclose()


# --- round trips and upserts ---


async def test_position_round_trip_is_exact(store: SQLiteStore) -> None:
    full = make_position(7, status=PositionStatus.CLOSED, entry_price=0.1 + 0.2, stop_price=1e-9,
                         stop_client_id="s-7", exit_price=123456.789012345,
                         exit_reason=ExitReason.TRAILING_STOP, realized_pnl=-0.0001,
                         trailing=TrailingStatus.FAILED, opened_at=1.5, closed_at=2.25)
    bare = make_position(3)
    await store.write([full, bare])
    assert await store.position(7) == full
    assert await store.position(3) == bare
    assert await store.position(99) is None
    got = await store.position(7)
    assert got is not None and type(got.side) is Side and type(got.exit_reason) is ExitReason


async def test_position_upsert_and_open_filter(store: SQLiteStore) -> None:
    await store.write([make_position(1), make_position(2), make_position(3)])
    await store.write([make_position(2, status=PositionStatus.OPEN, entry_price=100.0),
                       make_position(3, status=PositionStatus.CLOSED)])
    assert [p.id for p in await store.positions()] == [1, 2]
    assert (await store.positions())[1].entry_price == 100.0
    assert [p.id for p in await store.positions(include_closed=True)] == [1, 2, 3]
    assert await store.max_position_id() == 3


async def test_empty_store_reads(store: SQLiteStore) -> None:
    assert await store.max_position_id() == 0
    assert await store.wave_count() == 0
    assert await store.positions(include_closed=True) == []
    assert await store.orders(1) == []
    assert await store.trailing(1) is None
    assert await store.waves() == []
    assert await store.waves(last=3) == []
    assert await store.events() == []


async def test_orders_round_trip_and_upsert(store: SQLiteStore) -> None:
    entry = make_order(1, updated_at=1.0)
    stop = OrderRecord("s-1", 1, "BTCUSDT", OrderKind.STOP, OrderSide.SELL, 0.123, OrderStatus.NEW,
                       stop_price=98.7, updated_at=2.0)
    other = make_order(2)
    await store.write([entry, stop, other])
    assert await store.orders(1) == [entry, stop]
    filled = attrs.evolve(entry, status=OrderStatus.FILLED, fill_price=100.25, updated_at=1.5)
    await store.write([filled])
    assert await store.orders(1) == [filled, stop]
    assert await store.orders(2) == [other]


async def test_trailing_round_trip_and_upsert(store: SQLiteStore) -> None:
    record = make_trailing(4)
    await store.write([record])
    assert await store.trailing(4) == record
    moved = attrs.evolve(record, best_price=105.5, stop_price=104.656, stop_client_id="t-4-2",
                         state="active", updated_at=9.0)
    await store.write([moved])
    assert await store.trailing(4) == moved
    assert await store.trailing(5) is None


async def test_wave_round_trip_with_partial_then_full_outcomes(store: SQLiteStore) -> None:
    first = make_outcome("a", 0)
    rejected = make_outcome("dup", 2, outcome=Outcome.REJECTED, reason="duplicate id", position_id=None,
                            trailing=TrailingStatus.NONE, score=None, symbol="", side="")
    await store.write([WaveRecord("w1", 10.0, 1_760_851_810.0, None, (first,))])
    await store.write([WaveOutcome("w1", rejected)])
    [wave] = await store.waves()
    assert wave == WaveRecord("w1", 10.0, 1_760_851_810.0, None, (first, rejected))

    second = make_outcome("dup", 1, outcome=Outcome.FAILED, reason="entry rejected", position_id=2,
                          trailing=TrailingStatus.NONE)
    final = WaveRecord("w1", 10.0, 1_760_851_810.0, 3.75, (first, second, rejected))
    await store.write([final])
    assert await store.waves() == [final]
    assert (await store.waves())[0].counts == final.counts
    assert isinstance((await store.waves())[0].outcomes, tuple)
    assert await store.wave_count() == 1


async def test_waves_last_n_in_chronological_order(store: SQLiteStore) -> None:
    records = [WaveRecord(f"w{i}", float(i), 1000.0 + i, 1.0, (make_outcome(f"s{i}", 0),)) for i in range(5)]
    for r in records:
        await store.write([r])
    await store.write([attrs.evolve(records[1], duration=2.0)])  # an update keeps the wave's place
    records[1] = attrs.evolve(records[1], duration=2.0)
    assert await store.waves() == records
    assert await store.waves(last=2) == records[3:]
    assert await store.waves(last=10) == records
    assert await store.waves(last=0) == []
    with pytest.raises(ValueError, match="last"):
        await store.waves(last=-1)
    assert await store.wave_count() == 5


async def test_events_append_in_order_and_filter(store: SQLiteStore) -> None:
    e1 = Event(1.0, "signal_received", wave_id="w1", signal_id="a")
    e2 = Event(1.0, "entry_filled", wave_id="w1", signal_id="a", position_id=1, detail="qty 0.1")
    e3 = Event(0.5, "entry_filled", wave_id="w1", signal_id="b", position_id=2)
    await store.write([e1, e2])
    await store.write([e3, e1])  # the same event twice is two lines: append-only
    assert await store.events() == [e1, e2, e3, e1]
    assert await store.events(position_id=1) == [e2]
    assert await store.events(signal_id="a") == [e1, e2, e1]
    assert await store.events(signal_id="a", position_id=2) == []
    assert await store.events(signal_id="b", position_id=2) == [e3]


# --- atomicity ---


async def test_record_intent_stores_position_and_entry(store: SQLiteStore) -> None:
    await store.record_intent(make_position(1), make_order(1))
    assert await store.position(1) == make_position(1)
    assert await store.orders(1) == [make_order(1)]


async def test_record_intent_duplicate_leaves_nothing_half_written(store: SQLiteStore) -> None:
    await store.record_intent(make_position(1), make_order(1))
    with pytest.raises(StorageError, match="position 1 already exists"):
        await store.record_intent(make_position(1, symbol="ETHUSDT"), make_order(1, client_order_id="new"))
    assert await store.orders(1) == [make_order(1)]
    assert (await store.position(1)) == make_position(1)
    # The order half failing must undo the position half too.
    with pytest.raises(StorageError, match="already exists"):
        await store.record_intent(make_position(2), make_order(1, position_id=2))
    assert await store.position(2) is None
    assert await store.orders(2) == []


async def test_write_batch_rolls_back_entirely(store: SQLiteStore) -> None:
    good: list[Record] = [make_position(1), make_order(1), make_trailing(1), Event(1.0, "x"),
            WaveRecord("w1", 0.0, 0.0, None, (make_outcome("a", 0),))]
    with pytest.raises(TypeError, match="WaveOutcome"):
        await store.write([*good, make_outcome("b", 1)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="str"):
        await store.write([*good, "not a record"])  # type: ignore[list-item]
    bad_value = make_position(2, quantity=None)  # NOT NULL column: the database refuses it
    with pytest.raises(StorageError, match="write"):
        await store.write([*good, bad_value])
    assert await store.positions(include_closed=True) == []
    assert await store.orders(1) == []
    assert await store.trailing(1) is None
    assert await store.events() == []
    assert await store.waves() == []
    await store.write(good)  # and the store is still usable
    assert await store.wave_count() == 1


# --- schema ---


async def test_migrate_is_idempotent_and_versioned(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    store = await SQLiteStore.open(path)
    await store.write([make_position(1)])
    await store.migrate()
    await store.migrate()
    assert await store.schema_version() == SCHEMA_VERSION == MIGRATIONS[-1][0]
    await store.aclose()
    with sqlite3.connect(path) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert versions == [v for v, _ in MIGRATIONS]
    assert mode == "wal"


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "future.db")
    await (await SQLiteStore.open(path)).aclose()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StorageError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        await SQLiteStore.open(path)


async def test_reopened_file_keeps_everything(tmp_path: Path) -> None:
    path = str(tmp_path / "keep.db")
    position = make_position(5, status=PositionStatus.OPEN, entry_price=99.5)
    wave = WaveRecord("w9", 3.0, 4.0, 5.0, (make_outcome("x", 0),))
    store = await SQLiteStore.from_url(f"sqlite:///{path}")
    await store.record_intent(make_position(4), make_order(4))
    await store.write([position, make_trailing(5), wave, Event(1.0, "k", position_id=5)])
    await store.aclose()

    again = await SQLiteStore.open(path)
    assert await again.max_position_id() == 5
    assert await again.positions() == [make_position(4), position]
    assert await again.orders(4) == [make_order(4)]
    assert await again.trailing(5) == make_trailing(5)
    assert await again.waves() == [wave]
    assert await again.events(position_id=5) == [Event(1.0, "k", position_id=5)]
    await again.aclose()


# --- errors ---


async def test_errors_are_storage_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot"):
        await SQLiteStore.open(str(tmp_path / "no" / "such" / "dir" / "x.db"))
    store = SQLiteStore(":memory:")  # never migrated: no tables
    with pytest.raises(StorageError, match="no such table"):
        await store.positions()
    await store.aclose()
    await store.aclose()  # closing twice is harmless
    with pytest.raises(StorageError, match="closed"):
        await store.max_position_id()


async def test_runaway_statement_is_aborted_after_call_timeout() -> None:
    store = await SQLiteStore.open(":memory:", call_timeout=0.05)

    def forever(conn: sqlite3.Connection) -> object:
        return conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
        ).fetchone()

    with pytest.raises(StorageError, match=r"longer than 0\.05s"):
        await store._transaction("runaway", forever)
    assert await store.max_position_id() == 0  # the connection is fine afterwards
    await store.aclose()


async def test_calls_are_cancellation_points(store: SQLiteStore) -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        await store.write([make_position(1)])
    assert scope.cancelled_caught
    assert await store.position(1) is None


def test_url_parsing() -> None:
    assert sqlite_path("sqlite:///trio-bot.db") == "trio-bot.db"
    assert sqlite_path("sqlite:///data/x.db") == "data/x.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    assert sqlite_path("sqlite:///:memory:") == ":memory:"
    for bad in ("sqlite:///", "postgresql://h/db", "x.db"):
        with pytest.raises(ValueError, match="sqlite:///"):
            sqlite_path(bad)


def test_bad_call_timeout() -> None:
    with pytest.raises(ValueError, match="call_timeout"):
        SQLiteStore(":memory:", call_timeout=0)


# --- FaultyStorage ---


async def faulty(*faults: FaultSpec) -> tuple[FaultyStorage, SQLiteStore, FaultPlan]:
    inner = await SQLiteStore.open(":memory:")
    plan = FaultPlan(faults)
    return FaultyStorage(inner, plan), inner, plan


async def hangs(call: Callable[[], Awaitable[object]]) -> bool:
    with trio.move_on_after(3600) as scope:
        await call()
    return scope.cancelled_caught


async def test_trailing_hang_leaves_other_writes_working(autojump_clock: trio.testing.MockClock) -> None:
    storage, inner, plan = await faulty(FaultSpec("storage.trailing", "hang"))
    assert await hangs(lambda: storage.write([make_trailing(1), make_trailing(2, symbol="ETHUSDT")]))
    assert await hangs(lambda: storage.trailing(1))
    await storage.record_intent(make_position(1), make_order(1))
    await storage.write([make_position(1, status=PositionStatus.OPEN), Event(1.0, "opened")])
    await storage.write([WaveRecord("w1", 0.0, 0.0), WaveOutcome("w1", make_outcome("a", 0))])
    assert [p.status for p in await storage.positions()] == [PositionStatus.OPEN]
    assert await storage.orders(1) == [make_order(1)]
    assert await storage.wave_count() == 1
    assert await inner.trailing(1) is None  # the hung write never happened
    assert plan.fired == {"storage.trailing": 2}


async def test_write_hang_leaves_trailing_and_reads_working(autojump_clock: trio.testing.MockClock) -> None:
    storage, _, plan = await faulty(FaultSpec("storage.write", "hang"))
    assert await hangs(lambda: storage.record_intent(make_position(1), make_order(1)))
    assert await hangs(lambda: storage.write([make_trailing(1), Event(1.0, "mixed")]))
    assert await hangs(lambda: storage.write([]))
    await storage.write([make_trailing(1)])
    assert await storage.trailing(1) == make_trailing(1)
    assert await storage.positions() == []
    assert await storage.max_position_id() == 0
    assert plan.fired == {"storage.write": 3}


async def test_read_fault_covers_every_other_read() -> None:
    storage, inner, plan = await faulty(FaultSpec("storage.read", "error", message="disk gone"))
    await storage.write([make_position(1), make_trailing(1)])
    reads: list[Callable[[], Awaitable[object]]] = [
        storage.max_position_id, storage.wave_count, storage.positions, lambda: storage.position(1),
        lambda: storage.orders(1), storage.waves, storage.events,
    ]
    for read in reads:
        with pytest.raises(StorageError, match="disk gone"):
            await read()
    assert await storage.trailing(1) == make_trailing(1)
    assert plan.fired == {"storage.read": len(reads)}
    await storage.migrate()  # set-up and tear-down are never faulted
    await storage.aclose()
    with pytest.raises(StorageError, match="closed"):
        await inner.max_position_id()


async def test_fault_matching_by_symbol_and_side() -> None:
    storage, inner, plan = await faulty(
        FaultSpec("storage.write", "error", match={"symbol": "ETHUSDT", "side": "short"}, times=1),
        FaultSpec("storage.trailing", "reject", match={"symbol": "SOLUSDT"}),
    )
    await storage.record_intent(make_position(1), make_order(1))  # BTCUSDT long: no match
    eth = make_position(2, symbol="ETHUSDT", side=Side.SHORT)
    with pytest.raises(StorageError, match=r"injected error at storage\.write"):
        await storage.record_intent(eth, make_order(2))
    await storage.record_intent(eth, make_order(2))  # times=1: used up
    await storage.write([make_trailing(1), make_trailing(3, symbol="SOLUSDT")])  # first record decides
    with pytest.raises(StorageError, match=r"storage\.trailing"):
        await storage.write([make_trailing(3, symbol="SOLUSDT"), make_trailing(1)])
    assert await inner.max_position_id() == 2
    assert plan.fired == {"storage.write": 1, "storage.trailing": 1}


async def test_lost_response_writes_then_hangs(autojump_clock: trio.testing.MockClock) -> None:
    storage, inner, _ = await faulty(FaultSpec("storage.write", "lost_response", times=1))
    assert await hangs(lambda: storage.write([make_position(1)]))
    assert await inner.position(1) == make_position(1)

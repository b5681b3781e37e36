"""The position book: the one owner of live positions, their ids and their saving."""

from __future__ import annotations

import attrs
import trio

from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.model import Position, PositionStatus, Side, TrailingRecord, TrailingStatus
from engine.nursery.clocks import SystemClock
from engine.nursery.context import EngineContext
from engine.nursery.position_book import PositionBook
from engine.nursery.writer import StateWriter


def pos(pid: int, symbol: str, status: PositionStatus) -> Position:
    return Position(id=pid, signal_id=f"s{pid}", wave_id="w1", symbol=symbol, side=Side.LONG, status=status,
                    quantity=1.0, entry_client_id=f"tb-{pid}-entry")


def trailing(pid: int) -> TrailingRecord:
    return TrailingRecord(pid, "X", Side.LONG, 1.0, 1.1, 0.5, "waiting", 1.0, 0.9, f"tb-{pid}-stop1", 0.0)


async def test_saves_mirror_at_once_and_land_in_the_store_in_order() -> None:
    store = await SQLiteStore.open(":memory:")
    writer = StateWriter(store, EngineConfig())
    book = PositionBook(EngineContext(EngineConfig(), None, store, writer, SystemClock()))  # type: ignore[arg-type]
    book.load([pos(3, "AUSDT", PositionStatus.OPEN), pos(4, "BUSDT", PositionStatus.CLOSED)], max_position_id=7)
    assert book.allocate_id() == 8 and book.allocate_id() == 9  # after the highest id ever stored
    assert book.busy_symbols == frozenset({"AUSDT"})
    assert [p.id for p in book.all()] == [3] and [p.id for p in book.all(include_closed=True)] == [3, 4]
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        book.save(pos(8, "CUSDT", PositionStatus.OPENING))
        book.save(pos(8, "CUSDT", PositionStatus.OPEN))
        assert book[8].status is PositionStatus.OPEN and "CUSDT" in book.busy_symbols
        book.trailing_saved(trailing(8))  # stored trailing state: a restart resumes it
        book.trailing_saved(trailing(8))  # said once, not per save
        book.trailing_saved(trailing(4))  # a closed position stays as it is
        with trio.fail_after(5):
            await writer.drain()
        nursery.cancel_scope.cancel()
    stored = await store.position(8)
    assert stored is not None and (stored.status, stored.trailing) == (PositionStatus.OPEN, TrailingStatus.ACTIVE)
    assert book[4].trailing is TrailingStatus.NONE
    assert [e.kind for e in await store.events(position_id=8)] == ["trailing_saved"]
    await store.aclose()


async def test_only_the_newest_closed_positions_stay_in_memory() -> None:
    """A bot that runs for months must not keep every position it ever closed."""
    store = await SQLiteStore.open(":memory:")
    writer = StateWriter(store, EngineConfig())
    book = PositionBook(EngineContext(EngineConfig(), None, store, writer, SystemClock()),  # type: ignore[arg-type]
                        closed_kept=2)
    book.load([pos(1, "AUSDT", PositionStatus.OPEN)], max_position_id=1)
    for pid in range(2, 7):
        book.stored(pos(pid, f"S{pid}USDT", PositionStatus.OPEN))
        book.stored(attrs.evolve(pos(pid, f"S{pid}USDT", PositionStatus.CLOSED), realized_pnl=float(pid)))
    assert [p.id for p in book.all(include_closed=True)] == [1, 5, 6]  # the open one, the two newest closed
    assert book.get(2) is None
    assert book.realized_pnl == 2 + 3 + 4 + 5 + 6  # forgotten positions still count
    book.stored(attrs.evolve(pos(6, "S6USDT", PositionStatus.CLOSED), realized_pnl=6.0))  # saved again: kept once
    assert [p.id for p in book.all(include_closed=True)] == [1, 5, 6]
    await store.aclose()

"""The read queries of the SQLite store (`waves`, `positions`, `events`, ...).

Apart from the writes because reports and the read-only commands use only
these, and because each is one snapshot transaction with nothing to roll back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import TypeVar

import attrs

from adapters.records import (
    EVENTS,
    HANDLED,
    ORDERS,
    OUTCOMES,
    POSITIONS,
    SETTING_GET,
    TRAILING,
    WAVES,
    Table,
    events_query,
    q,
)
from adapters.sqlite_connection import SQLiteConnection
from engine.model import (
    Event,
    HandledSignal,
    OrderRecord,
    Position,
    PositionStatus,
    SignalOutcome,
    TrailingRecord,
    WaveRecord,
)

T = TypeVar("T")


class SQLiteReads(SQLiteConnection):
    """Read queries; each runs in one read transaction, so a multi-query read sees one snapshot."""

    async def handled_signals(self, signal_ids: Sequence[str]) -> dict[str, HandledSignal]:
        return await self._transaction("handled_signals", lambda conn: find_handled(conn, signal_ids))

    async def wave_claims(self, wave_id: str) -> list[HandledSignal]:
        sql = f"{HANDLED.select()} WHERE wave_id = ? ORDER BY rank"
        return await self._transaction("wave_claims", lambda conn: _all(conn, HANDLED, sql, (wave_id,)))

    async def unfinished_waves(self) -> list[WaveRecord]:
        def body(conn: sqlite3.Connection) -> list[WaveRecord]:
            waves = _all(conn, WAVES, f"{WAVES.select()} WHERE duration IS NULL ORDER BY seq", ())
            sql = f"{OUTCOMES.select()} WHERE wave_id = ? ORDER BY rank, signal_id"
            return [attrs.evolve(w, outcomes=tuple(_all(conn, OUTCOMES, sql, (w.id,)))) for w in waves]

        return await self._transaction("unfinished_waves", body)

    async def wave(self, wave_id: str) -> WaveRecord | None:
        def body(conn: sqlite3.Connection) -> WaveRecord | None:
            found = _all(conn, WAVES, f"{WAVES.select()} WHERE id = ?", (wave_id,))
            if not found:
                return None
            sql = f"{OUTCOMES.select()} WHERE wave_id = ? ORDER BY rank, signal_id"
            return attrs.evolve(found[0], outcomes=tuple(_all(conn, OUTCOMES, sql, (wave_id,))))

        return await self._transaction("wave", body)

    async def max_position_id(self) -> int:
        def body(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT coalesce(max(id), 0) FROM positions").fetchone()[0])

        return await self._transaction("max_position_id", body)

    async def wave_count(self) -> int:
        def body(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM waves").fetchone()[0])

        return await self._transaction("wave_count", body)

    async def positions(self, *, include_closed: bool = False) -> list[Position]:
        where = "" if include_closed else " WHERE status IN (?, ?)"
        args = () if include_closed else (PositionStatus.OPENING.value, PositionStatus.OPEN.value)
        sql = f"{POSITIONS.select()}{where} ORDER BY id"
        return await self._transaction("positions", lambda conn: _all(conn, POSITIONS, sql, args))

    async def position(self, position_id: int) -> Position | None:
        sql = f"{POSITIONS.select()} WHERE id = ?"
        found = await self._transaction("position", lambda conn: _all(conn, POSITIONS, sql, (position_id,)))
        return found[0] if found else None

    async def orders(self, position_id: int) -> list[OrderRecord]:
        # updated_at first, then rowid: the order the engine stored them in, even
        # when two share a timestamp.
        sql = f"{ORDERS.select()} WHERE position_id = ? ORDER BY updated_at, rowid"
        return await self._transaction("orders", lambda conn: _all(conn, ORDERS, sql, (position_id,)))

    async def trailing(self, position_id: int) -> TrailingRecord | None:
        sql = f"{TRAILING.select()} WHERE position_id = ?"
        found = await self._transaction("trailing", lambda conn: _all(conn, TRAILING, sql, (position_id,)))
        return found[0] if found else None

    async def waves(self, *, last: int | None = None) -> list[WaveRecord]:
        """Oldest first; `last=N` keeps the newest N (still oldest first)."""
        if last is not None and last < 0:
            raise ValueError(f"last must be >= 0, not {last}")

        def body(conn: sqlite3.Connection) -> list[WaveRecord]:
            if last is None:
                first_seq = 0
            else:
                row = conn.execute(
                    "SELECT min(seq) FROM (SELECT seq FROM waves ORDER BY seq DESC LIMIT ?)", (last,)
                ).fetchone()
                if row[0] is None:
                    return []
                first_seq = row[0]
            waves = _all(conn, WAVES, f"{WAVES.select()} WHERE seq >= ? ORDER BY seq", (first_seq,))
            outcomes: dict[str, list[SignalOutcome]] = {w.id: [] for w in waves}
            cols = ", ".join(f"o.{q(c)}" for c in OUTCOMES.columns)
            rows = conn.execute(
                f"SELECT {cols} FROM signal_outcomes o JOIN waves w ON w.id = o.wave_id "
                "WHERE w.seq >= ? ORDER BY o.wave_id, o.rank, o.signal_id", (first_seq,))
            for wave_id, *rest in rows:
                outcomes[wave_id].append(OUTCOMES.decode(rest))
            return [attrs.evolve(w, outcomes=tuple(outcomes[w.id])) for w in waves]

        return await self._transaction("waves", body)

    async def events(self, *, position_id: int | None = None, signal_id: str | None = None,
                     wave_id: str | None = None, since: float | None = None) -> list[Event]:
        sql, args = events_query("sqlite", wave_id=wave_id, signal_id=signal_id, position_id=position_id,
                                 since=since)
        return await self._transaction("events", lambda conn: _all(conn, EVENTS, sql, args))

    async def setting(self, key: str) -> str | None:
        def body(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(SETTING_GET["sqlite"], (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._transaction("setting", body)


def _all(conn: sqlite3.Connection, table: Table[T], sql: str, args: Iterable[object]) -> list[T]:
    return [table.decode(row) for row in conn.execute(sql, tuple(args))]


def find_handled(conn: sqlite3.Connection, signal_ids: Iterable[str]) -> dict[str, HandledSignal]:
    # One indexed look-up per id: a wave holds tens of ids, and no parameter limit applies.
    sql = f"{HANDLED.select()} WHERE signal_id = ?"
    found: dict[str, HandledSignal] = {}
    for sid in dict.fromkeys(signal_ids):
        for row in conn.execute(sql, (sid,)):
            found[sid] = HANDLED.decode(row)
    return found



"""The read queries of the PostgreSQL store (`waves`, `positions`, `events`, ...).

Apart from the writes because reports and the read-only commands use only these,
and because each is one transaction (one snapshot) with nothing to roll back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import asyncpg
import attrs

from adapters.postgres_connection import PostgresConnection
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


class PostgresReads(PostgresConnection):
    """Read queries, each in one transaction of its own."""

    async def handled_signals(self, signal_ids: Sequence[str]) -> dict[str, HandledSignal]:
        async def body(conn: asyncpg.Connection) -> dict[str, HandledSignal]:
            return await find_handled(conn, list(signal_ids))

        return await self._run("handled_signals", body)

    async def wave_claims(self, wave_id: str) -> list[HandledSignal]:
        return await self._all("wave_claims", HANDLED, f"{HANDLED.select()} WHERE wave_id = $1 ORDER BY rank",
                               wave_id)

    async def unfinished_waves(self) -> list[WaveRecord]:
        async def body(conn: asyncpg.Connection) -> list[WaveRecord]:
            waves = [WAVES.decode(tuple(r)) for r in
                     await conn.fetch(f"{WAVES.select()} WHERE duration IS NULL ORDER BY seq")]
            sql = f"{OUTCOMES.select()} WHERE wave_id = $1 ORDER BY rank, signal_id"
            return [attrs.evolve(w, outcomes=tuple(OUTCOMES.decode(tuple(r)) for r in await conn.fetch(sql, w.id)))
                    for w in waves]

        return await self._run("unfinished_waves", body)

    async def wave(self, wave_id: str) -> WaveRecord | None:
        async def body(conn: asyncpg.Connection) -> WaveRecord | None:
            row = await conn.fetchrow(f"{WAVES.select()} WHERE id = $1", wave_id)
            if row is None:
                return None
            sql = f"{OUTCOMES.select()} WHERE wave_id = $1 ORDER BY rank, signal_id"
            return attrs.evolve(WAVES.decode(tuple(row)),
                                outcomes=tuple(OUTCOMES.decode(tuple(r)) for r in await conn.fetch(sql, wave_id)))

        return await self._run("wave", body)

    async def _all(self, what: str, table: Table[T], sql: str, *args: object) -> list[T]:
        async def body(conn: asyncpg.Connection) -> list[T]:
            return [table.decode(tuple(row)) for row in await conn.fetch(sql, *args)]

        return await self._run(what, body)

    async def _value(self, what: str, sql: str) -> int:
        async def body(conn: asyncpg.Connection) -> int:
            return int(await conn.fetchval(sql))

        return await self._run(what, body)

    async def max_position_id(self) -> int:
        return await self._value("max_position_id", "SELECT coalesce(max(id), 0) FROM positions")

    async def wave_count(self) -> int:
        return await self._value("wave_count", "SELECT count(*) FROM waves")

    async def positions(self, *, include_closed: bool = False) -> list[Position]:
        if include_closed:
            return await self._all("positions", POSITIONS, f"{POSITIONS.select()} ORDER BY id")
        return await self._all("positions", POSITIONS, f"{POSITIONS.select()} WHERE status IN ($1, $2) ORDER BY id",
                               PositionStatus.OPENING.value, PositionStatus.OPEN.value)

    async def position(self, position_id: int) -> Position | None:
        found = await self._all("position", POSITIONS, f"{POSITIONS.select()} WHERE id = $1", position_id)
        return found[0] if found else None

    async def orders(self, position_id: int) -> list[OrderRecord]:
        return await self._all("orders", ORDERS, f"{ORDERS.select()} WHERE position_id = $1 ORDER BY updated_at, seq",
                               position_id)

    async def trailing(self, position_id: int) -> TrailingRecord | None:
        found = await self._all("trailing", TRAILING, f"{TRAILING.select()} WHERE position_id = $1", position_id)
        return found[0] if found else None

    async def waves(self, *, last: int | None = None) -> list[WaveRecord]:
        if last is not None and last < 0:
            raise ValueError(f"last must be >= 0, not {last}")

        async def body(conn: asyncpg.Connection) -> list[WaveRecord]:
            if last is None:
                first_seq = 0
            else:
                first_seq = await conn.fetchval(
                    "SELECT min(seq) FROM (SELECT seq FROM waves ORDER BY seq DESC LIMIT $1) newest", last)
                if first_seq is None:
                    return []
            waves = [WAVES.decode(tuple(r)) for r in
                     await conn.fetch(f"{WAVES.select()} WHERE seq >= $1 ORDER BY seq", first_seq)]
            outcomes: dict[str, list[SignalOutcome]] = {w.id: [] for w in waves}
            cols = ", ".join(f"o.{q(c)}" for c in OUTCOMES.columns)
            rows = await conn.fetch(
                f"SELECT {cols} FROM signal_outcomes o JOIN waves w ON w.id = o.wave_id "
                "WHERE w.seq >= $1 ORDER BY o.wave_id, o.rank, o.signal_id", first_seq)
            for wave_id, *rest in rows:
                outcomes[wave_id].append(OUTCOMES.decode(rest))
            return [attrs.evolve(w, outcomes=tuple(outcomes[w.id])) for w in waves]

        return await self._run("waves", body)

    async def events(self, *, position_id: int | None = None, signal_id: str | None = None,
                     wave_id: str | None = None, since: float | None = None) -> list[Event]:
        sql, args = events_query("postgresql", wave_id=wave_id, signal_id=signal_id, position_id=position_id,
                                 since=since)
        return await self._all("events", EVENTS, sql, *args)

    async def setting(self, key: str) -> str | None:
        async def body(conn: asyncpg.Connection) -> str | None:
            value = await conn.fetchval(SETTING_GET["postgresql"], key)
            return None if value is None else str(value)

        return await self._run("setting", body)


async def find_handled(conn: asyncpg.Connection, signal_ids: list[str]) -> dict[str, HandledSignal]:
    if not signal_ids:
        return {}
    rows = await conn.fetch(f"{HANDLED.select()} WHERE signal_id = ANY($1::text[])", signal_ids)
    found = (HANDLED.decode(tuple(row)) for row in rows)
    return {h.signal_id: h for h in found}

"""PostgreSQL implementation of the `Storage` port: triopg's pool on trio-asyncio.

The connection and its bounds (one trio-asyncio crossing per operation, every
statement and the whole operation under deadlines) are `adapters.postgres_connection`;
the read queries are `adapters.postgres_reads`; here are opening, the schema and
the writes.

Needs a trio-asyncio loop (`trio_asyncio.open_loop()`) around its use. It
talks to another process over a socket, so it never runs under the mock clock.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import asyncpg

from adapters import migrations, schema_check
from adapters.postgres_reads import PostgresReads, find_handled
from adapters.records import (
    HANDLED,
    ORDERS,
    POSITIONS,
    SETTING_DELETE,
    SETTING_PUT,
    WAVES,
    migrated,
    write_plan,
)
from engine.errors import StorageError
from engine.model import HandledSignal, OrderRecord, Position, WaveRecord
from engine.ports import Record

MIGRATIONS = migrations.load("postgresql")
SCHEMA_VERSION = MIGRATIONS[-1][0]
# Serialises concurrent migrations of one database (two engines starting at once).
_MIGRATION_LOCK = 7_203_410_077_142_981_001


class PostgresStore(PostgresReads):
    """Durable engine state in PostgreSQL; see `adapters.postgres_connection` for the bounds."""

    @classmethod
    async def open(cls, url: str, *, call_timeout: float = 10.0, pool_size: int = 10) -> PostgresStore:
        """Connect (bounded by `call_timeout`) and bring the schema up to date."""
        store = cls(url, call_timeout=call_timeout, pool_size=pool_size)
        await store._connect()
        return await migrated(store)

    @classmethod
    async def open_read_only(cls, url: str, *, call_timeout: float = 10.0) -> PostgresStore:
        """Connect for reading only (`waves`, `positions`, `events`): every transaction is READ
        ONLY, nothing is migrated, no migration lock is waited for, and a schema older or newer
        than this code is named as such."""
        store = cls(url, call_timeout=call_timeout, pool_size=2, read_only=True)
        await store._connect()
        try:
            await store.check_schema()
        except BaseException:
            await store.aclose()
            raise
        return store

    # --- schema ---

    async def migrate(self) -> None:
        async def body(conn: asyncpg.Connection) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                               "(version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
            if current > SCHEMA_VERSION:
                raise _NewerSchema(current)
            for version, sql in MIGRATIONS:
                if version > current:
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)

        try:
            await self._run("migrate", body)
        except _NewerSchema as exc:
            raise StorageError(
                f"postgresql: {self.safe_url} has schema version {exc.version}, newer than this trio-bot "
                f"knows ({SCHEMA_VERSION}); upgrade trio-bot or use another database") from None

    async def schema_version(self) -> int:
        """The newest migration recorded; 0 for a database trio-bot never set up."""
        async def body(conn: asyncpg.Connection) -> int:
            if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
                return 0
            return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))

        return await self._run("schema_version", body)

    async def schema_problems(self) -> list[str]:
        """Tables or columns the stores need and the database lacks (empty when all is well)."""
        async def body(conn: asyncpg.Connection) -> list[str]:
            rows = await conn.fetch("SELECT table_name, column_name FROM information_schema.columns "
                                    "WHERE table_schema = current_schema()")
            found: dict[str, set[str]] = {}
            for row in rows:
                found.setdefault(row["table_name"], set()).add(row["column_name"])
            return schema_check.problems(found)

        return await self._run("schema_problems", body)

    async def verify_schema(self) -> int:
        """The schema version, after checking the tables really match it (`db migrate` reports it)."""
        version = await self.schema_version()
        missing = await self.schema_problems()
        if missing:
            raise StorageError("postgresql: " + schema_check.describe(self.safe_url, version, missing))
        return version

    async def check_schema(self) -> None:
        """For read-only use: the schema must be exactly the one this code knows."""
        version = await self.schema_version()
        if version < SCHEMA_VERSION:
            raise StorageError(
                f"postgresql: {self.safe_url} has schema version {version}, older than this trio-bot's "
                f"({SCHEMA_VERSION}): run `trio-bot db migrate` on it first")
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"postgresql: {self.safe_url} has schema version {version}, newer than this trio-bot "
                f"knows ({SCHEMA_VERSION}); upgrade trio-bot to read it")
        await self.verify_schema()

    # --- writes ---

    async def record_intent(self, position: Position, entry: OrderRecord) -> None:
        async def body(conn: asyncpg.Connection) -> None:
            try:
                await conn.execute(POSITIONS.insert("postgresql"), *POSITIONS.encode(position))
                await conn.execute(ORDERS.insert("postgresql"), *ORDERS.encode(entry))
            except asyncpg.UniqueViolationError:
                raise _Duplicate from None

        try:
            await self._run(f"record_intent(position {position.id})", body)
        except _Duplicate:
            raise StorageError(f"postgresql: position {position.id} or order {entry.client_order_id!r} "
                               "already exists") from None

    async def write(self, records: Sequence[Record]) -> None:
        plan = write_plan("postgresql", list(records))  # a TypeError here stores nothing

        async def body(conn: asyncpg.Connection) -> None:
            for sql, rows in plan:
                if len(rows) == 1:
                    await conn.execute(sql, *rows[0])
                else:
                    await conn.executemany(sql, rows)

        await self._run(f"write({len(records)} records)", body)

    async def claim_signals(self, wave: WaveRecord, claims: Mapping[str, int], *,
                            forget_before: float | None = None) -> dict[str, HandledSignal]:
        async def body(conn: asyncpg.Connection) -> dict[str, HandledSignal]:
            if forget_before is not None:
                await conn.execute("DELETE FROM handled_signals WHERE handled_at < $1", forget_before)
            await conn.execute(WAVES.upsert("postgresql"), *WAVES.encode(wave))
            known = await find_handled(conn, list(claims))
            fresh = [HANDLED.encode(HandledSignal(sid, wave.id, rank, wave.started_at))
                     for sid, rank in claims.items() if sid not in known]
            if fresh:
                await conn.executemany(HANDLED.insert("postgresql", ignore_duplicates=True), fresh)
            return {sid: h for sid, h in known.items() if h.wave_id != wave.id}

        return await self._run(f"claim_signals({wave.id})", body)

    async def put_setting(self, key: str, value: str | None) -> None:
        async def body(conn: asyncpg.Connection) -> None:
            if value is None:
                await conn.execute(SETTING_DELETE["postgresql"], key)
            else:
                await conn.execute(SETTING_PUT["postgresql"], key, value, time.time())

        await self._run("put_setting", body)



class _NewerSchema(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


class _Duplicate(Exception):
    pass

"""PostgreSQL implementation of the `Storage` port: triopg's pool on trio-asyncio.

One crossing per logical operation: each method is a single asyncio coroutine
(acquire → transaction → every statement → release) handed to Trio with one
`trio_asyncio.aio_as_trio` call. triopg's own proxies would cross once per
statement (and per transaction enter/exit), which costs far more than the
statements themselves; triopg still owns the pool's lifecycle (creation, and a
shielded close).

Bounds, so no call can hang: asyncpg's `command_timeout` bounds every
statement, `acquire(timeout=)` bounds waiting for a pooled connection (and the
reset on release), and a Trio deadline of `call_timeout` wraps the whole
operation. When that deadline cancels an operation, trio-asyncio cancels the
asyncio task and waits for it: the transaction rolls back, asyncpg cancels the
running query on the server and resets the connection before it goes back to
the pool (or terminates it) — a cancelled call never leaves half a change
behind and never poisons a pooled connection. Dead connections are replaced
by the pool on the next acquire, so the store reconnects on its own when the
database comes back.

Needs a trio-asyncio loop (`trio_asyncio.open_loop()`) around its use. It
talks to another process over a socket, so it never runs under the mock clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
import attrs
import trio
import trio_asyncio
import triopg

from adapters import migrations, schema_check
from adapters.db_url import redact, scrub
from adapters.records import (
    EVENTS,
    HANDLED,
    ORDERS,
    OUTCOMES,
    POSITIONS,
    SETTING_DELETE,
    SETTING_GET,
    SETTING_PUT,
    TRAILING,
    WAVES,
    Table,
    events_query,
    migrated,
    q,
    write_plan,
)
from engine.errors import StorageError
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
from engine.ports import Record

T = TypeVar("T")

MIGRATIONS = migrations.load("postgresql")
SCHEMA_VERSION = MIGRATIONS[-1][0]
# Serialises concurrent migrations of one database (two engines starting at once).
_MIGRATION_LOCK = 7_203_410_077_142_981_001

_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


class PostgresStore:
    """Durable engine state in PostgreSQL; see the module docstring for the bounds."""

    def __init__(self, url: str, *, call_timeout: float = 10.0, pool_size: int = 10,
                 read_only: bool = False) -> None:
        self.url = url
        self.safe_url = redact(url)
        self.call_timeout = call_timeout
        self.pool_size = pool_size
        self.read_only = read_only
        self._pool: Any = None
        self._raw: asyncpg.Pool | None = None

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

    async def _connect(self) -> None:
        settings = {"default_transaction_read_only": "on"} if self.read_only else None
        pool = triopg.create_pool(dsn=self.url, min_size=1, max_size=self.pool_size,
                                  command_timeout=self.call_timeout, timeout=self.call_timeout,
                                  server_settings=settings)
        try:
            with trio.fail_after(self.call_timeout):
                await pool.__aenter__()
        except trio.TooSlowError:
            raise StorageError(f"postgresql: no answer from {self.safe_url} within {self.call_timeout:g}s") from None
        except (*_FAILURES, ValueError) as exc:
            raise StorageError(f"postgresql: cannot connect to {self.safe_url}: {self._clean(exc)}") from None
        self._pool = pool
        self._raw = pool._asyncpg_pool  # the single-crossing operations below run on it directly

    def _clean(self, exc: BaseException) -> str:
        """An error's text without any secret of the URL (asyncpg may echo the DSN)."""
        return scrub(str(exc) or type(exc).__name__, self.url)

    async def _run(self, what: str, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`body` in one transaction, in one trio-asyncio crossing, bounded by `call_timeout`."""
        raw = self._raw
        if raw is None:
            raise StorageError(f"postgresql: {what} on a closed store")
        timeout = self.call_timeout

        async def operation() -> T:
            async with raw.acquire(timeout=timeout) as conn, conn.transaction():
                return await body(conn)

        try:
            with trio.fail_after(timeout):
                result: T = await trio_asyncio.aio_as_trio(operation)()
                return result
        except trio.TooSlowError:
            raise StorageError(f"postgresql: {what} did not answer within {timeout:g}s") from None
        except _FAILURES as exc:
            raise StorageError(f"postgresql: {what} failed: {self._clean(exc)}") from None

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
            known = await _handled(conn, list(claims))
            fresh = [HANDLED.encode(HandledSignal(sid, wave.id, rank, wave.started_at))
                     for sid, rank in claims.items() if sid not in known]
            if fresh:
                await conn.executemany(HANDLED.insert("postgresql", ignore_duplicates=True), fresh)
            return {sid: h for sid, h in known.items() if h.wave_id != wave.id}

        return await self._run(f"claim_signals({wave.id})", body)

    # --- reads ---

    async def handled_signals(self, signal_ids: Sequence[str]) -> dict[str, HandledSignal]:
        async def body(conn: asyncpg.Connection) -> dict[str, HandledSignal]:
            return await _handled(conn, list(signal_ids))

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

    async def put_setting(self, key: str, value: str | None) -> None:
        async def body(conn: asyncpg.Connection) -> None:
            if value is None:
                await conn.execute(SETTING_DELETE["postgresql"], key)
            else:
                await conn.execute(SETTING_PUT["postgresql"], key, value, time.time())

        await self._run("put_setting", body)

    async def aclose(self) -> None:
        pool, self._pool, self._raw = self._pool, None, None
        if pool is not None:
            closed = False
            with trio.move_on_after(self.call_timeout, shield=True):
                try:
                    await pool.close()  # graceful: waits for connections in use
                    closed = True
                except (*_FAILURES, asyncio.CancelledError):
                    pass
            if not closed:
                pool.terminate()


async def _handled(conn: asyncpg.Connection, signal_ids: list[str]) -> dict[str, HandledSignal]:
    if not signal_ids:
        return {}
    rows = await conn.fetch(f"{HANDLED.select()} WHERE signal_id = ANY($1::text[])", signal_ids)
    found = (HANDLED.decode(tuple(row)) for row in rows)
    return {h.signal_id: h for h in found}


class _NewerSchema(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


class _Duplicate(Exception):
    pass

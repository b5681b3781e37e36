"""SQLite implementation of the `Storage` port (stdlib `sqlite3`).

Why the queries run on the Trio thread: the simulation runs under
`MockClock(autojump_threshold=0)` (DESIGN.md invariant 8). Handing a query to a
worker thread would make every task look idle, and the clock would jump while
the thread works. Local SQLite statements take microseconds, so each async
method first yields one checkpoint (so it is a proper cancellation point) and
then runs its whole transaction synchronously — a transaction is therefore
never left half-done by a cancellation.

Bounding a synchronous call cannot use Trio deadlines, so SQLite's own
mechanisms do it: the busy timeout (`timeout=` on connect) bounds waiting for
another process's lock, and a progress handler aborts a statement that has run
for longer than `call_timeout` of real time. Real time is right here: it bounds
CPU work, not scheduling.

No foreign keys between tables, on purpose: the state writer retries a failed
batch until it lands, so a record that arrives before the row it refers to
(possible after an injected storage fault) must not turn into a batch that can
never be written.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from adapters import migrations, schema_check
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
from engine.checks import finite
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

MEMORY = ":memory:"
URL_PREFIX = "sqlite:///"

# How many SQLite VM instructions run between two looks at the clock: often
# enough to stop a runaway statement promptly, rare enough to cost nothing.
_PROGRESS_EVERY = 1000

MIGRATIONS = migrations.load("sqlite")
SCHEMA_VERSION = MIGRATIONS[-1][0]


def sqlite_path(url: str) -> str:
    """The file path in a `sqlite:///PATH` URL (`sqlite:////abs/path` is absolute, as in SQLAlchemy)."""
    if not url.startswith(URL_PREFIX) or not url.removeprefix(URL_PREFIX):
        raise ValueError(f"{url!r} is not a URL like sqlite:///trio-bot.db or sqlite:///:memory:")
    return url.removeprefix(URL_PREFIX)


class SQLiteStore:
    """Durable engine state in one SQLite file (or in memory, for simulations and tests)."""

    def __init__(self, path: str, *, call_timeout: float = 10.0, read_only: bool = False,
                 immutable: bool = False) -> None:
        if not (finite(call_timeout) is not None and call_timeout > 0):
            raise ValueError(f"call_timeout must be a positive number of seconds, not {call_timeout!r}")
        self.path = path
        self.call_timeout = call_timeout
        self.read_only = read_only
        self._deadline = math.inf
        conn = self._connect(path, read_only=read_only, immutable=immutable)
        self._conn: sqlite3.Connection | None = conn
        conn.set_progress_handler(self._over_time, _PROGRESS_EVERY)
        try:
            if path not in (MEMORY, "") and not read_only:
                # Readers (a report, a second process) then never block the writer.
                conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            conn.close()
            self._conn = None
            raise StorageError(f"sqlite: cannot use {path!r}: {exc}") from None

    def _connect(self, path: str, *, read_only: bool, immutable: bool) -> sqlite3.Connection:
        try:
            if not read_only or path in (MEMORY, ""):
                return sqlite3.connect(path, timeout=self.call_timeout, isolation_level=None)
            if not Path(path).is_file():
                raise StorageError(f"sqlite: no database at {path!r} (nothing has run with this --db yet)")
            # Read-only: never creates, migrates or locks for writing; a short busy timeout, since
            # in WAL mode a reader never waits behind a writer anyway.
            uri = Path(path).absolute().as_uri() + ("?immutable=1" if immutable else "?mode=ro")
            return sqlite3.connect(uri, uri=True, timeout=min(self.call_timeout, 1.0), isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: cannot open {path!r}: {exc}") from None

    @classmethod
    async def open(cls, path: str, *, call_timeout: float = 10.0) -> SQLiteStore:
        """Connect and bring the schema up to date: the usual way to get a store."""
        return await migrated(cls(path, call_timeout=call_timeout))

    @classmethod
    async def open_read_only(cls, path: str, *, call_timeout: float = 10.0) -> SQLiteStore:
        """Connect for reading only (`waves`, `positions`, `events`): never migrates, never takes
        the write lock, and says clearly when the schema is older or newer than this code."""
        store = cls(path, call_timeout=call_timeout, read_only=True)
        try:
            await store.check_schema()
            return store
        except StorageError as exc:
            await store.aclose()
            # A WAL database in a directory we may not write to cannot set up its shared-memory
            # file; read it as an immutable file instead (a snapshot, which is what a report is).
            if "unable to open" not in str(exc) and "readonly" not in str(exc):
                raise
        except BaseException:
            await store.aclose()
            raise
        store = cls(path, call_timeout=call_timeout, read_only=True, immutable=True)
        try:
            await store.check_schema()
        except BaseException:
            await store.aclose()
            raise
        return store

    @classmethod
    async def from_url(cls, url: str, *, call_timeout: float = 10.0) -> SQLiteStore:
        return await cls.open(sqlite_path(url), call_timeout=call_timeout)

    # --- the one way every call touches the database ---

    def _over_time(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    async def _transaction(self, what: str, body: Callable[[sqlite3.Connection], T], *,
                           write: bool = False) -> T:
        """Run `body` as one transaction, bounded by `call_timeout`, with errors made `StorageError`.

        Reads get a transaction too, so a multi-query read sees one snapshot.
        Writes take the write lock up front (IMMEDIATE): a read transaction
        upgraded later can fail with "database is locked" without waiting for
        the busy timeout.
        """
        await trio.lowlevel.checkpoint()
        conn = self._conn
        if conn is None:
            raise StorageError(f"sqlite: {what} on a closed store")
        self._deadline = time.monotonic() + self.call_timeout
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            result = body(conn)
            conn.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            self._rollback(conn)
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT:
                raise StorageError(f"sqlite: {what} ran longer than {self.call_timeout:g}s") from None
            raise StorageError(f"sqlite: {what} failed: {exc}") from None
        except BaseException:
            self._rollback(conn)
            raise
        finally:
            self._deadline = math.inf

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            # If this fails SQLite has already rolled back (e.g. after SQLITE_FULL).
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    # --- schema ---

    async def migrate(self) -> None:
        """Apply the migrations this database lacks; safe to run any number of times."""

        def body(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
            current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise _NewerSchema(current)
            for version, sql in MIGRATIONS:
                if version > current:
                    for statement in migrations.statements(sql):
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

        try:
            await self._transaction("migrate", body, write=True)
        except _NewerSchema as exc:
            raise StorageError(
                f"sqlite: {self.path!r} has schema version {exc.version}, newer than this trio-bot "
                f"knows ({SCHEMA_VERSION}); upgrade trio-bot or use another database") from None

    async def schema_version(self) -> int:
        """The newest migration recorded; 0 for a database trio-bot never set up."""
        def body(conn: sqlite3.Connection) -> int:
            if "schema_version" not in _tables(conn):
                return 0
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
            return int(row[0])

        return await self._transaction("schema_version", body)

    async def schema_problems(self) -> list[str]:
        """Tables or columns the stores need and the database lacks (empty when all is well)."""
        def body(conn: sqlite3.Connection) -> list[str]:
            found = {table: {row[1] for row in conn.execute(f"PRAGMA table_info({q(table)})")}
                     for table in _tables(conn)}
            return schema_check.problems(found)

        return await self._transaction("schema_problems", body)

    async def verify_schema(self) -> int:
        """The schema version, after checking the tables really match it (`db migrate` reports it)."""
        version = await self.schema_version()
        missing = await self.schema_problems()
        if missing:
            raise StorageError("sqlite: " + schema_check.describe(repr(self.path), version, missing))
        return version

    async def check_schema(self) -> None:
        """For read-only use: the schema must be exactly the one this code knows."""
        version = await self.schema_version()
        if version < SCHEMA_VERSION:
            raise StorageError(
                f"sqlite: {self.path!r} has schema version {version}, older than this trio-bot's "
                f"({SCHEMA_VERSION}): run `trio-bot db migrate` on it first")
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"sqlite: {self.path!r} has schema version {version}, newer than this trio-bot knows "
                f"({SCHEMA_VERSION}); upgrade trio-bot to read it")
        await self.verify_schema()

    # --- writes ---

    async def record_intent(self, position: Position, entry: OrderRecord) -> None:
        def body(conn: sqlite3.Connection) -> None:
            # Plain inserts: an intent is new by definition, and overwriting an
            # existing row would hide the bug (or the retry) that produced it.
            _insert_new(conn, POSITIONS, position, f"position {position.id}")
            _insert_new(conn, ORDERS, entry, f"order {entry.client_order_id!r}")

        await self._transaction(f"record_intent(position {position.id})", body, write=True)

    async def write(self, records: Sequence[Record]) -> None:
        """One transaction for the batch; a record of an unknown type rolls it all back (TypeError)."""
        batch = list(records)

        plan = write_plan("sqlite", batch)  # a TypeError here stores nothing

        def body(conn: sqlite3.Connection) -> None:
            for sql, rows in plan:
                conn.executemany(sql, rows)

        await self._transaction(f"write({len(batch)} records)", body, write=True)

    async def claim_signals(self, wave: WaveRecord, claims: Mapping[str, int], *,
                            forget_before: float | None = None) -> dict[str, HandledSignal]:
        def body(conn: sqlite3.Connection) -> dict[str, HandledSignal]:
            if forget_before is not None:
                conn.execute("DELETE FROM handled_signals WHERE handled_at < ?", (forget_before,))
            conn.execute(WAVES.upsert("sqlite"), WAVES.encode(wave))
            known = _handled(conn, claims)
            conn.executemany(HANDLED.insert("sqlite"), [
                HANDLED.encode(HandledSignal(sid, wave.id, rank, wave.started_at))
                for sid, rank in claims.items() if sid not in known])
            return {sid: h for sid, h in known.items() if h.wave_id != wave.id}

        return await self._transaction(f"claim_signals({wave.id})", body, write=True)

    # --- reads ---

    async def handled_signals(self, signal_ids: Sequence[str]) -> dict[str, HandledSignal]:
        return await self._transaction("handled_signals", lambda conn: _handled(conn, signal_ids))

    async def wave_claims(self, wave_id: str) -> list[HandledSignal]:
        sql = f"{HANDLED.select()} WHERE wave_id = ? ORDER BY rank"
        return await self._transaction("wave_claims", lambda conn: _all(conn, HANDLED, sql, (wave_id,)))

    async def unfinished_waves(self) -> list[WaveRecord]:
        def body(conn: sqlite3.Connection) -> list[WaveRecord]:
            waves = _all(conn, WAVES, f"{WAVES.select()} WHERE duration IS NULL ORDER BY seq", ())
            sql = f"{OUTCOMES.select()} WHERE wave_id = ? ORDER BY rank, signal_id"
            return [attrs.evolve(w, outcomes=tuple(_all(conn, OUTCOMES, sql, (w.id,)))) for w in waves]

        return await self._transaction("unfinished_waves", body)

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

    async def put_setting(self, key: str, value: str | None) -> None:
        def body(conn: sqlite3.Connection) -> None:
            if value is None:
                conn.execute(SETTING_DELETE["sqlite"], (key,))
            else:
                conn.execute(SETTING_PUT["sqlite"], (key, value, time.time()))

        await self._transaction("put_setting", body, write=True)

    async def aclose(self) -> None:
        """Close first, then checkpoint: a cancelled close must still release the file."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:
                raise StorageError(f"sqlite: closing {self.path!r} failed: {exc}") from None
        await trio.lowlevel.checkpoint()


class _NewerSchema(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _all(conn: sqlite3.Connection, table: Table[T], sql: str, args: Iterable[object]) -> list[T]:
    return [table.decode(row) for row in conn.execute(sql, tuple(args))]


def _handled(conn: sqlite3.Connection, signal_ids: Iterable[str]) -> dict[str, HandledSignal]:
    # One indexed look-up per id: a wave holds tens of ids, and no parameter limit applies.
    sql = f"{HANDLED.select()} WHERE signal_id = ?"
    found: dict[str, HandledSignal] = {}
    for sid in dict.fromkeys(signal_ids):
        for row in conn.execute(sql, (sid,)):
            found[sid] = HANDLED.decode(row)
    return found


def _insert_new(conn: sqlite3.Connection, table: Table[Any], record: object, what: str) -> None:
    try:
        conn.execute(table.insert("sqlite"), table.encode(record))
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" not in str(exc):
            raise
        raise StorageError(f"sqlite: {what} already exists") from None

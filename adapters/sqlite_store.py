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
from enum import Enum
from typing import Any, Generic, TypeVar

import attrs
import trio

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

T = TypeVar("T")

MEMORY = ":memory:"
URL_PREFIX = "sqlite:///"

# How many SQLite VM instructions run between two looks at the clock: often
# enough to stop a runaway statement promptly, rare enough to cost nothing.
_PROGRESS_EVERY = 1000

# Ordered, append-only: a released version is never edited, only followed.
# Each entry is one version's statements, run in the migration's transaction
# (statements one by one: `executescript` would commit behind our back).
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (
        """CREATE TABLE positions (
            id INTEGER PRIMARY KEY,
            signal_id TEXT NOT NULL,
            wave_id TEXT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            status TEXT NOT NULL,
            quantity REAL NOT NULL,
            entry_client_id TEXT NOT NULL,
            entry_price REAL,
            stop_price REAL,
            stop_client_id TEXT,
            exit_price REAL,
            exit_reason TEXT,
            realized_pnl REAL,
            trailing TEXT NOT NULL,
            opened_at REAL,
            closed_at REAL
        )""",
        "CREATE INDEX positions_status ON positions (status)",
        """CREATE TABLE orders (
            client_order_id TEXT PRIMARY KEY,
            position_id INTEGER NOT NULL,
            symbol TEXT NOT NULL,
            kind TEXT NOT NULL,
            side TEXT NOT NULL,
            quantity REAL NOT NULL,
            status TEXT NOT NULL,
            stop_price REAL,
            fill_price REAL,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX orders_position ON orders (position_id)",
        """CREATE TABLE trailing (
            position_id INTEGER PRIMARY KEY,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            entry_price REAL NOT NULL,
            activation_price REAL NOT NULL,
            callback_percent REAL NOT NULL,
            state TEXT NOT NULL,
            best_price REAL NOT NULL,
            stop_price REAL NOT NULL,
            stop_client_id TEXT,
            updated_at REAL NOT NULL
        )""",
        # `seq` keeps the order waves were first stored in: engine time (`at`)
        # restarts with every process, so it cannot order waves across runs.
        """CREATE TABLE waves (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            at REAL NOT NULL,
            started_at REAL NOT NULL,
            duration REAL
        )""",
        # `rank` is in the key: a wave may carry the same signal id twice (the
        # copies are rejected, but each still gets its own outcome).
        """CREATE TABLE signal_outcomes (
            wave_id TEXT NOT NULL,
            signal_id TEXT NOT NULL,
            rank INTEGER NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            outcome TEXT NOT NULL,
            reason TEXT,
            position_id INTEGER,
            trailing TEXT NOT NULL,
            score REAL,
            PRIMARY KEY (wave_id, signal_id, rank)
        )""",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            wave_id TEXT,
            signal_id TEXT,
            position_id INTEGER,
            detail TEXT NOT NULL,
            uid TEXT NOT NULL
        )""",
        # A retried batch (after a lost answer) must not log its events twice.
        "CREATE UNIQUE INDEX events_uid ON events (uid) WHERE uid != ''",
        "CREATE INDEX events_position ON events (position_id)",
        "CREATE INDEX events_signal ON events (signal_id)",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def sqlite_path(url: str) -> str:
    """The file path in a `sqlite:///PATH` URL (`sqlite:////abs/path` is absolute, as in SQLAlchemy)."""
    if not url.startswith(URL_PREFIX) or not url.removeprefix(URL_PREFIX):
        raise ValueError(f"{url!r} is not a URL like sqlite:///trio-bot.db or sqlite:///:memory:")
    return url.removeprefix(URL_PREFIX)


@attrs.frozen
class _Table(Generic[T]):
    """How one record type maps to one table; columns named as the attrs fields.

    `extra` columns precede the record's own (the wave id of an outcome); they
    are written from the caller's values and dropped when reading back.
    """

    name: str
    cls: Callable[..., T]
    fields: tuple[str, ...]
    key: tuple[str, ...]
    enums: Mapping[str, type[Enum]] = attrs.field(factory=dict)
    extra: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.extra + self.fields

    def select(self) -> str:
        return f"SELECT {', '.join(self.fields)} FROM {self.name}"

    def upsert(self) -> str:
        cols = self.columns
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in self.key)
        return (f"INSERT INTO {self.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {updates}")

    def insert(self) -> str:
        cols = self.columns
        return f"INSERT INTO {self.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

    def encode(self, record: Any, *extra: object) -> tuple[object, ...]:
        values = (getattr(record, f) for f in self.fields)
        return (*extra, *(v.value if isinstance(v, Enum) else v for v in values))

    def decode(self, row: Sequence[Any]) -> T:
        values = dict(zip(self.fields, row, strict=True))
        try:
            for name, enum in self.enums.items():
                if values[name] is not None:
                    values[name] = enum(values[name])
            return self.cls(**values)
        except (ValueError, TypeError) as exc:
            raise StorageError(f"sqlite: unreadable row in {self.name}: {exc}") from None


def _fields(cls: type, *, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(f.name for f in attrs.fields(cls) if f.name not in without)


_POSITIONS = _Table("positions", Position, _fields(Position), ("id",), {
    "side": Side, "status": PositionStatus, "exit_reason": ExitReason, "trailing": TrailingStatus})
_ORDERS = _Table("orders", OrderRecord, _fields(OrderRecord), ("client_order_id",), {
    "kind": OrderKind, "side": OrderSide, "status": OrderStatus})
_TRAILING = _Table("trailing", TrailingRecord, _fields(TrailingRecord), ("position_id",), {"side": Side})
_WAVES = _Table("waves", WaveRecord, _fields(WaveRecord, without=("outcomes",)), ("id",))
_OUTCOMES = _Table("signal_outcomes", SignalOutcome, _fields(SignalOutcome), ("wave_id", "signal_id", "rank"),
                   {"outcome": Outcome, "trailing": TrailingStatus}, extra=("wave_id",))
_EVENTS = _Table("events", Event, _fields(Event), ("seq",))


class SQLiteStore:
    """Durable engine state in one SQLite file (or in memory, for simulations and tests)."""

    def __init__(self, path: str, *, call_timeout: float = 10.0) -> None:
        if not (call_timeout > 0 and math.isfinite(call_timeout)):
            raise ValueError(f"call_timeout must be a positive number of seconds, not {call_timeout!r}")
        self.path = path
        self.call_timeout = call_timeout
        self._deadline = math.inf
        try:
            conn = sqlite3.connect(path, timeout=call_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: cannot open {path!r}: {exc}") from None
        self._conn: sqlite3.Connection | None = conn
        conn.set_progress_handler(self._over_time, _PROGRESS_EVERY)
        try:
            if path not in (MEMORY, ""):
                # Readers (a report, a second process) then never block the writer.
                conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            conn.close()
            self._conn = None
            raise StorageError(f"sqlite: cannot use {path!r}: {exc}") from None

    @classmethod
    async def open(cls, path: str, *, call_timeout: float = 10.0) -> SQLiteStore:
        """Connect and bring the schema up to date: the usual way to get a store."""
        store = cls(path, call_timeout=call_timeout)
        try:
            await store.migrate()
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
            for version, statements in MIGRATIONS:
                if version > current:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

        try:
            await self._transaction("migrate", body, write=True)
        except _NewerSchema as exc:
            raise StorageError(
                f"sqlite: {self.path!r} has schema version {exc.version}, newer than this trio-bot "
                f"knows ({SCHEMA_VERSION}); upgrade trio-bot or use another database") from None

    async def schema_version(self) -> int:
        def body(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
            return int(row[0])

        return await self._transaction("schema_version", body)

    # --- writes ---

    async def record_intent(self, position: Position, entry: OrderRecord) -> None:
        def body(conn: sqlite3.Connection) -> None:
            # Plain inserts: an intent is new by definition, and overwriting an
            # existing row would hide the bug (or the retry) that produced it.
            _insert_new(conn, _POSITIONS, position, f"position {position.id}")
            _insert_new(conn, _ORDERS, entry, f"order {entry.client_order_id!r}")

        await self._transaction(f"record_intent(position {position.id})", body, write=True)

    async def write(self, records: Sequence[Record]) -> None:
        """One transaction for the batch; a record of an unknown type rolls it all back (TypeError)."""
        batch = list(records)

        def body(conn: sqlite3.Connection) -> None:
            for record in batch:
                _write_one(conn, record)

        await self._transaction(f"write({len(batch)} records)", body, write=True)

    # --- reads ---

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
        sql = f"{_POSITIONS.select()}{where} ORDER BY id"
        return await self._transaction("positions", lambda conn: _all(conn, _POSITIONS, sql, args))

    async def position(self, position_id: int) -> Position | None:
        sql = f"{_POSITIONS.select()} WHERE id = ?"
        found = await self._transaction("position", lambda conn: _all(conn, _POSITIONS, sql, (position_id,)))
        return found[0] if found else None

    async def orders(self, position_id: int) -> list[OrderRecord]:
        # updated_at first, then rowid: the order the engine stored them in, even
        # when two share a timestamp.
        sql = f"{_ORDERS.select()} WHERE position_id = ? ORDER BY updated_at, rowid"
        return await self._transaction("orders", lambda conn: _all(conn, _ORDERS, sql, (position_id,)))

    async def trailing(self, position_id: int) -> TrailingRecord | None:
        sql = f"{_TRAILING.select()} WHERE position_id = ?"
        found = await self._transaction("trailing", lambda conn: _all(conn, _TRAILING, sql, (position_id,)))
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
            waves = _all(conn, _WAVES, f"{_WAVES.select()} WHERE seq >= ? ORDER BY seq", (first_seq,))
            outcomes: dict[str, list[SignalOutcome]] = {w.id: [] for w in waves}
            cols = ", ".join(f"o.{c}" for c in _OUTCOMES.columns)
            rows = conn.execute(
                f"SELECT {cols} FROM signal_outcomes o JOIN waves w ON w.id = o.wave_id "
                "WHERE w.seq >= ? ORDER BY o.wave_id, o.rank, o.signal_id", (first_seq,))
            for wave_id, *rest in rows:
                outcomes[wave_id].append(_OUTCOMES.decode(rest))
            return [attrs.evolve(w, outcomes=tuple(outcomes[w.id])) for w in waves]

        return await self._transaction("waves", body)

    async def events(self, *, position_id: int | None = None,
                     signal_id: str | None = None) -> list[Event]:
        conditions: list[str] = []
        args: list[object] = []
        if position_id is not None:
            conditions.append("position_id = ?")
            args.append(position_id)
        if signal_id is not None:
            conditions.append("signal_id = ?")
            args.append(signal_id)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"{_EVENTS.select()}{where} ORDER BY seq"
        return await self._transaction("events", lambda conn: _all(conn, _EVENTS, sql, args))

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


def _all(conn: sqlite3.Connection, table: _Table[T], sql: str, args: Iterable[object]) -> list[T]:
    return [table.decode(row) for row in conn.execute(sql, tuple(args))]


def _insert_new(conn: sqlite3.Connection, table: _Table[Any], record: object, what: str) -> None:
    try:
        conn.execute(table.insert(), table.encode(record))
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" not in str(exc):
            raise
        raise StorageError(f"sqlite: {what} already exists") from None


def _write_one(conn: sqlite3.Connection, record: object) -> None:
    if isinstance(record, Position):
        conn.execute(_POSITIONS.upsert(), _POSITIONS.encode(record))
    elif isinstance(record, OrderRecord):
        conn.execute(_ORDERS.upsert(), _ORDERS.encode(record))
    elif isinstance(record, TrailingRecord):
        conn.execute(_TRAILING.upsert(), _TRAILING.encode(record))
    elif isinstance(record, WaveRecord):
        # Outcomes are upserted, never replaced wholesale: a wave stored with
        # the outcomes known so far keeps those its children stored since.
        conn.execute(_WAVES.upsert(), _WAVES.encode(record))
        conn.executemany(_OUTCOMES.upsert(), [_OUTCOMES.encode(o, record.id) for o in record.outcomes])
    elif isinstance(record, WaveOutcome):
        conn.execute(_OUTCOMES.upsert(), _OUTCOMES.encode(record.outcome, record.wave_id))
    elif isinstance(record, Event):
        conn.execute(_EVENTS.insert().replace("INSERT", "INSERT OR IGNORE", 1), _EVENTS.encode(record))
    elif isinstance(record, SignalOutcome):
        raise TypeError("a SignalOutcome needs its wave: write it as WaveOutcome(wave_id, outcome)")
    else:
        raise TypeError(f"cannot store a {type(record).__name__}")

"""The SQLite connection under `SQLiteStore`: opening, bounded transactions, schema.

Split from the store so that the rules for touching the database live in one
place, apart from what is read and written.

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
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

from adapters import migrations, schema_check
from adapters.records import (
    q,
)
from engine.checks import finite
from engine.errors import StorageError

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


class SQLiteConnection:
    """One SQLite connection: every query goes through `_transaction`, bounded and all-or-nothing."""

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



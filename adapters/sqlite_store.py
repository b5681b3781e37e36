"""SQLite implementation of the `Storage` port (stdlib `sqlite3`).

The store is three layers, each a module: `sqlite_connection` (opening,
bounded transactions, schema and why queries run on the Trio thread),
`sqlite_reads` (the queries) and this module (how a store is opened, and
the writes).

No foreign keys between tables, on purpose: the state writer retries a failed
batch until it lands, so a record that arrives before the row it refers to
(possible after an injected storage fault) must not turn into a batch that can
never be written.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.records import (
    HANDLED,
    ORDERS,
    POSITIONS,
    SETTING_DELETE,
    SETTING_PUT,
    WAVES,
    Table,
    migrated,
    write_plan,
)
from adapters.sqlite_connection import (
    MEMORY,
    MIGRATIONS,
    SCHEMA_VERSION,
    URL_PREFIX,
    sqlite_path,
)
from adapters.sqlite_reads import SQLiteReads, find_handled
from engine.errors import StorageError
from engine.model import (
    HandledSignal,
    OrderRecord,
    Position,
    WaveRecord,
)
from engine.ports import Record

__all__ = ["MEMORY", "MIGRATIONS", "SCHEMA_VERSION", "URL_PREFIX", "SQLiteStore", "sqlite_path"]


class SQLiteStore(SQLiteReads):
    """Durable engine state in one SQLite file (or in memory, for simulations and tests)."""

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
            known = find_handled(conn, claims)
            conn.executemany(HANDLED.insert("sqlite"), [
                HANDLED.encode(HandledSignal(sid, wave.id, rank, wave.started_at))
                for sid, rank in claims.items() if sid not in known])
            return {sid: h for sid, h in known.items() if h.wave_id != wave.id}

        return await self._transaction(f"claim_signals({wave.id})", body, write=True)
    async def put_setting(self, key: str, value: str | None) -> None:
        def body(conn: sqlite3.Connection) -> None:
            if value is None:
                conn.execute(SETTING_DELETE["sqlite"], (key,))
            else:
                conn.execute(SETTING_PUT["sqlite"], (key, value, time.time()))

        await self._transaction("put_setting", body, write=True)


def _insert_new(conn: sqlite3.Connection, table: Table[Any], record: object, what: str) -> None:
    try:
        conn.execute(table.insert("sqlite"), table.encode(record))
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" not in str(exc):
            raise
        raise StorageError(f"sqlite: {what} already exists") from None

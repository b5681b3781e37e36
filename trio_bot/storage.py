"""Storage selection by URL (`--db`), and the account lease that goes with it."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from adapters.db_url import parse_db_url
from adapters.leases import file_lease, postgres_lease
from adapters.postgres_store import PostgresStore
from adapters.sqlite_store import SQLiteStore

DEFAULT_DB = "sqlite:///trio-bot.db"


async def open_storage(url: str, *, call_timeout: float) -> SQLiteStore | PostgresStore:
    """Open and migrate the store at `url`. PostgreSQL needs the program's trio-asyncio loop."""
    parsed = parse_db_url(url)
    if parsed.path is None:
        return await PostgresStore.open(url, call_timeout=call_timeout)
    return await SQLiteStore.open(parsed.path, call_timeout=call_timeout)


async def open_storage_read_only(url: str, *, call_timeout: float) -> SQLiteStore | PostgresStore:
    """Open the store at `url` for reading (`waves`, `positions`, `events`): no migration, no write
    lock, and a clear error for a schema older or newer than this code."""
    parsed = parse_db_url(url)
    if parsed.path is None:
        return await PostgresStore.open_read_only(url, call_timeout=call_timeout)
    return await SQLiteStore.open_read_only(parsed.path, call_timeout=call_timeout)


def account_lease(url: str, account: str, *, standby: bool) -> AbstractAsyncContextManager[None]:
    """The one-instance-per-account lease that goes with the store at `url`."""
    parsed = parse_db_url(url)
    if parsed.path is None:
        return postgres_lease(url, account, standby=standby)
    return file_lease(parsed.path, account, standby=standby)

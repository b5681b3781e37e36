"""Storage selection by URL (`--db`), and the account lease that goes with it."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from adapters.leases import file_lease, postgres_lease
from adapters.postgres_store import PostgresStore, redact
from adapters.sqlite_store import SQLiteStore, sqlite_path
from engine.errors import ConfigError
from engine.ports import Storage

DEFAULT_DB = "sqlite:///trio-bot.db"


def _sqlite_path(url: str) -> str | None:
    """The SQLite path of `url`, None for PostgreSQL; anything else is a ConfigError."""
    if url.startswith(("postgresql://", "postgres://")):
        return None
    try:
        return sqlite_path(url)
    except ValueError:
        raise ConfigError("--db", redact(url),
                          "a URL like sqlite:///trio-bot.db or postgresql://user@host:5432/dbname") from None


async def open_storage(url: str, *, call_timeout: float) -> Storage:
    """Open and migrate the store at `url`. PostgreSQL needs the program's trio-asyncio loop."""
    path = _sqlite_path(url)
    if path is None:
        return await PostgresStore.open(url, call_timeout=call_timeout)
    return await SQLiteStore.open(path, call_timeout=call_timeout)


def account_lease(url: str, account: str, *, standby: bool) -> AbstractAsyncContextManager[None]:
    """The one-instance-per-account lease that goes with the store at `url`."""
    path = _sqlite_path(url)
    if path is None:
        return postgres_lease(url, account, standby=standby)
    return file_lease(path, account, standby=standby)

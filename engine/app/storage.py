"""Storage selection by URL (`--db`)."""

from __future__ import annotations

from adapters.sqlite_store import SQLiteStore
from engine.errors import ConfigError
from engine.ports import Storage

DEFAULT_DB = "sqlite:///trio-bot.db"


async def open_storage(url: str, *, call_timeout: float) -> Storage:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path:
            raise ConfigError("--db", url, "sqlite:///PATH (a file path, or :memory:)")
        return await SQLiteStore.open(path, call_timeout=call_timeout)
    if url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("--db", url.split("@")[-1], "sqlite:///PATH; PostgreSQL support is not built yet")
    raise ConfigError("--db", url, "a URL like sqlite:///trio-bot.db")

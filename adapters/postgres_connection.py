"""The PostgreSQL store's connection: triopg's pool on trio-asyncio, one crossing per operation.

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
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import trio
import trio_asyncio
import triopg

from adapters.db_url import redact, scrub
from engine.errors import StorageError

T = TypeVar("T")

FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


class PostgresConnection:
    """The pool and the bounded, single-crossing transaction every query runs in."""

    def __init__(self, url: str, *, call_timeout: float = 10.0, pool_size: int = 10,
                 read_only: bool = False) -> None:
        self.url = url
        self.safe_url = redact(url)
        self.call_timeout = call_timeout
        self.pool_size = pool_size
        self.read_only = read_only
        self._pool: Any = None
        self._raw: asyncpg.Pool | None = None

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
        except (*FAILURES, ValueError) as exc:
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
        except FAILURES as exc:
            raise StorageError(f"postgresql: {what} failed: {self._clean(exc)}") from None

    async def aclose(self) -> None:
        pool, self._pool, self._raw = self._pool, None, None
        if pool is not None:
            closed = False
            with trio.move_on_after(self.call_timeout, shield=True):
                try:
                    await pool.close()  # graceful: waits for connections in use
                    closed = True
                except (*FAILURES, asyncio.CancelledError):
                    pass
            if not closed:
                pool.terminate()

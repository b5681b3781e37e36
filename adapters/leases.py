"""One running instance per exchange account: a lease held for the engine's lifetime.

PostgreSQL: a session-level advisory lock, keyed by the account, on a dedicated
connection. The server releases it when that connection dies, so a crashed
instance never blocks its successor. The holder checks the connection every
`check_interval` seconds; if it is lost the lease is lost, and the code inside
`hold()` is cancelled — an instance that might no longer be the only one stops
trading.

SQLite: an exclusive `flock` on a lock file next to the database, released by
the operating system when the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import triopg

from adapters.db_url import redact
from engine.errors import ConfigError, TrioBotError

log = logging.getLogger("trio_bot.lease")


class LeaseHeld(TrioBotError):
    """Another instance trades this account."""


class LeaseLost(TrioBotError):
    """The lease's connection died: this instance may no longer be the only one."""


def lease_key(account: str) -> int:
    """A stable signed 64-bit advisory-lock key for an account name."""
    return int.from_bytes(hashlib.blake2b(f"trio-bot:{account}".encode(), digest_size=8).digest(), "big",
                          signed=True)


@asynccontextmanager
async def postgres_lease(url: str, account: str, *, standby: bool = False, poll: float = 1.0,
                         check_interval: float = 5.0, call_timeout: float = 10.0) -> AsyncIterator[None]:
    key = lease_key(account)
    where = f"account {account!r} on {redact(url)}"
    conn: Any = triopg.connect(url)
    try:
        with trio.fail_after(call_timeout):
            await conn.__aenter__()
    except (trio.TooSlowError, OSError, Exception) as exc:
        raise TrioBotError(f"lease: cannot connect to {redact(url)}: {type(exc).__name__}") from None
    try:
        waiting_said = False
        while True:
            with trio.fail_after(call_timeout):
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                    break
            if not standby:
                raise LeaseHeld(f"another trio-bot instance is trading {where}; stop it first, "
                                "or start this one with --standby to take over when it stops")
            if not waiting_said:
                log.warning("standby: another instance trades %s; waiting to take over", where)
                waiting_said = True
            await trio.sleep(poll)
        log.info("lease taken: %s", where)
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                while True:
                    await trio.sleep(check_interval)
                    try:
                        with trio.fail_after(call_timeout):
                            await conn.fetchval("SELECT 1")
                    except Exception as exc:
                        raise LeaseLost(f"lease lost for {where} ({type(exc).__name__}): stopping") from None

            nursery.start_soon(watch)
            yield
            nursery.cancel_scope.cancel()
    finally:
        with trio.move_on_after(call_timeout, shield=True), contextlib.suppress(Exception):
            await conn.close()  # closing the session releases the advisory lock


@asynccontextmanager
async def file_lease(db_path: str, account: str, *, standby: bool = False,
                     poll: float = 1.0) -> AsyncIterator[None]:
    if db_path in ("", ":memory:"):
        yield  # nothing shared, nothing to guard
        return
    path = Path(f"{db_path}.{hashlib.blake2b(account.encode(), digest_size=4).hexdigest()}.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError("--db", db_path, f"a database in a directory trio-bot can write to (cannot create "
                          f"its lock file: {exc.strerror or type(exc).__name__})") from None
    try:
        waiting_said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not standby:
                    raise LeaseHeld(f"another trio-bot instance is trading account {account!r} on {db_path}; "
                                    "stop it first, or start this one with --standby") from None
                if not waiting_said:
                    log.warning("standby: another instance trades %r on %s; waiting", account, db_path)
                    waiting_said = True
                await trio.sleep(poll)
        yield
    finally:
        os.close(fd)  # releases the lock

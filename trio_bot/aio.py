"""The program's one trio-asyncio loop (asyncio libraries: asyncpg via triopg, ccxt)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio_asyncio

log = logging.getLogger("trio_bot.asyncio")


def _log_only(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """An error nobody awaited (a stray callback, a dropped connection) is logged, never fatal."""
    log.warning("asyncio: %s", context.get("message") or context.get("exception"))


@asynccontextmanager
async def asyncio_loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    async with trio_asyncio.open_loop() as loop:
        loop.set_exception_handler(_log_only)
        yield loop

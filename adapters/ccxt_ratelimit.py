"""Binance's 429 (too many requests) and 418 (IP banned) honoured by every call of the account.

Both come with `Retry-After`. Sending anything before it passes turns a 429 into a ban
and lengthens a ban (two minutes up to three days), and a ban blocks stops and closes
as well, so one answer stops the whole adapter, not just the call that got it:

* `install_retry_after(client)` makes ccxt's error for a 418/429 carry the header's
  value (ccxt drops response headers from its exceptions), and `retry_after_of` reads
  it back from the mapped error;
* `RateGate` holds every call of the adapter until the time is up; when it is, the
  protective calls (stops, closes, cancels) waiting for it go first and are answered
  before the rest go.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import trio
from ccxt.base import errors as ccxt_errors

DEFAULT_RETRY_AFTER = 60.0  # Binance always sends the header; this covers a proxy that drops it
_RETRY = re.compile(r"retry-after=(\d+(?:\.\d+)?)")


def install_retry_after(client: Any) -> None:
    """Wrap the client's error handler so a 418/429 error names its `Retry-After`."""
    original = client.handle_errors

    def handle_errors(code: int, reason: str, url: str, method: str, headers: Any, body: str, *rest: Any) -> Any:
        if code in (418, 429):
            found = {str(k).lower(): v for k, v in (headers or {}).items()}.get("retry-after")
            after = found if found and str(found).replace(".", "", 1).isdigit() else DEFAULT_RETRY_AFTER
            kind = "IP banned" if code == 418 else "rate limited"
            try:  # the exchange's words, without its JSON: the mapped message keeps retry-after
                said = str(json.loads(body).get("msg", ""))
            except (ValueError, TypeError, AttributeError):
                said = str(body)[:200]
            raise ccxt_errors.DDoSProtection(f"{client.id} HTTP {code} {kind}, retry-after={after}: {said}")
        return original(code, reason, url, method, headers, body, *rest)

    client.handle_errors = handle_errors


def retry_after_of(message: str) -> float | None:
    """The seconds a mapped 418/429 error says to wait; None for any other error."""
    found = _RETRY.search(message)
    return float(found.group(1)) if found else None


class RateGate:
    """Every call waits here while the exchange has said to wait; protective calls go first.

    "First" means answered first, not merely sent first: the protective calls that waited
    for the gate hold the others back until each of them has its answer (or its caller's
    deadline ends it). Sent together, a read could still reach the exchange first and spend
    the budget a stop needs right after a ban; and the exchange, not the order of sending,
    decides what it applies first.
    """

    def __init__(self) -> None:
        self.until = 0.0
        self._protective_waiting = 0
        self._protective_done = trio.Event()
        self._protective_done.set()

    def block(self, seconds: float) -> None:
        self.until = max(self.until, trio.current_time() + seconds)

    @property
    def blocked(self) -> bool:
        return trio.current_time() < self.until

    @contextlib.asynccontextmanager
    async def passage(self, *, protective: bool) -> AsyncIterator[None]:
        """Wait for the gate; the call made inside the block is the one it let through."""
        if not protective:
            while True:
                await self._sleep_out()
                await self._protective_done.wait()
                if not self.blocked:
                    break
            yield
            return
        if not self.blocked:
            yield
            return
        if self._protective_waiting == 0:
            self._protective_done = trio.Event()
        self._protective_waiting += 1
        try:
            await self._sleep_out()
            yield  # the protective call runs while the others wait
        finally:
            self._protective_waiting -= 1
            if self._protective_waiting == 0:
                self._protective_done.set()

    async def _sleep_out(self) -> None:
        """Sleep until the gate opens, however often a new 429 moves that time meanwhile."""
        while True:
            until = self.until
            await trio.sleep_until(until)
            if self.until <= until:
                return

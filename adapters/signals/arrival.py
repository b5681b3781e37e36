"""What every signal source hands to `run`: a raw wave, where it came from, and how to settle it.

A source that can be told "this wave is done" (a NATS message awaiting its
acknowledgement) puts that in `ack`; `run` calls it only after the wave's
outcomes are stored, so a crash before that point means the broker delivers
the wave again and the signal-id memory answers the repeat.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import trio

RawWave = Sequence[Mapping[str, Any]]


async def _nothing_to_ack() -> None:
    return None


@attrs.frozen
class Arrival:
    """One wave as it arrived: `signals` are passed on unvalidated (the engine rejects with a reason)."""

    signals: RawWave
    source: str  # "demo", "file", "websocket", "webhook", "nats"
    key: str | None = None  # the sender's wave key, when it gave one
    received_at: float = 0.0  # trio.current_time() when the wave (or its first signal) arrived
    duplicates: int = 0  # signals the source dropped as already delivered
    ack: Callable[[], Awaitable[None]] = _nothing_to_ack

    @property
    def awaits_ack(self) -> bool:
        """Whether the source waits for an acknowledgement (sent once the wave's outcomes are stored)."""
        return self.ack is not _nothing_to_ack


class WaveFeed(Protocol):
    """A signal source as `run` consumes it: a task that sends arrivals until cancelled (or, for a
    finite source, until it has sent them all, closing `send`)."""

    async def feed(self, send: trio.MemorySendChannel[Arrival]) -> None: ...

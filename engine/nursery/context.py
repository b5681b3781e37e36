"""What every task of one engine shares: ports, config, the writer, the timeline and the
markets (read once at start-up, read-only afterwards).

State that changes belongs to the service that changes it: positions to the
`PositionBook`, trailing state to the `TrailingManager`. The context only carries
what is fixed for the engine's life, plus the ways to call the ports under deadlines."""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import ParamSpec, TypeVar

import attrs

from engine.call_points import CallPoint
from engine.config import EngineConfig
from engine.events import EventKind
from engine.model import Event, Market, PauseState
from engine.nursery.calls import CallObserver, bounded, observed
from engine.nursery.ratelimit import RateLimiter
from engine.nursery.retrying import Attempts
from engine.nursery.writer import StateWriter
from engine.ports import Exchange, Storage, WallClock

log = logging.getLogger("trio_bot.engine")

P = ParamSpec("P")
T = TypeVar("T")


def _read_only(markets: Mapping[str, Market]) -> Mapping[str, Market]:
    return MappingProxyType(dict(markets))


@attrs.define
class EngineContext:
    config: EngineConfig
    exchange: Exchange
    storage: Storage
    writer: StateWriter
    clock: WallClock
    markets: Mapping[str, Market] = attrs.field(factory=dict, converter=_read_only)
    limiter: RateLimiter = attrs.field(default=None)
    run_id: str = attrs.field(factory=lambda: secrets.token_hex(4))
    paused: PauseState | None = None  # the operator paused new entries (persisted, see Engine.pause)
    # Synchronous and O(1) observers of every timeline event (the API's event stream, metrics).
    event_observers: list[Callable[[Event], None]] = attrs.field(factory=list)
    call_observers: list[CallObserver] = attrs.field(factory=list)  # shared with the writer
    _events: itertools.count[int] = attrs.field(factory=itertools.count)

    async def call(self, what: CallPoint, fn: Callable[P, Awaitable[T]], /, *args: P.args,
                   **kwargs: P.kwargs) -> T:
        """A port call under `call_timeout`."""
        return await observed(self.call_observers, what,
                              lambda: bounded(what, self.config.call_timeout, fn, *args, **kwargs))

    def __attrs_post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = RateLimiter(self.config.order_rate_per_second, self.config.order_burst)
        self.writer.call_observers = self.call_observers

    async def order(self, what: CallPoint, priority: bool, key: str, fn: Callable[P, Awaitable[T]], /,
                    *args: P.args, **kwargs: P.kwargs) -> T:
        """An order-changing call: a rate-limiter token, then the call.

        `priority` (stops, closes, cancels) goes ahead of entries and gets `protect_deadline` for
        both. An entry gets `call_timeout` for both and `entry_deadline` for the request itself:
        its answer is looked up afterwards if it does not come (the resolver). `key` (the order's
        client id) orders requests made at the same instant.
        """

        async def limited() -> T:
            await self.limiter.acquire(priority=priority, key=key)
            if priority:
                return await fn(*args, **kwargs)
            return await bounded(what, self.config.entry_deadline, fn, *args, **kwargs)

        deadline = self.config.protect_deadline if priority else self.config.call_timeout
        return await observed(self.call_observers, what, lambda: bounded(what, deadline, limited))

    async def call_once(self, what: CallPoint, seconds: float, fn: Callable[P, Awaitable[T]], /, *args: P.args,
                        **kwargs: P.kwargs) -> T:
        """A port call under its own deadline `seconds`, observed, not retried."""
        return await observed(self.call_observers, what, lambda: bounded(what, seconds, fn, *args, **kwargs))

    async def read(self, what: CallPoint, fn: Callable[P, Awaitable[T]], /, *args: P.args,
                   **kwargs: P.kwargs) -> T:
        """A read, retried with backoff: reads change nothing, so repeating them is always safe.

        Each attempt gets `read_timeout` (shorter than `call_timeout`): a read that hangs is
        abandoned and asked again sooner, which is what shortens recovery after a lost answer.
        """
        policy = self.config.read_retry
        async for attempt in Attempts(policy):
            try:
                return await observed(self.call_observers, what,
                                      lambda: bounded(what, self.config.read_deadline, fn, *args, **kwargs))
            except Exception as exc:
                if policy.is_last(attempt):
                    raise
                log.warning("%s failed (%s); attempt %d/%d", what, exc, attempt, policy.attempts)
        raise AssertionError("unreachable")

    def event(self, kind: EventKind, detail: str = "", *, wave_id: str | None = None,
              signal_id: str | None = None, position_id: int | None = None) -> None:
        """Append to the timeline (persisted by the writer) and to the log."""
        log.info("%s%s%s%s", kind,
                 f" signal={signal_id}" if signal_id else "",
                 f" position={position_id}" if position_id is not None else "",
                 f": {detail}" if detail else "")
        event = Event(at=self.clock.now(), kind=kind.value, wave_id=wave_id, signal_id=signal_id,
                      position_id=position_id, detail=detail, uid=f"{self.run_id}-{next(self._events)}")
        self.writer.submit(event)
        for observe in self.event_observers:
            try:
                observe(event)
            except Exception:  # an observer's bug must never break the engine's step
                log.exception("event observer failed on %s", kind)

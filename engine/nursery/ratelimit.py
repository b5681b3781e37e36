"""The engine's exchange rate limiter: a token bucket with a priority lane and a fixed grant order.

Protective orders (stops, closes, cancels) take the priority lane and go ahead
of new entries, so a burst of entries can never delay a stop. Time is Trio's
clock, so the mock clock drives it too (ccxt's own limiter uses wall time and
is switched off). Waiting for a token happens inside the caller's call
deadline, like pool acquisition: a starved call times out, it never hangs.

**Grant order.** Waiters are served in the order of a ticket taken when they ask:
the lane (protective first), the time they asked, then the caller's `key` (the
order's client id), then arrival. Tokens are handed out by one synchronous
`_dispatch` to the head of that queue, never by a race between woken waiters, so
which task Trio happens to run first cannot change who gets a token. Requests
made at the very same instant are only ordered by their key once all of them
have been made: `settle` is awaited between asking and the first dispatch. A
live run leaves it a plain checkpoint (real requests never share an instant);
the simulator passes `trio.testing.wait_all_tasks_blocked`, so every task due
at an instant has asked before any of them is served.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable

import trio

# A refill that lands a hair under one token (float rounding) still counts as a token.
_EPSILON = 1e-9


class _Waiter:
    __slots__ = ("granted", "ticket", "timing", "wake")

    def __init__(self, ticket: tuple[int, float, str, int]) -> None:
        self.ticket = ticket
        self.granted = False
        self.timing = False  # it sleeps until the next token (the queue's head does)
        self.wake = trio.Event()

    def __lt__(self, other: _Waiter) -> bool:
        return self.ticket < other.ticket


class RateLimiter:
    def __init__(self, rate: float, burst: int, *,
                 settle: Callable[[], Awaitable[None]] | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp: float | None = None
        self._queue: list[_Waiter] = []  # a heap by ticket
        self._arrivals = itertools.count()
        self._settle = settle or trio.lowlevel.checkpoint

    @property
    def waiting(self) -> int:
        """Callers waiting for a token."""
        return len(self._queue)

    def _refill(self) -> None:
        now = trio.current_time()
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def _dispatch(self) -> None:
        """Hand the tokens there are to the queue's head, in ticket order; wake the new head."""
        self._refill()
        queue = self._queue
        while queue and self._tokens >= 1 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1)
            waiter = heapq.heappop(queue)
            waiter.granted = True
            waiter.wake.set()
        if queue and not queue[0].timing:
            queue[0].wake.set()  # it keeps time for the queue until the next token

    async def acquire(self, *, priority: bool = False, key: str = "") -> None:
        """Take one token; the priority lane first, then by time asked, then by `key`."""
        waiter = _Waiter((0 if priority else 1, trio.current_time(), key, next(self._arrivals)))
        heapq.heappush(self._queue, waiter)
        try:
            await self._settle()
            while True:
                self._dispatch()
                if waiter.granted:
                    return
                waiter.wake = trio.Event()
                if self._queue[0] is waiter:
                    waiter.timing = True
                    next_token = trio.current_time() + max((1 - self._tokens) / self.rate, 1e-6)
                    with trio.move_on_at(next_token):
                        await waiter.wake.wait()
                    waiter.timing = False
                    if not waiter.granted:
                        await self._settle()  # whoever else asks at this instant is queued too
                else:
                    await waiter.wake.wait()
                if waiter.granted:
                    return
        except BaseException:
            if waiter.granted:
                self._tokens = min(self.burst, self._tokens + 1)  # not used: the next one may have it
            else:
                self._queue.remove(waiter)
                heapq.heapify(self._queue)
            if self._queue:
                self._queue[0].wake.set()  # let the new head re-check and keep time
            raise

"""The engine's exchange rate limiter: a token bucket with a priority lane.

Protective orders (stops, closes, cancels) take the priority lane and go ahead
of new entries, so a burst of entries can never delay a stop. Time is Trio's
clock, so the mock clock drives it too (ccxt's own limiter uses wall time and
is switched off). Waiting for a token happens inside the caller's call
deadline, like pool acquisition: a starved call times out, it never hangs.
"""

from __future__ import annotations

import trio


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp: float | None = None
        self._priority_waiting = 0

    def _refill(self) -> None:
        now = trio.current_time()
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, *, priority: bool = False) -> None:
        """Take one token; the priority lane is served first whenever both wait."""
        if priority:
            self._priority_waiting += 1
        try:
            while True:
                self._refill()
                if self._tokens >= 1 and (priority or not self._priority_waiting):
                    self._tokens -= 1
                    await trio.lowlevel.checkpoint()
                    return
                wait = max((1 - self._tokens) / self.rate, 1e-6)
                await trio.sleep(wait)
        finally:
            if priority:
                self._priority_waiting -= 1

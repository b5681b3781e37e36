"""Reconnect pacing: exponential backoff with full jitter.

Many bots reconnecting to one service after its restart must not come back in
lock-step, so each wait is drawn uniformly between half the first delay and a cap that doubles
per failed attempt up to `maximum`; a connection that stayed up resets it.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()

    def cap(self) -> float:
        return float(min(self.maximum, self.initial * 2 ** min(self.failures, 60)))

    def next_delay(self) -> float:
        """The wait before the next attempt; counts one more failure."""
        delay = self._rng.uniform(self.initial / 2, self.cap()) if self.cap() > self.initial / 2 else self.cap()
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0

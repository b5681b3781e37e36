"""One retry policy for every repeated attempt: how many, and how long to pause between them.

Reads, protective orders, cancels, the state writer and the price stream all retry
with exponential backoff: the first pause is `backoff`, each next one doubles, none
is longer than `cap`. What differs is only the numbers, which come from the config
keys named after what they govern (`EngineConfig.read_retry` and friends).
"""

from __future__ import annotations

import math

import attrs

# 2.0 ** 1024 overflows; by then any finite backoff has long reached its cap.
_MAX_DOUBLINGS = 1000


@attrs.frozen
class RetryPolicy:
    attempts: int | None  # None: until it works or the caller is cancelled
    backoff: float  # the pause after the first failed attempt
    cap: float = math.inf  # no pause is longer

    def __attrs_post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be >= 1 or None, got {self.attempts!r}")
        if not self.backoff >= 0 or not self.cap >= 0:
            raise ValueError(f"backoff and cap must be >= 0, got {self.backoff!r}, {self.cap!r}")

    def delay(self, failed: int) -> float:
        """The pause after attempt number `failed` (1-based) failed."""
        if self.backoff == 0:
            return 0.0
        return min(self.backoff * 2.0 ** min(failed - 1, _MAX_DOUBLINGS), self.cap)

    def is_last(self, attempt: int) -> bool:
        return self.attempts is not None and attempt >= self.attempts

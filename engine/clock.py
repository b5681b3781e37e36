"""Wall-clock time for records (never for scheduling, which uses Trio's clock)."""

from __future__ import annotations

import time


class SystemClock:
    def now(self) -> float:
        return time.time()

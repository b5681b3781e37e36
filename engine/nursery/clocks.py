"""Wall clocks for records, in one place.

Records carry wall-clock timestamps; scheduling never does (it uses Trio's clock).
The system clock stamps live runs; the virtual one follows Trio's clock, so a
simulated day is stamped as a day even though it runs in a second.
"""

from __future__ import annotations

import time

import trio

# 2025-10-19T05:30:00Z, the incident's wave: simulated timelines start there.
SIMULATION_EPOCH = 1_760_851_800.0


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> float:
        return time.time()


class VirtualWallClock:
    """Wall-clock time that advances with Trio's (possibly virtual) clock."""

    def __init__(self, epoch: float = SIMULATION_EPOCH) -> None:
        self._epoch = epoch
        self._origin = trio.current_time()

    def now(self) -> float:
        return self._epoch + (trio.current_time() - self._origin)

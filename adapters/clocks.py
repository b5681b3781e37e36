"""Wall clocks for records. The virtual one follows Trio's clock, so a simulated
day is stamped as a day even though it runs in a second."""

from __future__ import annotations

import trio

# 2025-10-19T05:30:00Z, the incident's wave: simulated timelines start there.
SIMULATION_EPOCH = 1_760_851_800.0


class VirtualWallClock:
    def __init__(self, epoch: float = SIMULATION_EPOCH) -> None:
        self._epoch = epoch
        self._origin = trio.current_time()

    def now(self) -> float:
        return self._epoch + (trio.current_time() - self._origin)

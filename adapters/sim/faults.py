"""Fault injection for the simulated edges (SCENARIOS.md fault points and effects).

A call site names its fault point and passes the real action; the plan decides
whether the action runs, fails, hangs, is delayed, or runs and then hangs
(`lost_response`). Every wait is a Trio sleep, so the mock clock drives it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import trio

from adapters.sim.scenario import FaultSpec
from engine.call_points import CallPoint
from engine.errors import PermanentError, StorageError, TransientError

T = TypeVar("T")

_STORAGE = frozenset({CallPoint.STORAGE_WRITE, CallPoint.STORAGE_READ, CallPoint.STORAGE_TRAILING})


class FaultPlan:
    def __init__(self, faults: Iterable[FaultSpec] = ()) -> None:
        self._faults = list(faults)
        self._left = [f.times for f in self._faults]
        self.fired: dict[str, int] = {}  # by call point
        # The simulation disarms it during start-up so faults hit the run, not the set-up.
        self.armed = True

    def add(self, fault: FaultSpec) -> None:
        self._faults.append(fault)
        self._left.append(fault.times)

    def pick(self, point: CallPoint, *, symbol: str | None = None, side: str | None = None) -> FaultSpec | None:
        """The first matching fault with uses left; consumes one use."""
        if not self.armed:
            return None
        for i, fault in enumerate(self._faults):
            if fault.point != point or self._left[i] == 0:
                continue
            if "symbol" in fault.match and fault.match["symbol"] != symbol:
                continue
            if "side" in fault.match and fault.match["side"] != side:
                continue
            if self._left[i] is not None:
                self._left[i] -= 1  # type: ignore[operator]
            self.fired[point] = self.fired.get(point, 0) + 1
            return fault
        return None

    async def run(
        self,
        point: CallPoint,
        action: Callable[[], Awaitable[T]],
        *,
        symbol: str | None = None,
        side: str | None = None,
        latency: float = 0.0,
    ) -> T:
        # The fault is chosen when the call *arrives*, after its latency: calls that leave
        # together then meet a fault with limited `times` in their arrival order (which the
        # simulated exchange fixes by content), not in whatever order Trio ran their tasks.
        if latency:
            await trio.sleep(latency)
        fault = self.pick(point, symbol=symbol, side=side)
        if fault is None:
            return await action()
        effect = fault.effect
        if effect == "hang":
            await trio.sleep_forever()
        if effect == "delay":
            await trio.sleep(fault.seconds)
            return await action()
        if effect == "lost_response":
            await action()
            await trio.sleep_forever()
        if effect == "unknown":
            # Binance's 503 "execution status unknown": the order went through. (The fake
            # server goes further and executes it late; in process it is applied at once.)
            await action()
            raise TransientError(fault.message or f"503 Unknown error, execution status unknown at {point}")
        message = fault.message or f"injected {effect} at {point}"
        if point in _STORAGE:
            raise StorageError(message)
        if effect == "error":
            raise TransientError(message)
        raise PermanentError(message)

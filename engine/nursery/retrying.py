"""`async for attempt in Attempts(policy)`: the one loop behind every retry.

Yields attempt numbers from 1 and sleeps the policy's pause before each retry
(never before the first attempt, never after the last). A class, not an async
generator, so no suspended generator frame outlives a cancelled loop.
"""

from __future__ import annotations

import trio

from engine.retry import RetryPolicy


class Attempts:
    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self._done = 0

    def __aiter__(self) -> Attempts:
        return self

    async def __anext__(self) -> int:
        if self.policy.attempts is not None and self._done >= self.policy.attempts:
            raise StopAsyncIteration
        if self._done:
            await trio.sleep(self.policy.delay(self._done))
        self._done += 1
        return self._done

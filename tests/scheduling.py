"""Run Trio with its scheduling order randomised by a seed of our choosing.

Trio shuffles every batch of runnable tasks (its run loop reverses or shuffles the batch
with a module-level `random.Random`); with Hypothesis loaded it shuffles the whole batch.
`scheduling(seed)` seeds that shuffle, so each run explores a different order of the
tasks that are due at the same virtual instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio._core._run as trio_run


@contextmanager
def scheduling(seed: int) -> Iterator[None]:
    """Shuffle every batch of runnable tasks with a generator seeded by `seed`."""
    saved = trio_run._ALLOW_DETERMINISTIC_SCHEDULING, trio_run._r.getstate()
    trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    trio_run._r.seed(seed)
    try:
        yield
    finally:
        trio_run._ALLOW_DETERMINISTIC_SCHEDULING = saved[0]  # type: ignore[misc]
        trio_run._r.setstate(saved[1])

"""The one place deadlines are applied to port calls (DESIGN.md invariant 2).

Every exchange and storage call goes through `bounded`, so "every await on
I/O has a deadline" is a property of this module rather than a habit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import trio

from engine.errors import CallTimeout

P = ParamSpec("P")
T = TypeVar("T")


async def bounded(
    what: str, seconds: float, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run one port call under its own deadline; a timeout becomes `CallTimeout`.

    The deadline only ever shortens what an enclosing scope allows, so a call
    deadline nests inside the signal's and the wave's.
    """
    with trio.move_on_after(seconds):
        return await fn(*args, **kwargs)
    raise CallTimeout(what, seconds)

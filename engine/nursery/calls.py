"""The one place deadlines are applied to port calls (DESIGN.md invariant 2).

Every exchange and storage call goes through `bounded`, so "every await on
I/O has a deadline" is a property of this module rather than a habit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import ParamSpec, TypeVar

import trio

from engine.errors import CallTimeout

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("trio_bot.calls")

# Told about every finished port call: (call point, seconds taken, the error or None). Synchronous
# and O(1) (metrics); an observer that raises is logged and ignored.
CallObserver = Callable[[str, float, BaseException | None], None]


async def observed(observers: Sequence[CallObserver], what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Await `call()` and report its duration and outcome (cancellation is not reported)."""
    if not observers:
        return await call()
    started = trio.current_time()
    error: BaseException | None = None
    try:
        return await call()
    except Exception as exc:
        error = exc
        raise
    finally:
        if not isinstance(error, trio.Cancelled):
            elapsed = trio.current_time() - started
            for observe in observers:
                try:
                    observe(what, elapsed, error)
                except Exception:
                    log.exception("call observer failed on %s", what)


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

"""From an exchange's published order limits to the engine's token bucket.

Exchanges publish limits per window ("1,200 orders a minute, 300 per 10 s"). A
token bucket of rate r and size b lets through at most b + r·T orders in any
window of T seconds, so it honours every window (L, T) only if b + r·T ≤ L for
all of them. We run at 75 % of the tightest sustained rate and take the largest
bucket those windows still allow.
"""

from __future__ import annotations

from collections.abc import Sequence

HEADROOM = 0.75


def bucket_for(windows: Sequence[tuple[int, float]]) -> tuple[float, int] | None:
    """(rate per second, burst) honouring every (limit, seconds) window; None if there are none."""
    usable = [(limit, seconds) for limit, seconds in windows if limit > 0 and seconds > 0]
    if not usable:
        return None
    rate = HEADROOM * min(limit / seconds for limit, seconds in usable)
    burst = int(min(limit - rate * seconds for limit, seconds in usable))
    return rate, max(1, burst)

"""A scenario's price paths as one lazy timeline: `[[ticks]]`, `[[walks]]` and `[[prices]]`.

A simulated day of 20 symbols ticking every second is 1.7 million ticks; none of them is
stored. Each source is a generator, `heapq.merge` interleaves them by time, and the
timeline hands out one *instant* at a time (every move sharing a timestamp), so the driver
sleeps once per instant rather than once per tick.

Order within an instant is fixed and documented (SCENARIOS.md): `[[ticks]]` in file order,
then each `[[walks]]` in file order (symbols in their listed order), then each
`[[prices]]` in file order. A walk's move is relative (a fraction of the price the symbol
has when the move is applied), so walks compose with ticks and recorded paths; ticks and
recorded prices are absolute.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable, Iterator

import attrs

from adapters.sim.klines import kline_ticks
from adapters.sim.scenario import PricesSpec, Scenario, TickSpec, WalkSpec


@attrs.frozen
class Moves:
    """What one source does at one instant: set prices (absolute) or scale them (relative)."""

    at: float
    order: int  # the source's rank within an instant
    relative: bool
    moves: tuple[tuple[str, float], ...]  # (symbol, price) or (symbol, factor)
    # `[[ticks]]` only, and only when one of them gives a `mark`: the mark price of each move
    # (None: the mark follows the price). The fake exchange server plays them; the simulator
    # has no mark price.
    marks: tuple[float | None, ...] | None = None


def _ticks(ticks: Iterable[TickSpec], order: int) -> Iterator[Moves]:
    ordered = sorted(ticks, key=lambda t: t.at)  # stable: file order within an instant
    for at, group in itertools.groupby(ordered, key=lambda t: t.at):
        ticks = tuple(group)
        marks = tuple(t.mark for t in ticks) if any(t.mark is not None for t in ticks) else None
        yield Moves(at, order, False, tuple((t.symbol, t.price) for t in ticks), marks)


def _walk(walk: WalkSpec, order: int) -> Iterator[Moves]:
    """Ticks at from + k·every (k = 1, 2, …) up to `until`; one draw per symbol per tick."""
    rng = random.Random(walk.seed)
    draw = rng.random
    scale = walk.step_percent / 100.0
    symbols = walk.symbols
    if not symbols:
        return
    start, every, until = walk.start, walk.every, walk.until
    for k in itertools.count(1):
        at = start + k * every  # multiplied, not summed: no drift over a day
        if at > until:
            return
        yield Moves(at, order, True, tuple([(s, 1.0 + scale * (2.0 * draw() - 1.0)) for s in symbols]))


def _recorded(prices: PricesSpec, order: int) -> Iterator[Moves]:
    for at, price in kline_ticks(prices.file, prices.start):
        yield Moves(at, order, False, ((prices.symbol, price),))


def _key(m: Moves) -> tuple[float, int]:
    return (m.at, m.order)


def timeline(scenario: Scenario) -> Iterator[tuple[float, list[Moves]]]:
    """(at, every source's moves at that instant in source order), in time order, lazily."""
    sources: list[Iterator[Moves]] = [_ticks(scenario.ticks, 0)]
    sources += [_walk(w, 1 + i) for i, w in enumerate(scenario.walks)]
    base = 1 + len(scenario.walks)
    sources += [_recorded(p, base + i) for i, p in enumerate(scenario.prices)]
    if len(scenario.walks) == 1 and not scenario.ticks and not scenario.prices:
        for moves in sources[1]:  # one walk (a long day's usual path): its instants are already apart
            yield moves.at, [moves]
        return
    merged = heapq.merge(*sources, key=_key)
    for at, group in itertools.groupby(merged, key=lambda m: m.at):
        yield at, list(group)

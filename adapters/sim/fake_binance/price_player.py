"""What moves the local exchange's prices in real time: a scenario's price paths, or a random walk.

A scenario's `[[ticks]]`, `[[walks]]` and `[[prices]]` are played from the same lazy timeline
the simulator replays (`adapters.sim.price_paths`), so `trio-bot fake-exchange --scenario`
moves prices exactly as `trio-bot simulate` does, only in seconds of wall time: a walk's step
is relative to the price the market has when it is applied, ticks at one instant are applied
together in the documented order, and nothing is generated ahead of its time, so a day-long
walk costs no memory. A tick's `mark` (a wick) is played too; the simulator has no mark price.

`--walk` is the demo's endless random walk, apart from any scenario.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable

import trio

from adapters.sim.price_paths import timeline
from adapters.sim.scenario import Scenario

SetTick = Callable[[str, float, "float | None"], None]
Price = Callable[[str], float]


def has_paths(scenario: Scenario | None) -> bool:
    """Whether the scenario moves any price by itself."""
    return scenario is not None and bool(scenario.ticks or scenario.walks or scenario.prices)


async def play_paths(scenario: Scenario, set_tick: SetTick, price: Price) -> None:
    """Play the scenario's price paths from now on: `at` seconds after the start, each instant's
    moves in order (a late instant is applied at once, never skipped)."""
    start = trio.current_time()
    for at, instant in timeline(scenario):
        await trio.sleep_until(start + at)
        for source in instant:
            marks = source.marks or (None,) * len(source.moves)
            for (symbol, value), mark in zip(source.moves, marks, strict=True):
                set_tick(symbol, price(symbol) * value if source.relative else value, mark)


async def random_walk(symbols: Iterable[str], rng: random.Random, volatility: float,
                      set_price: Callable[[str, float], None], price: Price) -> None:
    """Every second, each market (in name order) moves by a log-normal step; forever."""
    ordered = sorted(symbols)
    while True:
        await trio.sleep(1.0)
        for symbol in ordered:
            set_price(symbol, price(symbol) * math.exp(rng.gauss(0.0, volatility)))

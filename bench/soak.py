"""Soak: does a long run keep what finished waves and closed positions leave behind?

A bot that runs for months (96 waves a day) must stay flat. This runs the engine in
virtual time on the simulated exchange with an in-memory SQLite store (SQLite's own pages
are not Python memory; a file would only add fsync time): waves of signals on 20
symbols, prices walking between waves so positions fill, trail and are stopped out,
with the sweep running. With `tracemalloc` on, the Python memory still held is read
(after a full collection) at wave `start` and wave `end`:

    kb_per_wave_soak = (held at wave `end` - held at wave `start`) / (end - start) / 1024

What the test instrument itself keeps is not the bot's: the simulated exchange's history of
finished orders and its fill log are cleared as the run goes (each finished order one wave
after it finished), and memory allocated in `adapters/sim` is left out of the readings.

    python -m bench.soak [--start 200] [--end 1000] [--top 15]

prints one JSON object; `--top N` also prints (to stderr) the N places whose held memory
grew most between the two readings.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import random
import subprocess
import sys
import time
import tracemalloc
from typing import Any

SYMBOLS = 20
SIGNALS_PER_WAVE = 10
WAVE_EVERY = 120.0  # virtual seconds between waves
TICK_EVERY = 6.0  # virtual seconds between price steps
STEP_PERCENT = 0.6  # one price step's standard deviation: most positions are stopped out within a few waves
_NOT_OURS = (tracemalloc.Filter(False, "*/adapters/sim/*"), tracemalloc.Filter(False, tracemalloc.__file__),
             tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"))


def _held(snapshot: tracemalloc.Snapshot) -> int:
    return sum(stat.size for stat in snapshot.filter_traces(_NOT_OURS).statistics("filename"))


def _snapshot() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot()


async def _soak(db: str, start: int, end: int, seed: int, readings: dict[str, Any]) -> None:
    import trio

    from adapters.sim.exchange import SimExchange
    from adapters.sim.scenario import ExchangeSpec, MarketSpec
    from adapters.sqlite_store import SQLiteStore
    from engine.config import EngineConfig
    from engine.nursery.clocks import VirtualWallClock
    from engine.nursery.engine import Engine

    rng = random.Random(seed)
    symbols = [f"S{i:02d}USDT" for i in range(SYMBOLS)]
    spec = ExchangeSpec(balance_usdt=1_000_000.0, latency=0.02,
                        markets=tuple(MarketSpec(s, round(1.0 + 3.7 * i, 4)) for i, s in enumerate(symbols)))
    exchange = SimExchange.from_spec(spec)
    config = EngineConfig(max_positions_per_wave=5, max_concurrent_signals=5, stop_loss_percent=1.0,
                          trailing_activation_percent=0.5, trailing_callback_percent=0.3,
                          trailing_min_interval=5.0, sweep_interval=60.0)
    store = await SQLiteStore.open(db)
    opened = closed = 0
    finished: list[str] = []
    try:
        async with Engine.open(config, exchange, store, clock=VirtualWallClock()) as engine:
            next_id = 1
            for wave in range(1, end + 1):
                signals = []
                for _ in range(SIGNALS_PER_WAVE):
                    signals.append({"id": str(next_id), "symbol": rng.choice(symbols),
                                    "side": rng.choice(("long", "short")), "score": round(rng.uniform(1, 10), 3)})
                    next_id += 1
                record = await engine.process_wave(signals)
                opened += record.counts.opened
                elapsed = 0.0
                while elapsed < WAVE_EVERY:  # the market moves: stops trail and trigger
                    await trio.sleep(TICK_EVERY)
                    elapsed += TICK_EVERY
                    exchange.set_prices([(s, 1.0 + rng.gauss(0.0, STEP_PERCENT / 100)) for s in symbols],
                                        relative=True)
                finished = _forget_finished_orders(exchange, finished)
                if wave in (start, end):
                    await engine.flush()
                    readings[str(wave)] = _snapshot()
            closed = sum(1 for p in engine.positions(include_closed=True) if p.status.value == "closed")
    finally:
        await store.aclose()
    readings["opened"], readings["closed_in_book"] = opened, closed


def _forget_finished_orders(exchange: Any, earlier: list[str]) -> list[str]:
    """Drop the orders that had finished one wave ago from the simulated exchange's history
    (and its fill log): the instrument's memory, not the bot's. Returns those finished now."""
    from engine.model import OrderStatus

    orders = exchange._orders  # the instrument's own bookkeeping, pruned by its benchmark only
    for client_id in earlier:
        orders.pop(client_id, None)
    exchange.fills.clear()
    return [cid for cid, order in orders.items() if order.status is not OrderStatus.NEW]


def run_soak(start: int, end: int, seed: int = 7, top: int = 0) -> dict[str, Any]:
    """In this process: the engine's held memory at wave `start` and `end`."""
    import trio
    import trio.testing

    logging.disable(logging.CRITICAL)
    readings: dict[str, Any] = {}
    started, cpu = time.perf_counter(), time.process_time()
    tracemalloc.start(8 if top else 1)
    trio.run(_soak, ":memory:", start, end, seed, readings, clock=trio.testing.MockClock(autojump_threshold=0))
    tracemalloc.stop()
    first, last = readings[str(start)], readings[str(end)]
    if top:
        growth = last.filter_traces(_NOT_OURS).compare_to(first.filter_traces(_NOT_OURS), "traceback")
        for stat in growth[:top]:
            print(f"{stat.size_diff / 1024:+10.1f} KB {stat.count_diff:+8d} blocks", file=sys.stderr)
            for line in stat.traceback.format()[-8:]:
                print("    " + line, file=sys.stderr)
    held_start, held_end = _held(first), _held(last)
    return {"start": start, "end": end, "held_kb_start": held_start / 1024, "held_kb_end": held_end / 1024,
            "kb_per_wave_soak": (held_end - held_start) / (end - start) / 1024,
            "positions_opened": readings["opened"], "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu}


def measure(start: int = 200, end: int = 1000) -> dict[str, Any]:
    """Run the soak in a child process: its memory is its own."""
    out = subprocess.run([sys.executable, "-m", "bench.soak", "--start", str(start), "--end", str(end)],
                         check=True, capture_output=True, text=True, timeout=3600)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="memory held per wave over a long simulated run")
    parser.add_argument("--start", type=int, default=200, help="first reading after this many waves (200)")
    parser.add_argument("--end", type=int, default=1000, help="second reading after this many waves (1000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--top", type=int, default=0, help="print the N places that grew most (stderr)")
    args = parser.parse_args()
    if not 0 < args.start < args.end:
        parser.error("--start must be > 0 and < --end")
    print(json.dumps(run_soak(args.start, args.end, args.seed, args.top)))


if __name__ == "__main__":
    main()

"""Engine overhead in real time with zero simulated latency: CPU per signal, memory per position,
and trailing throughput (the manager service and the pure state machine)."""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from typing import Any

import trio
import trio.lowlevel

from adapters.sim.exchange import SimExchange
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.model import OrderRequest, OrderState, Side
from engine.trailing import TrailingParams, TrailingStop
from trio_bot import Engine


def _spec(n: int) -> ExchangeSpec:
    return ExchangeSpec(balance_usdt=1e12, latency=0.0,
                        markets=tuple(MarketSpec(f"S{i:04d}USDT", 100.0) for i in range(n)))


def _wave(n: int, offset: int = 0) -> list[dict[str, Any]]:
    return [{"id": str(offset + i), "symbol": f"S{offset + i:04d}USDT", "side": "long", "score": 1.0}
            for i in range(n)]


def _config(n: int, **extra: Any) -> EngineConfig:
    return EngineConfig(max_positions_per_wave=n, max_concurrent_signals=n, order_rate_per_second=1e9,
                        order_burst=10**9, sweep_interval=0, **extra)


def cpu_per_signal(n: int = 200, rounds: int = 3) -> float:
    """CPU milliseconds per signal for a whole wave (validation, open, stop, records), best of `rounds`."""
    async def main() -> float:
        exchange = SimExchange.from_spec(_spec(n))
        store = await SQLiteStore.open(":memory:")
        try:
            async with Engine.open(_config(n), exchange, store) as engine:
                start = time.process_time()
                record = await engine.process_wave(_wave(n))
                await engine.flush()
                cpu = time.process_time() - start
                assert record.counts.opened == n
        finally:
            await store.aclose()
        return cpu / n * 1000

    return min(trio.run(main) for _ in range(rounds))


def memory_per_position(n: int = 1000) -> float:
    """KiB of Python heap per open, followed position (engine, trailing follower, exchange, store rows)."""
    async def main() -> float:
        exchange = SimExchange.from_spec(_spec(n))
        store = await SQLiteStore.open(":memory:")
        try:
            async with Engine.open(_config(n), exchange, store) as engine:
                await engine.process_wave(_wave(1))
                await engine.flush()
                gc.collect()
                tracemalloc.start()
                before = tracemalloc.get_traced_memory()[0]
                await engine.process_wave(_wave(n - 1, offset=1))
                await engine.flush()
                gc.collect()
                grown = tracemalloc.get_traced_memory()[0] - before
                tracemalloc.stop()
        finally:
            await store.aclose()
        return grown / (n - 1) / 1024

    return trio.run(main)


def trailing_throughput(positions: int = 1000, ticks: int = 200_000, *, rising: bool = False) -> float:
    """Ticks per second through the manager (price stream → mailbox → follower → state machine)
    across `positions` active positions with the default move thresholds. Prices oscillate just
    under each position's best, the common case of a flood: every tick is followed, few move a
    stop (each position moves once, on its first tick). `rising=True`: every round sets a new best,
    so every tick re-derives the wanted stop and stops move as often as `min_interval` allows."""
    async def main() -> float:
        exchange = SimExchange.from_spec(_spec(positions))
        store = await SQLiteStore.open(":memory:")
        try:
            async with Engine.open(_config(positions, trailing_activation_percent=0.0), exchange, store) as engine:
                await engine.process_wave(_wave(positions))
                await engine.flush()
                symbols = [f"S{i:04d}USDT" for i in range(positions)]
                manager = engine.trailing
                start = time.perf_counter()
                # Straight into the manager's feed callback: the simulated exchange's own cost of
                # moving a price (it scans its resting orders) is not the engine's.
                for k in range(ticks):
                    step = (k // positions) * 0.01 if rising else -((k // positions) % 7) * 0.01
                    manager.on_price(symbols[k % positions], 100.0 + step)
                    if k % 100 == 99:
                        await trio.lowlevel.checkpoint()
                elapsed = time.perf_counter() - start
                await engine.flush()
        finally:
            await store.aclose()
        return ticks / elapsed

    return trio.run(main)


def tick_to_order_latency(positions: int = 200) -> dict[str, float]:
    """From a tick reaching the manager to the stop order being sent, when a move is due and no
    rate limit binds: one tick at a time, each moving one position's stop."""
    async def main() -> dict[str, float]:
        exchange = SimExchange.from_spec(_spec(positions))
        store = await SQLiteStore.open(":memory:")
        config = _config(positions, trailing_activation_percent=0.0, trailing_min_step_percent=0.0,
                         trailing_min_interval=0.0)
        dispatch: list[float] = []
        sent_at: dict[str, float] = {}
        original = exchange.place_order

        async def timed_place(request: OrderRequest) -> OrderState:
            if request.symbol in sent_at:
                dispatch.append(time.perf_counter() - sent_at.pop(request.symbol))
            return await original(request)

        exchange.place_order = timed_place  # type: ignore[method-assign]
        try:
            async with Engine.open(config, exchange, store) as engine:
                await engine.process_wave(_wave(positions))
                await engine.flush()
                for round_ in range(5):
                    for k in range(positions):
                        symbol = f"S{k:04d}USDT"
                        sent_at[symbol] = time.perf_counter()
                        exchange.set_price(symbol, 110.0 + round_ + k * 0.001)  # the feed reaches the manager
                        while symbol in sent_at:
                            await trio.lowlevel.checkpoint()
                    await engine.flush()
        finally:
            await store.aclose()
        dispatch.sort()
        return {"tick_to_order_p50_ms": statistics.median(dispatch) * 1000,
                "tick_to_order_p99_ms": dispatch[max(0, int(len(dispatch) * 0.99) - 1)] * 1000}

    return trio.run(main)


def machine_throughput(ticks: int = 1_000_000) -> float:
    """Ticks per second through the pure state machine alone."""
    params = TrailingParams(1.5, 0.5, 0.1, 1.0)
    ts = TrailingStop.start(Side.LONG, 100.0, 98.0, 0.01, params)
    start = time.perf_counter()
    for k in range(ticks):
        ts = ts.observe(100.0 + (k % 1000) * 0.001)
    return ticks / (time.perf_counter() - start)

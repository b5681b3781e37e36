"""Wave duration in virtual time: trio-bot against its critical path and against the sequential design."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from adapters.sim.exchange import SimExchange
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from bench.hanging import HangingExchange, HangingStorage, Hangs
from bench.sequential import SequentialBot
from engine import EngineConfig
from trio_bot import Engine

LATENCY = 0.05
# Binance USDⓈ-M publishes 300 orders per 10 s: a bucket of 300 refilling at 30/s.
ORDER_RATE, ORDER_BURST = 30.0, 300


def market_spec(n: int) -> ExchangeSpec:
    return ExchangeSpec(balance_usdt=1e9, latency=LATENCY,
                        markets=tuple(MarketSpec(f"S{i:03d}USDT", 10.0 + i * 0.01) for i in range(n)))


def wave(n: int) -> list[dict[str, Any]]:
    return [{"id": str(i), "symbol": f"S{i:03d}USDT", "side": "long" if i % 2 else "short", "score": 100.0 - i}
            for i in range(n)]


def critical_path(n: int) -> float:
    """Prices+balance (concurrent), entry and stop round trips, and the order-rate limit where it binds
    (SQLite writes take no virtual time)."""
    orders = 2 * n
    rate_bound = max(0.0, (orders - ORDER_BURST) / ORDER_RATE)
    return 3 * LATENCY + rate_bound


def _config(n: int) -> EngineConfig:
    return EngineConfig(max_positions_per_wave=n, max_concurrent_signals=n, order_rate_per_second=ORDER_RATE,
                        order_burst=ORDER_BURST, sweep_interval=0, wave_timeout=600.0, signal_timeout=120.0)


def run_engine(n: int, hang_probability: float = 0.0, seed: int = 1) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        hangs = Hangs(hang_probability, seed)
        exchange = HangingExchange(SimExchange.from_spec(market_spec(n)), hangs)
        store = await SQLiteStore.open(":memory:")
        try:
            async with Engine.open(_config(n), exchange, HangingStorage(store, hangs)) as engine:
                start = trio.current_time()
                record = await engine.process_wave(wave(n))
                duration = trio.current_time() - start
        finally:
            await store.aclose()
        return {"duration": duration, "opened": record.counts.opened, "hangs": hangs.count}

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def run_sequential(n: int, hang_probability: float = 0.0, seed: int = 1) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        hangs = Hangs(hang_probability, seed)
        exchange = HangingExchange(SimExchange.from_spec(market_spec(n)), hangs)
        store = await SQLiteStore.open(":memory:")
        try:
            bot = SequentialBot(exchange, HangingStorage(store, hangs), timeout=10.0 if hang_probability else None)
            start = trio.current_time()
            opened = await bot.process_wave(wave(n))
            duration = trio.current_time() - start
        finally:
            await store.aclose()
        return {"duration": duration, "opened": opened, "hangs": hangs.count}

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def measure(sizes: tuple[int, ...]) -> dict[str, Any]:
    scaling = []
    for n in sizes:
        result = run_engine(n)
        scaling.append({"n": n, "duration": result["duration"], "critical_path": critical_path(n),
                        "ratio": result["duration"] / critical_path(n), "opened": result["opened"]})
    plain_engine, plain_seq = run_engine(50), run_sequential(50)
    hang_engine, hang_seq = run_engine(50, 0.10), run_sequential(50, 0.10)
    return {
        "scaling": scaling,
        "sequential": {"plain": plain_seq, "hangs": hang_seq},
        "engine": {"plain": plain_engine, "hangs": hang_engine},
        "wave_over_critical_path_n50": next(s["ratio"] for s in scaling if s["n"] == 50),
        "speedup_vs_sequential_n50": plain_seq["duration"] / plain_engine["duration"],
        "speedup_vs_sequential_n50_hangs": hang_seq["duration"] / hang_engine["duration"],
    }

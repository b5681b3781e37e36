"""Embedding trio-bot in your own application, with your own signal source.

Run it:  .venv/bin/python examples/embed.py

The application owns the Trio run, the exchange and the store; trio-bot owns
the waves. Here the signal source is a tiny in-process class that would, in a
real application, read from a queue or a websocket.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig, Outcome
from trio_bot import Engine


class MySignalService:
    """Implements `engine.ports.SignalSource`: an async iterator of raw waves."""

    def __init__(self, symbols: Sequence[str], waves: int) -> None:
        self._symbols = list(symbols)
        self._waves = waves
        self._rng = random.Random(42)

    async def waves(self) -> AsyncIterator[Sequence[Mapping[str, Any]]]:
        for n in range(self._waves):
            yield [
                {"id": f"app-{n}-{i}", "symbol": s, "side": self._rng.choice(["long", "short"]),
                 "score": self._rng.uniform(1, 10)}
                for i, s in enumerate(self._rng.sample(self._symbols, 4))
            ]
            await trio.sleep(0.5)


async def main() -> None:
    prices = {"BTCUSDT": 67_000.0, "ETHUSDT": 2_600.0, "SOLUSDT": 150.0, "XRPUSDT": 0.55, "NEOUSDT": 10.0}
    markets = tuple(MarketSpec(symbol, price) for symbol, price in prices.items())
    exchange = SimExchange.from_spec(ExchangeSpec(latency=0.01, markets=markets))
    storage = await SQLiteStore.open(":memory:", call_timeout=5.0)
    config = EngineConfig(max_positions_per_wave=2, call_timeout=2.0, signal_timeout=10.0, wave_timeout=20.0)
    try:
        async with Engine.open(config, exchange, storage) as engine:
            async for wave in MySignalService(list(prices), waves=2).waves():
                record = await engine.process_wave(wave)
                c = record.counts
                print(f"{record.id}: {c.opened} opened, {c.skipped} skipped, {c.rejected} rejected")
                for o in record.outcomes:
                    if o.outcome is Outcome.OPENED:
                        print(f"  {o.signal_id} {o.symbol} {o.side} -> position {o.position_id}")
            for p in engine.positions():
                print(f"open: #{p.id} {p.symbol} {p.side} {p.quantity:g} @ {p.entry_price:g}, stop {p.stop_price:g}")
    finally:
        await storage.aclose()


if __name__ == "__main__":
    trio.run(main)

"""Signal transports, in real time over loopback: from a wave's arrival to its first entry order.

`signal_to_entry_ms_p99_<transport>`: a whole-wave frame (websocket), message (NATS) or
request (webhook) received by trio-bot's source → the first entry order of that wave received
by the local exchange server (`FakeBinance`, spoken to by the ccxt adapter over HTTP). The span
covers the hand-over to `run`, validation, the wave's price and balance snapshot (two HTTP
reads) and the entry request. Everything runs in one process, as `trio-bot run` would.
"""

from __future__ import annotations

import json
import math
import statistics
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from adapters.ccxt_exchange import CcxtExchange
from adapters.signals import Arrival, WaveFeed
from adapters.signals.jetstream import NatsSource
from adapters.signals.websocket import WebsocketSource
from adapters.sim.fake_binance import FakeBinance
from adapters.sim.fake_binance.server import ORDER
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from adapters.sim.signal_server import SignalServer
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from trio_bot import Engine
from trio_bot.aio import asyncio_loop

KEY, SECRET = "bench-key", "bench-secret"
NATS_URL = "nats://127.0.0.1:4222"


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


class _EntryClock:
    """When the exchange server received the first entry order since `arm()`."""

    def __init__(self, fake: FakeBinance) -> None:
        self.first: float | None = None
        handler = fake._signed[("POST", ORDER)]

        async def timed(account: Any, params: dict[str, str]) -> Any:
            if self.first is None and params.get("reduceOnly") != "true":
                self.first = trio.current_time()
            return await handler(account, params)

        fake._signed[("POST", ORDER)] = timed

    def arm(self) -> None:
        self.first = None


@asynccontextmanager
async def _bot(waves: int) -> AsyncIterator[tuple[Engine, _EntryClock]]:
    markets = tuple(MarketSpec(f"B{i:04d}USDT", 100.0) for i in range(waves))
    fake = FakeBinance(ExchangeSpec(balance_usdt=1e9, markets=markets), api_key=KEY, api_secret=SECRET)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        clock = _EntryClock(fake)
        exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url=fake.base_url,
                                symbols=[markets[0].symbol], price_poll_interval=60.0)
        store = await SQLiteStore.open(":memory:")
        config = EngineConfig(max_positions_per_wave=1, max_concurrent_signals=1, sweep_interval=0,
                              order_rate_per_second=1e6, order_burst=10**6)
        try:
            async with Engine.open(config, exchange, store) as engine:
                yield engine, clock
        finally:
            await store.aclose()
            await exchange.aclose()
            nursery.cancel_scope.cancel()


def _wave(i: int, tag: str) -> list[dict[str, Any]]:
    return [{"id": f"{tag}-{i}", "symbol": f"B{i:04d}USDT", "side": "long", "score": 1.0}]


async def _measure(waves: int, feed: WaveFeed, publish: Callable[[int], Awaitable[None]],
                   engine: Engine, clock: _EntryClock) -> list[float]:
    samples: list[float] = []
    send, receive = trio.open_memory_channel[Arrival](8)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed.feed, send)
        await trio.sleep(0.5)  # connected and subscribed
        for i in range(waves):
            await publish(i)
            with trio.fail_after(10):
                arrival = await receive.receive()
            clock.arm()
            await engine.process_wave(arrival.signals)
            await arrival.ack()
            assert clock.first is not None, "no entry order reached the exchange"
            samples.append((clock.first - arrival.received_at) * 1000)
        nursery.cancel_scope.cancel()
    return samples


def websocket_latency(waves: int) -> list[float]:
    async def main() -> list[float]:
        async with asyncio_loop(), _bot(waves) as (engine, clock), trio.open_nursery() as nursery:
            server = SignalServer()
            await nursery.start(server.serve)
            source = WebsocketSource(server.url)
            samples = await _measure(waves, source, lambda i: server.publish(f"W{i}", _wave(i, "ws")),
                                     engine, clock)
            nursery.cancel_scope.cancel()
            return samples
    return trio.run(main)


def nats_latency(waves: int, url: str = NATS_URL) -> list[float] | None:
    import nats
    import trio_asyncio

    tag = uuid.uuid4().hex[:8]
    stream, subject = f"BENCH_{tag}", f"bench.{tag}"

    async def main() -> list[float]:
        async with asyncio_loop(), _bot(waves) as (engine, clock):
            client = await trio_asyncio.aio_as_trio(nats.connect)(servers=[url], connect_timeout=3)
            js = client.jetstream(timeout=5)
            await trio_asyncio.aio_as_trio(js.add_stream)(name=stream, subjects=[subject])
            try:
                source = NatsSource(url, stream=stream, subject=subject, durable="bench")

                async def publish(i: int) -> None:
                    await trio_asyncio.aio_as_trio(js.publish)(
                        subject, json.dumps({"wave": f"N{i}", "signals": _wave(i, "nats")}).encode())

                return await _measure(waves, source, publish, engine, clock)
            finally:
                await trio_asyncio.aio_as_trio(js.delete_stream)(stream)
                await trio_asyncio.aio_as_trio(client.close)()

    try:
        return trio.run(main)
    except OSError:
        return None


def measure(waves: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for transport, run in (("websocket", websocket_latency), ("nats", nats_latency)):
        samples = run(waves)
        if samples is None:
            results[f"signal_to_entry_ms_p99_{transport}"] = None
            continue
        results[f"signal_to_entry_ms_p99_{transport}"] = p99(samples)
        results[f"signal_to_entry_ms_p50_{transport}"] = statistics.median(samples)
    return results


if __name__ == "__main__":
    print(json.dumps(measure(50), indent=2))

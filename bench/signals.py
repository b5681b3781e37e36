"""Signal transports, in real time over loopback.

`signal_to_entry_ms_p99_<transport>`: a whole-wave frame (websocket), message (NATS) or
request (webhook) received by trio-bot's source → the first entry order of that wave received
by the local exchange server (`FakeBinance`, spoken to by the ccxt adapter over HTTP). The span
covers the hand-over to `run`, validation, the wave's price and balance snapshot (two HTTP
reads) and the entry request. Everything runs in one process, as `trio-bot run` would.

`webhook_signals_per_second`: signals posted to `POST /api/v1/signals` on the operator's server
(hypercorn + Starlette, real HTTP, several clients at once, one request in ten a re-post of an
earlier one), accepted (202) and their ids stored in the store's memory of handled signals (SQLite,
one transaction per wave, as the engine does when a wave starts); a re-post is answered as
duplicates from that memory. Accepted signals over the time from the first request to the last
wave's ids stored. `webhook_signals_traded_per_second` is the same with every wave also traded by
the engine on the paper exchange (5 positions opened and protected per wave of 10): the engine,
not the webhook, is then the limit.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from adapters.ccxt_exchange import CcxtExchange
from adapters.signals import Arrival, WaveFeed
from adapters.signals.jetstream import NatsSource
from adapters.signals.webhook import WebhookIntake
from adapters.signals.websocket import WebsocketSource
from adapters.sim.exchange import SimExchange
from adapters.sim.fake_binance import FakeBinance
from adapters.sim.fake_binance.server import ORDER
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from adapters.sim.signal_server import SignalServer
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.model import WaveRecord
from engine.validation import claims_of
from trio_bot import Engine
from trio_bot.aio import asyncio_loop
from trio_bot.api.settings import ApiSettings, Token
from trio_bot.api.wiring import start_api
from trio_bot.webhook_route import PATH, webhook_route

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


HANDOVER: dict[str, list[float]] = {}  # per transport: arrival → the engine starts the wave (ms)


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
            HANDOVER.setdefault(arrival.source, []).append((trio.current_time() - arrival.received_at) * 1000)
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


def _reachable(url: str) -> bool:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=2):
            return True
    except OSError:
        return False


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

    if not _reachable(url):
        return None  # no broker on this machine
    return trio.run(main)


HOOK_SECRET = "bench-hook-secret"


@asynccontextmanager
async def _webhook(engine: Engine, intake: WebhookIntake) -> AsyncIterator[Any]:
    import httpx

    async with trio.open_nursery() as nursery:
        api = await start_api(nursery, engine, ApiSettings(port=0, listen_given=True),
                              Token("bench-api-token", generated=False), account="bench", exchange="bench",
                              extra_routes=[webhook_route(intake)])
        async with httpx.AsyncClient(base_url=api.url, timeout=10,
                                     headers={"authorization": f"Bearer {HOOK_SECRET}"}) as client:
            yield client
        nursery.cancel_scope.cancel()


def webhook_latency(waves: int) -> list[float]:
    async def main() -> list[float]:
        async with asyncio_loop(), _bot(waves) as (engine, clock):
            intake = WebhookIntake(HOOK_SECRET, rate_limit=1e6, burst=10**6)
            async with _webhook(engine, intake) as client:
                async def publish(i: int) -> None:
                    answer = await client.post(PATH, json={"wave": f"H{i}", "signals": _wave(i, "hook")})
                    assert answer.status_code == 202, answer.text

                return await _measure(waves, intake, publish, engine, clock)
    return trio.run(main)


class _TimedIntake(WebhookIntake):
    """Knows when the first request arrived (the sender runs in another process)."""

    first: float | None = None

    async def handle(self, body: bytes, authorization: str | None) -> Any:
        if self.first is None:
            self.first = trio.current_time()
        return await super().handle(body, authorization)


def webhook_throughput(requests: int = 300, per_request: int = 20, clients: int = 8, *,
                       trade: bool = False) -> dict[str, float]:
    """Accepted and stored signals per second over real HTTP from a sender process; one request in
    ten re-posts an earlier body (answered as duplicates)."""
    import sys
    import tempfile

    bodies: list[dict[str, Any]] = [{"wave": f"T{r}", "signals": [
        {"id": f"t{r}-{k}", "symbol": f"H{r * per_request + k:05d}USDT", "side": "long", "score": k}
        for k in range(per_request)]} for r in range(requests)]
    posts = [b if r % 10 or r == 0 else bodies[r - 5] for r, b in enumerate(bodies)]
    fresh = len({s["id"] for b in posts for s in b["signals"]})

    async def main() -> dict[str, float]:
        exchange = SimExchange.from_spec(ExchangeSpec(balance_usdt=1e12, latency=0.0, markets=tuple(
            MarketSpec(f"H{i:05d}USDT", 100.0) for i in range(requests * per_request))))
        store = await SQLiteStore.open(":memory:")
        config = EngineConfig(sweep_interval=0, order_rate_per_second=1e9, order_burst=10**9)
        intake = _TimedIntake(HOOK_SECRET, rate_limit=1e6, burst=10**6, handled=store.handled_signals)
        try:
            async with Engine.open(config, exchange, store) as engine, trio.open_nursery() as nursery:
                api = await start_api(nursery, engine, ApiSettings(port=0, listen_given=True),
                                      Token("bench-api-token", generated=False), account="bench",
                                      exchange="bench", extra_routes=[webhook_route(intake)])
                send, receive = trio.open_memory_channel[Arrival](64)
                stored = 0
                done = trio.Event()

                async def consume() -> None:
                    nonlocal stored
                    async for arrival in receive:
                        if trade:
                            await engine.process_wave(arrival.signals)
                            await engine.flush()
                        else:  # what the engine stores first for every wave: the claim on its ids
                            wave = WaveRecord(arrival.key or "", trio.current_time(), time.time())
                            await store.claim_signals(wave, claims_of(arrival.signals))
                        stored += len(arrival.signals)
                        if stored >= fresh:
                            done.set()

                nursery.start_soon(intake.feed, send)
                nursery.start_soon(consume)
                with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
                    json.dump(posts, file)
                    file.flush()
                    sender = await trio.run_process(
                        [sys.executable, "-m", "bench.webhook_client", api.url + PATH, HOOK_SECRET, file.name,
                         str(clients)], capture_stdout=True, check=True)
                with trio.fail_after(120):
                    await done.wait()
                assert intake.first is not None
                elapsed = trio.current_time() - intake.first
                nursery.cancel_scope.cancel()
        finally:
            await store.aclose()
        answered = json.loads(sender.stdout)
        assert answered["accepted"] == fresh, answered
        assert answered["duplicates"] == len(posts) * per_request - fresh, answered
        if trade:
            return {"webhook_signals_traded_per_second": fresh / elapsed}
        return {"webhook_signals_per_second": fresh / elapsed, "webhook_requests_per_second": len(posts) / elapsed,
                "webhook_duplicates_detected": answered["duplicates"]}
    return trio.run(main)


def measure(waves: int, quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = webhook_throughput(40 if quick else 300)
    results.update(webhook_throughput(10 if quick else 100, trade=True))
    for transport, run in (("websocket", websocket_latency), ("webhook", webhook_latency),
                           ("nats", nats_latency)):
        samples = run(waves)
        if samples is None:
            results[f"signal_to_entry_ms_p99_{transport}"] = None
            continue
        results[f"signal_to_entry_ms_p99_{transport}"] = p99(samples)
        results[f"signal_to_entry_ms_p50_{transport}"] = statistics.median(samples)
        results[f"signal_handover_ms_p99_{transport}"] = p99(HANDOVER.get(transport, [0.0]))
    return results


if __name__ == "__main__":
    print(json.dumps(measure(50), indent=2))

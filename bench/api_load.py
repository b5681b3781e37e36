"""A 50-signal wave while clients hammer the operator API: does watching the engine slow it down?

Real time, not virtual: the question is CPU contention between the HTTP server and the engine on one
Trio thread, which a mock clock cannot see. The same wave runs twice on fresh engines, once alone and
once while `clients` tasks send `GET /api/v1/status` back to back and a websocket client receives every
event; both durations are divided by the wave's critical path (three exchange round trips).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from bench.waves import ORDER_BURST, ORDER_RATE, wave
from engine import EngineConfig
from trio_bot import Engine
from trio_bot.api.settings import ApiSettings, Token
from trio_bot.api.wiring import start_api

LATENCY = 0.1  # real seconds per exchange call: large enough that timer noise does not dominate
TOKEN = "bench-token-0123456789abcdef"


def _spec(n: int) -> ExchangeSpec:
    return ExchangeSpec(balance_usdt=1e9, latency=LATENCY,
                        markets=tuple(MarketSpec(f"S{i:03d}USDT", 10.0 + i * 0.01) for i in range(n)))


def _config(n: int) -> EngineConfig:
    return EngineConfig(max_positions_per_wave=n, max_concurrent_signals=n, order_rate_per_second=ORDER_RATE,
                        order_burst=ORDER_BURST, sweep_interval=0, wave_timeout=600.0, signal_timeout=120.0)


def critical_path() -> float:
    return 3 * LATENCY  # prices+balance, entry, stop (2n orders stay within the rate limiter's burst)


async def _load(url: str, clients: int, *, task_status: trio.TaskStatus[trio.Process]) -> None:
    """The load, from another process (as a browser or Prometheus would be): `clients` loops of
    `GET /api/v1/status` and one websocket reader. It prints one JSON line when told to stop."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "bench.api_client", url, TOKEN, str(clients)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    task_status.started(proc)
    await proc.wait()


async def _one(n: int, load: bool, clients: int) -> dict[str, Any]:
    store = await SQLiteStore.open(":memory:")
    report: dict[str, Any] = {"latencies": [], "streamed": 0}
    try:
        async with Engine.open(_config(n), SimExchange.from_spec(_spec(n)), store) as engine, \
                trio.open_nursery() as nursery:
            api = await start_api(nursery, engine, ApiSettings(port=0, listen_given=True), Token(TOKEN, False),
                                  account="bench", exchange="paper")
            proc: trio.Process | None = None
            if load:
                proc = await nursery.start(_load, api.url, clients)
                assert proc.stdout is not None and proc.stdin is not None
                with trio.fail_after(30):
                    ready = await proc.stdout.receive_some()  # "ready": the load is running
                assert ready.startswith(b"ready"), ready
            wall_start = time.time()
            started = trio.current_time()
            record = await engine.process_wave(wave(n))
            duration = trio.current_time() - started
            wall_end = time.time()
            published = api.hub.published
            if proc is not None:
                assert proc.stdout is not None and proc.stdin is not None
                with trio.fail_after(30):
                    await proc.stdin.send_all(f"{published}\n".encode())
                    chunks = []
                    while chunk := await proc.stdout.receive_some():
                        chunks.append(chunk)
                report = json.loads(b"".join(chunks))
            nursery.cancel_scope.cancel()
    finally:
        await store.aclose()
    latencies = [t for at, t in report["latencies"] if wall_start <= at <= wall_end]
    return {"duration": duration, "opened": record.counts.opened, "status_latencies": latencies,
            "events_streamed": report["streamed"], "events_published": published,
            "stream_lag": report.get("lag", 0.0)}


def measure(n: int = 50, clients: int = 4, rounds: int = 3) -> dict[str, Any]:
    """Median of `rounds` runs each way; p99 of every status request answered during the loaded waves."""
    quiet, loaded, latencies, streamed, lags = [], [], [], [], []
    for _ in range(rounds):
        quiet.append(trio.run(_one, n, False, clients)["duration"])
        result = trio.run(_one, n, True, clients)
        loaded.append(result["duration"])
        latencies.extend(result["status_latencies"])
        streamed.append(result["events_streamed"])
        lags.append(result["stream_lag"])
        if result["events_streamed"] < result["events_published"]:
            raise AssertionError(f"the stream lost events: {result['events_streamed']} of {result['events_published']}")
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None
    path = critical_path()
    return {
        "critical_path": path,
        "wave_over_critical_path_n50_realtime": statistics.median(quiet) / path,
        "wave_over_critical_path_n50_api_load": statistics.median(loaded) / path,
        "api_status_p99_ms": None if p99 is None else p99 * 1000,
        "api_status_p50_ms": statistics.median(latencies) * 1000 if latencies else None,
        "api_status_requests_per_wave": len(latencies) / rounds,
        "events_streamed_per_wave": statistics.median(streamed),
        "stream_lag_after_wave_s": statistics.median(lags),
        "clients": clients,
    }

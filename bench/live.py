"""Live mode through real sockets: the engine with the ccxt adapter against the fake Binance
server in the same process (REST over HTTP, prices over the bookTicker websocket).

* `live_tick_to_stop_ms_p99`: a price change on the server's stream -> the trailing stop's
  new order received by the server, each tick 20 ms after the previous move (whose cancel
  and record are over by then): the path itself. `..._back_to_back`: the next symbol
  ticks the moment the previous stop arrived, so it queues behind that move's cancel,
  store write and user-stream events in the same single-threaded process.
* `live_fill_to_record_ms_p99`: the server fills a stop -> the engine has the position closed.
* `live_cpu_ms_per_signal`: CPU per opened, protected position over HTTP. The server runs in
  the same process, so its CPU is included: an upper bound for the engine and ccxt.
"""

from __future__ import annotations

import statistics
import time
from functools import partial
from typing import Any

import trio
import trio_asyncio

from adapters.ccxt_exchange import CcxtExchange
from adapters.sim.fake_binance import FakeBinance
from adapters.sim.fake_binance.account import Account
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.model import PositionStatus
from trio_bot import Engine

DEADLINE = 10.0
SETTLE = 0.02  # seconds between spaced ticks: the previous move's cancel and record are done by then


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[max(0, int(len(values) * q + 0.5) - 1)]


def measure(positions: int = 20, rounds: int = 5) -> dict[str, Any]:
    symbols = [f"L{i:03d}USDT" for i in range(positions)]
    spec = ExchangeSpec(balance_usdt=1e9, latency=0.0, markets=tuple(
        MarketSpec(s, 100.0, tick_size=0.01, step_size=0.001, min_notional=5.0) for s in symbols))
    config = EngineConfig(max_positions_per_wave=positions, max_concurrent_signals=positions,
                          position_size_usdt=100.0, order_rate_per_second=1e6, order_burst=10**6,
                          sweep_interval=0, trailing_activation_percent=0.0, trailing_min_step_percent=0.0,
                          trailing_min_interval=0.0)
    placed: dict[str, float] = {}
    arrived: list[trio.Event] = [trio.Event()]  # set when a stop order reaches the server

    async def main() -> dict[str, Any]:
        fake = FakeBinance(spec)
        original = Account.place

        async def timed_place(self: Account, params: dict[str, str], *, algo: bool) -> Any:
            result = await original(self, params, algo=algo)
            if algo:
                placed[params["symbol"]] = time.perf_counter()
                arrived[0].set()
            return result

        Account.place = timed_place  # type: ignore[method-assign]
        try:
            async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
                port = await nursery.start(fake.serve)
                exchange = CcxtExchange("binanceusdm", api_key=fake.api_key, api_secret=fake.api_secret,
                                        base_url=f"http://127.0.0.1:{port}", ws_url=fake.ws_url,
                                        symbols=symbols, price_poll_interval=5.0)
                store = await SQLiteStore.open(":memory:")
                try:
                    result = await _run(fake, exchange, store)
                finally:
                    await store.aclose()
                    await exchange.aclose()
                    nursery.cancel_scope.cancel()
                return result
        finally:
            Account.place = original  # type: ignore[method-assign]

    async def _run(fake: FakeBinance, exchange: CcxtExchange, store: SQLiteStore) -> dict[str, Any]:
        async with Engine.open(config, exchange, store) as engine:
            wave = [{"id": str(i), "symbol": s, "side": "long", "score": 1.0} for i, s in enumerate(symbols)]
            cpu = time.process_time()
            record = await engine.process_wave(wave)
            await engine.flush()
            cpu_per_signal = (time.process_time() - cpu) / max(1, record.counts.opened) * 1000
            with trio.fail_after(DEADLINE):
                await _until(lambda: fake.streams.connected > 0, 0.01)
            # Spaced: each tick comes after the previous move is over (its cancel and record done),
            # the latency of the path itself. Back to back: the next symbol ticks as soon as the
            # previous stop reached the server, queueing behind that move's cancel and record.
            tick_to_stop = await _ticks(fake, symbols, rounds, 101.0, settle=SETTLE)
            back_to_back = await _ticks(fake, symbols, rounds, 101.0 + rounds, settle=0.0)
            fill_to_record: list[float] = []
            for symbol in symbols:
                start = time.perf_counter()
                fake.exchange.set_price(symbol, 50.0)  # through every stop: the server fills it
                with trio.move_on_after(DEADLINE):
                    await _until(partial(_closed, engine, symbol), 0.0005)
                if _closed(engine, symbol):
                    fill_to_record.append(time.perf_counter() - start)
        return {
            "live_cpu_ms_per_signal": cpu_per_signal,
            "live_tick_to_stop_ms_p50": statistics.median(tick_to_stop) * 1000,
            "live_tick_to_stop_ms_p99": _p(tick_to_stop, 0.99) * 1000,
            "live_tick_to_stop_ms_p99_back_to_back": _p(back_to_back, 0.99) * 1000,
            "live_fill_to_record_ms_p50": statistics.median(fill_to_record) * 1000,
            "live_fill_to_record_ms_p99": _p(fill_to_record, 0.99) * 1000,
            "live_samples": {"tick_to_stop": len(tick_to_stop), "back_to_back": len(back_to_back),
                             "fill_to_record": len(fill_to_record)},
        }

    async def _ticks(fake: FakeBinance, symbols: list[str], rounds: int, base: float, *,
                     settle: float) -> list[float]:
        latencies: list[float] = []
        for round_ in range(rounds):
            for k, symbol in enumerate(symbols):
                placed.pop(symbol, None)
                arrived[0] = trio.Event()
                start = time.perf_counter()
                fake.exchange.set_price(symbol, base + round_ + k * 0.01)
                with trio.move_on_after(DEADLINE):
                    while symbol not in placed:  # woken by the server, not by polling
                        await arrived[0].wait()
                        arrived[0] = trio.Event()
                if symbol in placed:
                    latencies.append(placed[symbol] - start)
                await trio.sleep(settle)
        return latencies

    return trio.run(main)


async def _until(condition: Any, step: float) -> None:
    while True:
        if condition():
            return
        await trio.sleep(step)


def _closed(engine: Any, symbol: str) -> bool:
    return any(p.symbol == symbol and p.status is PositionStatus.CLOSED
               for p in engine.positions(include_closed=True))

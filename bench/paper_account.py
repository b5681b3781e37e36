"""What keeping the paper account on every change costs, and that its file stays bounded.

    python -m bench.paper_account [--positions N]

Each position is a paper trade as `run` makes it: an entry, its stop, the stop moved three times
(place the new one, cancel the old), then a price move that fills the stop. Every one of those
changes is committed to the paper account's SQLite file (WAL, synchronous = FULL) before the call
returns; the time of each call is measured (latency 0, so the write is all there is). The file's
size is read after half the positions and after all of them: once the bounded history is full
(1000 closed orders), it stops growing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from adapters.sim.paper_account import open_paper_exchange, paper_account_path
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from engine import ids
from engine.model import OrderKind, OrderRequest, OrderSide

SPEC = ExchangeSpec(balance_usdt=1e9, latency=0.0, markets=(MarketSpec("BTCUSDT", 67_000.0),))


def _size_kb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1024


def measure(positions: int = 600) -> dict[str, Any]:
    timings: list[float] = []
    sizes: list[float] = []

    async def timed(call: Any) -> None:
        started = time.perf_counter()
        await call
        timings.append(time.perf_counter() - started)

    async def main(folder: Path) -> None:
        url = f"sqlite:///{folder / 'bench.db'}"
        file = paper_account_path(url)
        assert file is not None
        with open_paper_exchange(SPEC, url) as exchange:
            for pid in range(1, positions + 1):
                exchange.set_price("BTCUSDT", 67_000.0)
                await timed(exchange.place_order(
                    OrderRequest("BTCUSDT", OrderSide.BUY, OrderKind.ENTRY, 0.01, ids.entry_id(pid))))
                for seq in range(1, 5):
                    await timed(exchange.place_order(OrderRequest(
                        "BTCUSDT", OrderSide.SELL, OrderKind.STOP, 0.01, ids.stop_id(pid, seq), 66_000.0 + seq)))
                    if seq > 1:
                        await timed(exchange.cancel_order("BTCUSDT", ids.stop_id(pid, seq - 1)))
                started = time.perf_counter()
                exchange.set_price("BTCUSDT", 65_000.0)  # fills the stop, kept before it returns
                timings.append(time.perf_counter() - started)
                if pid in (positions // 2, positions):
                    sizes.append(_size_kb(file))

    with tempfile.TemporaryDirectory() as folder:
        trio.run(main, Path(folder))
    ms = sorted(t * 1000 for t in timings)
    return {
        "paper_mutations": len(ms),
        "paper_mutation_ms_p50": statistics.median(ms),
        "paper_mutation_ms_p99": ms[int(0.99 * (len(ms) - 1))],
        "paper_file_kb_half": sizes[0],
        "paper_file_kb_end": sizes[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=600)
    print(json.dumps(measure(parser.parse_args().positions), indent=2))


if __name__ == "__main__":
    main()

"""`python -m adapters.fake_binance SCENARIO.toml [--port N] [--walk]`: a standalone fake exchange.

Prices follow the scenario's ticks in real time from start-up; `--walk` adds a
seeded random walk every second so a paper client sees a moving market.
"""

from __future__ import annotations

import argparse
import contextlib
from functools import partial

import trio

from adapters.fake_binance.server import FakeBinance
from engine.scenario import load_scenario


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m adapters.fake_binance", description=__doc__)
    parser.add_argument("scenario", help="scenario TOML: its [exchange], faults and ticks are used")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--walk", action="store_true", help="random-walk prices every second")
    parser.add_argument("--seed", type=int, default=None, help="random-walk seed (default: the scenario's)")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--api-secret", default="test-secret")
    args = parser.parse_args(argv)
    fake = FakeBinance(load_scenario(args.scenario), api_key=args.api_key, api_secret=args.api_secret,
                       walk=args.walk, seed=args.seed)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(fake.serve, args.host, args.port))
            print(f"fake binance on http://{args.host}:{port} (key {fake.api_key!r})", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run)


if __name__ == "__main__":
    main()

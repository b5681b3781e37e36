"""The commands that drive this project's test instruments: `simulate` (a scenario in virtual
time), `fake-exchange` (a local Binance USDⓈ-M stand-in for live mode) and `signal-server`
(a local websocket signal service). The only door from the CLI to `adapters.sim`.
"""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from engine.errors import ConfigError
from engine.text import printable
from trio_bot.cli import EXIT_BROKEN, EXIT_OK
from trio_bot.cli.errors import only
from trio_bot.cli.reports import positions_text


def simulate_command(args: argparse.Namespace) -> int:
    from adapters.sim.scenario import load_scenario
    from trio_bot.simulate import invariants_hold, simulate
    from trio_bot.tables import wave_table

    report = simulate(load_scenario(args.scenario))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"scenario {printable(report['scenario'])}: {report['virtual_seconds']:g} virtual seconds")
        stops = {p["id"]: p["stop_price"] for p in report["positions"]}
        for wave in report["waves"]:
            print(wave_table(wave, stops))
        print(positions_text(report["positions"]))
        print("invariants: " + ", ".join(f"{k}={v}" for k, v in report["invariants"].items()))
    return EXIT_OK if invariants_hold(report) else EXIT_BROKEN


def fake_exchange(args: argparse.Namespace) -> int:
    import os

    from adapters.sim.fake_binance import FakeBinance
    from adapters.sim.scenario import ExchangeSpec, MarketSpec, load_scenario
    from trio_bot.paper_markets import PAPER_PRICES

    source = (load_scenario(args.scenario) if args.scenario
              else ExchangeSpec(markets=tuple(MarketSpec(s, p) for s, p in PAPER_PRICES.items())))
    fake = FakeBinance(source, api_key=args.api_key or os.environ.get("TRIO_BOT_API_KEY", "test-key"),
                       api_secret=args.api_secret or os.environ.get("TRIO_BOT_API_SECRET", "test-secret"),
                       accounts=args.accounts, walk=args.walk, seed=args.seed)

    async def serve() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                ws_port = args.ws_port if args.ws_port is not None else (args.port + 1 if args.port else 0)
                port = await _listen(nursery, partial(fake.serve, ws_port=ws_port), args, "fake-exchange")
                print(f"trio-bot: fake Binance USDⓈ-M exchange on http://{args.host}:{port}, streams on "
                      f"{fake.ws_url} "
                      f"({len(fake.markets)} markets, {len(fake.accounts)} account"
                      f"{'s' if len(fake.accounts) > 1 else ''}). Ctrl-C to stop.", flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(serve)
    return EXIT_OK


def signal_server(args: argparse.Namespace) -> int:
    import os
    import time

    from adapters.signals import DemoSignalSource, JsonlSignalSource
    from adapters.sim.signal_server import SignalServer
    from trio_bot.paper_markets import PAPER_PRICES

    if not args.interval > 0:
        raise ConfigError("--interval", args.interval, "a number of seconds > 0")
    if args.signal_gap is not None and not args.signal_gap >= 0:
        raise ConfigError("--signal-gap", args.signal_gap, "a number of seconds >= 0")
    if args.resend < 0:
        raise ConfigError("--resend", args.resend, "an integer >= 0")
    token = None
    if args.token_env is not None:
        token = os.environ.get(args.token_env, "")
        if not token:
            raise ConfigError("--token-env", args.token_env, "the name of a set, non-empty environment variable")
    started = int(time.time())
    source: JsonlSignalSource | DemoSignalSource
    if args.signals:
        source, prefix = JsonlSignalSource(args.signals, interval=args.interval), "file"
    else:
        source = DemoSignalSource(list(PAPER_PRICES), interval=args.interval, seed=args.seed,
                                  first_id=started % 10_000_000 * 100)
        prefix = f"demo{started}"
    server = SignalServer(token=token, resend=args.resend, signal_gap=args.signal_gap)

    async def serve() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                port = await _listen(nursery, server.serve, args, "signal-server")
                print(f"trio-bot: signal server on ws://{args.host}:{port}/ws, a wave every {args.interval:g}s"
                      f"{' (token required)' if token else ''}. Ctrl-C to stop.", flush=True)
                nursery.start_soon(server.publish_all, source.waves(), prefix,
                                   lambda line: print(f"trio-bot: {line}", flush=True))
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(serve)
    return EXIT_OK


async def _listen(nursery: trio.Nursery, serve: Callable[..., Any], args: argparse.Namespace, what: str) -> int:
    """Start a local server on --host/--port; a port in use (or a host we cannot bind) is one line."""
    try:
        port: int = await nursery.start(partial(serve, args.host, args.port))
    except BaseException as exc:
        failed = only(exc, OSError)
        if failed is None:
            raise
        reason = failed.strerror or str(failed) or type(failed).__name__
        raise ConfigError("--port", args.port, f"a port free to listen on at {printable(args.host)} ({reason})",
                          where=what) from None
    return port

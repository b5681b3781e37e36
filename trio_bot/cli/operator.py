"""The operator's commands: `run` (start the engine) and `status`, `pause`, `resume`, `close`
(talk to a running instance over its HTTP API).
"""

from __future__ import annotations

import argparse
import json
import signal

import trio

from trio_bot.cli import EXIT_OK


def run_command(args: argparse.Namespace) -> int:
    import attrs

    from trio_bot.api.settings import parse_listen
    from trio_bot.run import load_run_config, run

    settings = load_run_config(args.config)
    if args.no_api:
        settings = attrs.evolve(settings, api=attrs.evolve(settings.api, enabled=False))
    elif args.api_listen is not None:
        host, port = parse_listen(args.api_listen, "--api-listen")
        settings = attrs.evolve(settings, api=attrs.evolve(settings.api, host=host, port=port, listen_given=True))

    async def main() -> int:
        # Signals are received from the first moment of the Trio run, before the asyncio loop
        # opens: a Ctrl-C at any moment from here on takes `run`'s clean way out.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            from trio_bot.aio import asyncio_loop

            async with asyncio_loop():
                return await run(settings=settings, db_url=args.db, signals_file=args.signals,
                                 wave_interval=args.wave_interval, waves=args.waves, seed=args.seed,
                                 standby=args.standby, signals=signals)

    return trio.run(main)


def api_command(args: argparse.Namespace) -> int:
    from trio_bot.api import client
    from trio_bot.api.settings import load_api_settings

    url = args.url
    if url is None:  # where the instance on --db said it listens (its port may have moved on from 8080)
        from trio_bot.api.address import running_url

        url = running_url(args.db)
    target = client.target(url, load_api_settings(args.config))
    if args.command == "status":
        result = client.call(target, "GET", "/api/v1/status")
    elif args.command == "pause":
        result = client.call(target, "POST", "/api/v1/pause", {"reason": args.reason})
    elif args.command == "resume":
        result = client.call(target, "POST", "/api/v1/resume", {})
    else:
        result = client.call(target, "POST", f"/api/v1/positions/{args.position}/close", {},
                             timeout=client.TIMEOUT + 60)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.command == "close":
        print(f"position {result['id']} closed @ {result['exit_price']} ({result['exit_reason']}), "
              f"realized PnL {result['realized_pnl']}")
    else:
        print(client.status_text(result))
    return EXIT_OK

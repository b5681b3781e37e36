"""`trio-bot` command line: argument parsing and wiring only.

Exit status: 0 done, 1 an invariant broke (simulate) or a runtime failure,
2 bad input (config, scenario, signals file, --db URL).

Exception groups: Trio wraps errors that cross a nursery. A group whose
leaves are all trio-bot errors (`TrioBotError`) is reported as its first
error, one clear line; a group holding anything else is a bug and is shown
whole, with its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NoReturn, TypeVar

import trio

from engine.checks import PORT, ROW_ID, Range, identifier_problem, integer
from engine.errors import ConfigError, TrioBotError
from engine.text import cut, printable
from trio_bot.tables import PrintableFormatter

EXIT_OK, EXIT_BROKEN, EXIT_BAD_INPUT = 0, 1, 2
E = TypeVar("E", bound=BaseException)

# Accepted ranges of the numeric options (README, "Commands").
WAVE_INTERVAL = Range(0.0, 604_800.0, low_open=True)
WAVES = integer(1, 1_000_000_000)
LAST = integer(0, 1_000_000_000)
SEED = integer(0, 2**63 - 1)


class UsageError(ConfigError):
    """A command line argparse refused: reported as one line, exit status 2."""

    def __init__(self, message: str) -> None:
        TrioBotError.__init__(self, message)
        self.key, self.value, self.expected = "", None, message


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one error line (and exit 2), not usage plus a message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _number(allowed: Range, option: str, *, integral: bool = False) -> Callable[[str], Any]:
    """An argparse type: the option's value parsed and checked against its documented range."""

    def parse(text: str) -> Any:
        try:
            value: Any = int(text) if integral else float(text)
        except ValueError:
            kind = "an integer" if integral else "a number"
            raise ConfigError(option, text, f"{kind} ({allowed.describe()})", where="argument") from None
        return allowed.check_int(option, value, where="argument") if integral else \
            allowed.check(option, value, where="argument")

    parse.__name__ = option  # argparse names the type in its own messages
    return parse


def _parser() -> argparse.ArgumentParser:
    from trio_bot.storage import DEFAULT_DB

    parser = _Parser(prog="trio-bot", description="Signal-execution engine for crypto futures.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every engine event to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="replay a scenario file in virtual time and print a report")
    sim.add_argument("scenario", help="scenario TOML file (see SCENARIOS.md)")
    sim.add_argument("--json", action="store_true", help="print the report as one JSON document")

    run = sub.add_parser("run", help="run the engine on the paper exchange")
    run.add_argument("--config", help="TOML file with [engine] keys and an optional [paper] exchange")
    run.add_argument("--db", default=DEFAULT_DB, help=f"storage URL (default {DEFAULT_DB})")
    run.add_argument("--signals", help="JSON Lines file, one wave per line (default: demo generator)")
    run.add_argument("--wave-interval", type=_number(WAVE_INTERVAL, "--wave-interval"), default=180.0,
                     help="seconds between waves (default 180)")
    run.add_argument("--waves", type=_number(WAVES, "--waves", integral=True), help="exit after this many waves")
    run.add_argument("--seed", type=_number(SEED, "--seed", integral=True),
                     help="seed for the demo signals and the price walk")
    run.add_argument("--standby", action="store_true",
                     help="if another instance trades this account, wait and take over when it stops")
    run.add_argument("--no-api", action="store_true", help="do not start the operator's HTTP server")
    run.add_argument("--api-listen", metavar="HOST:PORT",
                     help="where the operator's HTTP server listens (default [api] listen or 127.0.0.1:8080)")

    waves = sub.add_parser("waves", help="show stored waves")
    waves.add_argument("--db", default=DEFAULT_DB)
    waves.add_argument("--last", type=_number(LAST, "--last", integral=True), help="only the newest N waves")
    waves.add_argument("--json", action="store_true")

    positions = sub.add_parser("positions", help="show stored positions")
    positions.add_argument("--db", default=DEFAULT_DB)
    positions.add_argument("--all", action="store_true", help="include closed positions")
    positions.add_argument("--json", action="store_true")

    events = sub.add_parser("events", help="show the stored timeline: every step of every signal, with its time")
    events.add_argument("--db", default=DEFAULT_DB)
    events.add_argument("--position", type=_number(ROW_ID, "--position", integral=True),
                        help="only this position's events")
    events.add_argument("--signal", type=_signal_id, help="only this signal's events")
    events.add_argument("--json", action="store_true")

    fake = sub.add_parser("fake-exchange", help="serve a local Binance USDⓈ-M compatible exchange (for live mode)")
    fake.add_argument("--port", type=_number(PORT, "--port", integral=True), default=8765,
                      help="TCP port on 127.0.0.1 (default 8765; 0 picks a free one)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--ws-port", type=_number(PORT, "--ws-port", integral=True),
                      help="TCP port of the market streams (default: --port + 1)")
    fake.add_argument("--scenario", help="scenario TOML: its [exchange] markets, [[faults]] and [[ticks]]")
    fake.add_argument("--walk", action="store_true", help="move prices on a seeded random walk every second")
    fake.add_argument("--seed", type=_number(SEED, "--seed", integral=True),
                      help="random-walk seed (default: the scenario's)")
    fake.add_argument("--api-key", help="the key clients must send (default: $TRIO_BOT_API_KEY or test-key)")
    fake.add_argument("--api-secret", help="the secret signatures must use (default: $TRIO_BOT_API_SECRET or "
                      "test-secret). A secret given here is visible to every local user in `ps`: prefer the "
                      "environment variable; the flag is for tests")
    fake.add_argument("--accounts", type=_number(integer(1, 1_000), "--accounts", integral=True), default=1,
                      help="serve this many accounts, one per API key: the first uses the key and secret, "
                           "account N uses <key>-N and <secret>-N (default 1)")

    def api_client(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--url", help="the running instance's API or dashboard link (default from --config, "
                                       "else http://127.0.0.1:8080)")
        cmd.add_argument("--config", help="the run config: its [api] listen and token_env")
        cmd.add_argument("--json", action="store_true", help="print the API's JSON answer")
        return cmd

    api_client("status", "the running instance: state, open positions, last wave")
    api_client("pause", "pause new entries (waves still arrive; valid signals are skipped)").add_argument(
        "--reason", default="", help="shown in every skipped signal's reason")
    api_client("resume", "resume new entries")
    api_client("close", "close an open position now (reduce-only market order, exit reason `operator`)").add_argument(
        "position", type=_number(ROW_ID, "position", integral=True), help="position id")

    sig = sub.add_parser("signal-server", help="serve waves over the websocket signal protocol (docs/SIGNALS.md)")
    sig.add_argument("--port", type=_number(PORT, "--port", integral=True), default=8766,
                     help="TCP port (default 8766); the feed is at /ws")
    sig.add_argument("--host", default="127.0.0.1")
    what = sig.add_mutually_exclusive_group(required=True)
    what.add_argument("--signals", help="JSON Lines file, one wave per line, published in order")
    what.add_argument("--demo", action="store_true", help="publish random demo waves")
    sig.add_argument("--interval", type=_number(WAVE_INTERVAL, "--interval"), default=30.0,
                     help="seconds between waves (default 30)")
    sig.add_argument("--token-env", help="environment variable holding the bearer token clients must send")
    sig.add_argument("--signal-gap", type=_number(Range(0.0, 3_600.0), "--signal-gap"),
                     help="send each wave one signal frame at a time, this many seconds apart")
    sig.add_argument("--resend", type=_number(integer(0, 100_000), "--resend", integral=True), default=10,
                     help="recent waves re-sent to every new subscriber (10)")
    sig.add_argument("--seed", type=_number(SEED, "--seed", integral=True), help="seed for the demo waves")

    export = sub.add_parser("export", help="export stored data")
    export_sub = export.add_subparsers(dest="export_command", required=True)
    trades = export_sub.add_parser("trades", help="trades with Freqtrade's column names (CSV or JSON) on stdout")
    trades.add_argument("--db", default=DEFAULT_DB)
    trades.add_argument("--format", choices=("csv", "json"), default="csv")
    trades.add_argument("--since", help="only trades opened at or after this date (ISO 8601, UTC)")

    report = sub.add_parser("report", help="per day: trades closed, win rate, realised PnL")
    report.add_argument("--db", default=DEFAULT_DB)
    report.add_argument("--days", type=_number(integer(1, 36_500), "--days", integral=True), default=7,
                        help="days back from today (UTC), default 7")
    report.add_argument("--json", action="store_true")

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    migrate = db_sub.add_parser("migrate", help="apply pending schema migrations (idempotent)")
    migrate.add_argument("--db", default=DEFAULT_DB)
    return parser


def _signal_id(text: str) -> str:
    problem = identifier_problem(text)
    if problem is not None:
        raise ConfigError("--signal", text, f"a signal id ({problem})", where="argument")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BaseException as exc:
        if only(exc, BrokenPipeError) is None:
            raise
        # The reader went away (`trio-bot positions --json | head`): nothing left to say to it.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = _parser().parse_args(argv)
    except ConfigError as exc:
        # argparse calls the type with the text; its ArgumentError wraps only ValueError-likes.
        print(f"trio-bot: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _setup_logging(args.verbose)
    try:
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "run":
            return _run(args)
        if args.command == "fake-exchange":
            return _fake_exchange(args)
        if args.command in ("status", "pause", "resume", "close"):
            return _api_command(args)
        if args.command == "signal-server":
            return _signal_server(args)
        commands = {"waves": _waves, "positions": _positions, "events": _events, "db": _migrate,
                    "export": _export, "report": _report}
        return trio.run(_with_loop, commands[args.command], args)
    except BaseException as exc:
        error = _user_error(exc)
        if error is None:
            raise
        print(f"trio-bot: error: {one_line(str(error))}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(error, ConfigError) else EXIT_BROKEN


def one_line(text: str, limit: int = 2000) -> str:
    """An error message fit for one terminal line: escaped and bounded."""
    return cut(printable(text), limit)


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc`, however deeply Trio's nurseries grouped them."""
    found: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(reversed(item.exceptions))
        else:
            found.append(item)
    return found


def only(exc: BaseException, kind: type[E]) -> E | None:
    """The first `kind` error in `exc` if that is all it holds (besides cancellations), else None."""
    found = leaves(exc)
    ours = [leaf for leaf in found if isinstance(leaf, kind)]
    if ours and all(isinstance(leaf, kind | trio.Cancelled) for leaf in found):
        return ours[0]
    return None


def _user_error(exc: BaseException) -> TrioBotError | None:
    """The trio-bot error to report for `exc`, or None if it is something else (a bug)."""
    return only(exc, TrioBotError)


def _simulate(args: argparse.Namespace) -> int:
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
        print(_positions_text(report["positions"]))
        print("invariants: " + ", ".join(f"{k}={v}" for k, v in report["invariants"].items()))
    return EXIT_OK if invariants_hold(report) else EXIT_BROKEN


def _positions_text(rows: list[dict[str, Any]]) -> str:
    from trio_bot.tables import render_table

    if not rows:
        return "no positions"
    return render_table(["id", "signal", "symbol", "side", "status", "qty", "entry", "stop", "exit", "exit reason"],
                  [[r["id"], r["signal_id"], r["symbol"], r["side"], r["status"], r["quantity"],
                    r["entry_price"], r["stop_price"], r["exit_price"], r["exit_reason"]] for r in rows])


def _run(args: argparse.Namespace) -> int:
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
        from trio_bot.aio import asyncio_loop

        async with asyncio_loop():
            return await run(settings=settings, db_url=args.db, signals_file=args.signals,
                             wave_interval=args.wave_interval, waves=args.waves, seed=args.seed,
                             standby=args.standby)

    return trio.run(main)


def _fake_exchange(args: argparse.Namespace) -> int:
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


def _api_command(args: argparse.Namespace) -> int:
    from trio_bot.api import client
    from trio_bot.api.settings import load_api_settings

    target = client.target(args.url, load_api_settings(args.config))
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


def _signal_server(args: argparse.Namespace) -> int:
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


async def _with_loop(command: Any, args: argparse.Namespace) -> int:
    from trio_bot.aio import asyncio_loop

    async with asyncio_loop():
        result: int = await command(args)
        return result


async def _migrate(args: argparse.Namespace) -> int:
    from trio_bot.storage import open_storage

    store = await open_storage(args.db, call_timeout=30.0)  # opening migrates
    try:
        version = await store.verify_schema()  # what is there, not just what schema_version says
    finally:
        await store.aclose()
    print(f"trio-bot: schema at version {version}")
    return EXIT_OK


async def _waves(args: argparse.Namespace) -> int:
    from engine.report import wave_json
    from trio_bot.storage import open_storage_read_only
    from trio_bot.tables import wave_table

    store = await open_storage_read_only(args.db, call_timeout=10.0)
    try:
        records = await store.waves(last=args.last)
        positions = {p.id: p for p in await store.positions(include_closed=True)}
    finally:
        await store.aclose()
    shaped = [wave_json(w, positions) for w in records]
    if args.json:
        print(json.dumps({"waves": shaped}, indent=2))
    else:
        stops = {pid: p.stop_price for pid, p in positions.items()}
        print("\n\n".join(wave_table(w, stops) for w in shaped) or "no waves")
    return EXIT_OK


async def _events(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from engine.report import event_json
    from trio_bot.storage import open_storage_read_only
    from trio_bot.tables import render_table

    store = await open_storage_read_only(args.db, call_timeout=10.0)
    try:
        found = await store.events(position_id=args.position, signal_id=args.signal)
    finally:
        await store.aclose()
    if args.json:
        print(json.dumps({"events": [event_json(e) for e in found]}, indent=2))
    elif not found:
        print("no events")
    else:
        print(render_table(["time (UTC)", "event", "wave", "signal", "position", "detail"],
                           [[datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], e.kind,
                             e.wave_id, e.signal_id, e.position_id, e.detail] for e in found]))
    return EXIT_OK


async def _stored_positions(db: str) -> list[Any]:
    from trio_bot.storage import open_storage_read_only

    store = await open_storage_read_only(db, call_timeout=30.0)  # a report never migrates
    try:
        return await store.positions(include_closed=True)
    finally:
        await store.aclose()


async def _export(args: argparse.Namespace) -> int:
    from trio_bot import exports
    from trio_bot.api.app import BadParameter, parse_since

    try:
        since = parse_since(args.since, "--since")
    except BadParameter as exc:
        raise ConfigError("--since", args.since, "an ISO 8601 date like 2026-01-31 or epoch seconds") from exc
    rows = exports.trades(await _stored_positions(args.db), since=since)
    print(exports.to_csv(rows) if args.format == "csv" else exports.to_json(rows), end="" if args.format == "csv"
          else "\n")
    return EXIT_OK


async def _report(args: argparse.Namespace) -> int:
    import time

    from trio_bot import exports
    from trio_bot.tables import render_table

    if not 1 <= args.days <= 3660:
        raise ConfigError("--days", args.days, "an integer between 1 and 3660")
    report = exports.daily_report(await _stored_positions(args.db), days=args.days, now=time.time())
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK

    def rate(x: float | None) -> str:
        return "—" if x is None else f"{x:.0%}"

    rows = [[d["date"], d["trades"], d["wins"], d["losses"], rate(d["win_rate"]), f"{d['realized_pnl']:+.4f}"]
            for d in report["days"]]
    t = report["total"]
    rows.append(["total", t["trades"], t["wins"], t["losses"], rate(t["win_rate"]), f"{t['realized_pnl']:+.4f}"])
    print(render_table(["day (UTC)", "trades", "wins", "losses", "win rate", "realized PnL"], rows))
    return EXIT_OK


async def _positions(args: argparse.Namespace) -> int:
    from engine.report import position_json, reportable_positions
    from trio_bot.storage import open_storage_read_only

    store = await open_storage_read_only(args.db, call_timeout=10.0)
    try:
        rows = reportable_positions(await store.positions(include_closed=args.all))
    finally:
        await store.aclose()
    shaped = [position_json(p) for p in rows]
    if args.json:
        print(json.dumps({"positions": shaped}, indent=2))
    else:
        print(_positions_text(shaped))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

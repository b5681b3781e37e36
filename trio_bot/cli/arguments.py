"""The `trio-bot` command line's grammar: every command, flag, default, help text and the
documented range of each numeric option (README, "Commands").

A value out of range is refused while parsing, as one line naming the option, the value
and what was expected (exit status 2); argparse's own usage dump is never printed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from engine.checks import PORT, ROW_ID, Range, identifier_problem, integer
from engine.errors import ConfigError
from trio_bot.cli.errors import UsageError

# Accepted ranges of the numeric options (README, "Commands").
WAVE_INTERVAL = Range(0.0, 604_800.0, low_open=True)
WAVES = integer(1, 1_000_000_000)
LAST = integer(0, 1_000_000_000)
SEED = integer(0, 2**63 - 1)


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


def build_parser() -> argparse.ArgumentParser:
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
        cmd.add_argument("--url", help="the running instance's API or dashboard link (default: where the instance "
                                       "running on --db says it listens, else from --config, "
                                       "else http://127.0.0.1:8080)")
        cmd.add_argument("--db", default=DEFAULT_DB, help=f"the running instance's storage URL (default {DEFAULT_DB})")
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

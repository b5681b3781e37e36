"""A crash trial: `trio-bot run` live against `trio-bot fake-exchange`, killed with SIGKILL at a
named moment, restarted, stopped with SIGINT, checked (tests/crash_checks.py), and so on.

The moments (`MOMENTS`) are seen as they happen, on the bot's `-v` log (the engine logs each step
right after taking it) or on the exchange's (`trio-bot -v fake-exchange` logs each order request
as it arrives, before its delay, and each stop it triggers); the SIGKILL follows at once. The
exchange holds every entry and every stop 0.3 s before answering, so a kill at "entry sent" lands
while the exchange has the entry and the bot has no answer, and one at "entry filled" lands before
the stop is sent. Prices follow a seeded path (scenario ticks every 0.5 s, about 0.3 % a second)
so trailing stops move and trigger within seconds.

One trial, for each of its moments: a bot trades until the moment and is killed; a second bot
restarts on the same store (replaying a few earlier signal ids, which must not trade again, and
bringing new ones), runs for a moment and is stopped with SIGINT after start-up, which must exit
0; then the exchange and the store are checked. Finally a clean restart (a bot started after a
clean exit) must find nothing to reconcile, exit 0 on SIGINT, and the checks must hold again.

Every wait is bounded; every process is killed in a `finally`.
"""

from __future__ import annotations

import json
import math
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.crash_checks import KEY, SECRET, cli_json, closed_while_down, problems, snapshot

PRICES = {"BTCUSDT": 67000.0, "ETHUSDT": 2600.0, "BNBUSDT": 600.0, "SOLUSDT": 150.0, "XRPUSDT": 0.55,
          "NEOUSDT": 10.0, "ADAUSDT": 0.45, "LTCUSDT": 80.0}
SYMBOLS = tuple(PRICES)
ENTRY_DELAY, STOP_DELAY = 0.3, 0.3
RAN_LONG = 1.5  # seconds after start-up
TICK_EVERY, TICK_SIGMA, TICKS_FOR = 0.5, 0.002, 900.0  # seconds, log-step per tick, path length

# name -> (whose log, the line that says it happened)
MOMENTS: dict[str, tuple[str, re.Pattern[str]]] = {
    "intent_stored": ("bot", re.compile(r"INFO trio_bot\.engine: intent_stored ")),
    "entry_sent": ("exchange", re.compile(r"received POST /fapi/v1/order tb-\d+-entry\b")),
    "entry_filled": ("bot", re.compile(r"INFO trio_bot\.engine: entry_filled ")),
    "stop_placed": ("bot", re.compile(r"INFO trio_bot\.engine: stop_placed ")),
    "stop_moved": ("exchange", re.compile(r"received POST /fapi/v1/algoOrder tb-\d+-stop(?:[2-9]|\d\d+)\b")),
    "position_closed": ("exchange", re.compile(r"triggered \S+ tb-\d+-stop\d+\b")),
}

CONFIG = """\
[exchange]
name = "binanceusdm"
live = true
base_url = "http://127.0.0.1:{port}"
ws_url = "ws://127.0.0.1:{ws_port}"
api_key_env = "TRIO_BOT_API_KEY"
api_secret_env = "TRIO_BOT_API_SECRET"
symbols = {symbols}
price_poll_interval = 0.5

[engine]
max_positions_per_wave = 3
max_concurrent_signals = 3
position_size_usdt = 100.0
stop_loss_percent = 1.0
trailing_activation_percent = 0.1
trailing_callback_percent = 0.5
# The local server applies a delayed entry within 0.3 s: a 10 s window resolves every entry of
# unknown outcome, and keeps the final SIGINT's wait for them inside the trial's exit deadline.
unknown_outcome_window = 10.0
"""


def scenario(seed: int) -> str:
    rng = random.Random(seed)
    lines = ["[exchange]", "balance_usdt = 100000.0"]
    for symbol, price in PRICES.items():
        lines += [f"[exchange.markets.{symbol}]", f"price = {price}"]
    for point, seconds in (("exchange.entry_order", ENTRY_DELAY), ("exchange.stop_order", STOP_DELAY)):
        lines += ["[[faults]]", f'point = "{point}"', 'effect = "delay"', f"seconds = {seconds}"]
    level = {s: math.log(p) for s, p in PRICES.items()}
    for step in range(1, int(TICKS_FOR / TICK_EVERY)):
        for symbol in SYMBOLS:
            level[symbol] += rng.gauss(0.0, TICK_SIGMA)
            lines += ["[[ticks]]", f"at = {step * TICK_EVERY}", f'symbol = "{symbol}"',
                      f"price = {math.exp(level[symbol]):.10g}"]
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    return {**os.environ, "TRIO_BOT_API_KEY": KEY, "TRIO_BOT_API_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}


class Process:
    """A trio-bot process whose output lines are read on a thread into a shared queue (waits stay
    bounded): (source, line)."""

    def __init__(self, name: str, args: list[str], cwd: Path, lines: queue.Queue[tuple[str, str | None]]) -> None:
        self.name = name
        self.proc = subprocess.Popen([sys.executable, "-m", "trio_bot.cli", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env(), cwd=cwd)
        self.output: list[str] = []
        self.waves: list[list[dict[str, Any]]] = []  # the signals file it was given
        self.started = 0.0  # monotonic time its start-up ended
        self._lines = lines
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self._lines.put((self.name, line))
        self._lines.put((self.name, None))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def delivered(self) -> list[list[dict[str, Any]]]:
        """The waves of its signals file it took in (one "wave of N signals" line each)."""
        return self.waves[:sum("trio-bot: wave of " in line for line in self.output)]

    def transcript(self, tail: int = 4000) -> str:
        return "".join(self.output)[-tail:]


class Trial:
    """One exchange and the bots that trade on it one after another; see the module docstring."""

    def __init__(self, tmp: Path, seed: int, db: str) -> None:
        self.tmp, self.seed, self.db = tmp, seed, db
        self.rng = random.Random(seed)
        self.port, self.ws_port = free_port(), free_port()
        self.lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self.bots: list[Process] = []
        self.handled: list[list[dict[str, Any]]] = []  # waves some bot took in
        self.next_wave = 0
        self.expect_closed: tuple[int, ...] = ()
        # A restart records the exits that happened while no bot ran once it has re-read its positions,
        # just after start-up: expected of a bot that then ran RAN_LONG seconds, not of one stopped at once.
        self.ran_long = False
        self.log: list[str] = []  # what the trial did, for the failure message
        (tmp / "scenario.toml").write_text(scenario(seed))
        (tmp / "live.toml").write_text(CONFIG.format(port=self.port, ws_port=self.ws_port,
                                                     symbols=json.dumps(list(SYMBOLS))))
        self.exchange = Process("exchange", ["-v", "fake-exchange", "--port", str(self.port), "--ws-port",
                                             str(self.ws_port), "--scenario", "scenario.toml"], tmp, self.lines)
        self._await(lambda src, line: src == "exchange" and "fake Binance" in line, 30.0, "the exchange to start")

    # --- processes ---

    def _await(self, match: Any, timeout: float, what: str) -> str:
        """The first line (from now) `match(source, line)` accepts; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                source, line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                if source == "exchange":
                    raise AssertionError(f"the exchange exited while waiting for {what}")
                if self.bots and source == self.bots[-1].name:
                    raise AssertionError(f"the bot exited while waiting for {what}:\n{self.bots[-1].transcript()}")
                continue
            if match(source, line):
                return line
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def _waves(self, replay: int, fresh: int) -> list[list[dict[str, Any]]]:
        """`replay` waves an earlier bot took in (every id must be refused as handled), then `fresh`
        new ones; 150 fresh waves last a minute, so the bot keeps running until it is stopped."""
        for bot in self.bots:
            self.handled += [w for w in bot.delivered() if w not in self.handled]
        waves = [self.rng.choice(self.handled) for _ in range(min(replay, len(self.handled)))]
        for _ in range(fresh):
            w = self.next_wave
            self.next_wave += 1
            picked = self.rng.sample(SYMBOLS, 3)
            waves.append([{"id": f"s{w}-{i}", "symbol": s, "side": self.rng.choice(("long", "short")),
                           "score": round(self.rng.uniform(1, 9), 2)} for i, s in enumerate(picked)])
        return waves

    def _drain(self) -> None:
        while True:
            try:
                self.lines.get_nowait()
            except queue.Empty:
                return

    def start_bot(self, *, replay: int, fresh: int) -> Process:
        waves = self._waves(replay, fresh)
        signals = f"waves-{len(self.bots)}.jsonl"
        (self.tmp / signals).write_text("".join(json.dumps(w) + "\n" for w in waves))
        self._drain()  # what earlier bots and the exchange said is no moment of this bot's
        bot = Process(f"bot{len(self.bots)}", [
            "-v", "run", "--config", "live.toml", "--db", self.db, "--signals", signals, "--wave-interval", "0.4",
            "--no-api", "--seed", str(self.seed)], self.tmp, self.lines)
        bot.waves = waves
        self.bots.append(bot)
        self._await(lambda src, line: src == bot.name and "Ctrl-C to stop" in line, 60.0,
                    f"{bot.name} to finish starting")
        bot.started = time.monotonic()
        return bot

    def _stopped(self, bot: Process) -> None:
        self.ran_long = self.ran_long or time.monotonic() - bot.started >= RAN_LONG

    # --- the steps of a trial ---

    def kill_at(self, moment: str, nth: int, timeout: float = 60.0) -> None:
        """Start a bot, SIGKILL it the moment `moment` happens for the `nth` time."""
        bot = self.start_bot(replay=2, fresh=150)
        whose, pattern = MOMENTS[moment]
        source = bot.name if whose == "bot" else "exchange"
        seen = 0

        def hit(src: str, line: str) -> bool:
            nonlocal seen
            if src == source and pattern.search(line):
                seen += 1
            return seen >= nth

        line = self._await(hit, timeout, f"{moment} #{nth} on {bot.name}")
        bot.kill()
        self._stopped(bot)
        self.log.append(f"{bot.name}: SIGKILL at {moment} #{nth}: {line.strip()}")

    def restart_and_interrupt(self, *, settle: float) -> list[str]:
        """Restart, let it run `settle` seconds after start-up, SIGINT: it must exit 0 without a traceback.
        Returns its restart summary lines."""
        bot = self.start_bot(replay=3, fresh=150 if settle else 0)
        time.sleep(settle)
        bot.proc.send_signal(signal.SIGINT)
        self._stopped(bot)
        try:
            code = bot.proc.wait(timeout=60)
        finally:
            bot.kill()
        time.sleep(0.2)  # the output pump reads the last lines
        self.log.append(f"{bot.name}: SIGINT {settle:.1f} s after start-up, exit {code}")
        transcript = bot.transcript(6000)
        assert code == 0, f"{bot.name}: SIGINT exit status {code}:\n{transcript}"
        assert "Traceback" not in "".join(bot.output), f"{bot.name}: a traceback:\n{transcript}"
        return [line.strip() for line in bot.output if "trio-bot: restart:" in line]

    def check(self) -> dict[str, Any]:
        found = snapshot(self.port, self.db, SYMBOLS)
        broken = problems(found, expect_closed=self.expect_closed if self.ran_long else ())
        self.expect_closed, self.ran_long = tuple(closed_while_down(found)), False
        if self.expect_closed:
            self.log.append(f"closed by their stops while no bot ran: positions {list(self.expect_closed)}")
        assert not broken, "\n".join(broken) + "\n\ntrial steps:\n" + "\n".join(self.log) + \
            self._evidence(found, broken)
        return found

    def _evidence(self, found: dict[str, Any], broken: list[str]) -> str:
        """What a reader needs to find the cause: the rows and timelines of the positions named."""
        named = {int(n) for line in broken for n in re.findall(r"tb-(\d+)-|position (\d+)", line) for n in n if n}
        symbols = {w for line in broken for w in re.findall(r"\b[A-Z]{3,}USDT\b", line)}
        rows = [p for p in found["store"] if p["id"] in named or p["symbol"] in symbols]
        text = "\n\nstore rows:\n" + "\n".join(json.dumps(p) for p in rows)
        for p in rows:
            events = cli_json("events", "--db", self.db, "--position", str(p["id"]))["events"]
            text += f"\n\nposition {p['id']} timeline:\n" + "\n".join(
                f"{e['at']:.3f} {e['kind']} {e['detail']}" for e in events)
        orders = [o for o in found["history"] + found["algo_history"] if o["symbol"] in symbols]
        text += "\n\nexchange orders there:\n" + "\n".join(
            f"{o.get('clientOrderId') or o.get('clientAlgoId')} {o.get('status') or o.get('algoStatus')} "
            f"{o.get('type') or o.get('orderType')} t={o.get('time') or o.get('createTime')} "
            f"u={o.get('updateTime')}" for o in orders)
        bots = "\n".join(f"--- {b.name}:\n{b.transcript(3000)}" for b in self.bots[-2:])
        return f"{text}\n\nheld: {found['held']}\n\nlast bots:\n{bots}"

    def close(self) -> None:
        for b in self.bots:
            b.kill()
        self.exchange.proc.send_signal(signal.SIGINT)
        try:
            self.exchange.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.exchange.kill()


def run_trial(tmp: Path, seed: int, db: str, moments: list[str]) -> dict[str, Any]:
    """Kill at each named moment (restart, SIGINT, check after each), then a clean restart and the
    checks once more. Returns what the trial did and found; AssertionError names what broke."""
    trial = Trial(tmp, seed, db)
    try:
        return _run(trial, moments)
    except AssertionError as failure:  # kept beside the trial's files: a long run prints it only at its end
        (tmp / "failure.txt").write_text(str(failure))
        raise
    finally:
        trial.close()


def _run(trial: Trial, moments: list[str]) -> dict[str, Any]:
    for moment in moments:
        trial.kill_at(moment, nth=trial.rng.randint(1, 2))
        trial.restart_and_interrupt(settle=trial.rng.uniform(0.5, 3.0))
        trial.check()
    summary = trial.restart_and_interrupt(settle=0.0)
    unfinished = [line for line in summary if "reconciled" in line or "interrupted" in line
                  or "no stop on record" in line]
    assert not unfinished, f"a restart after a clean exit found work left over: {unfinished}\n" + \
        "\n".join(trial.log)
    found = trial.check()
    assert found["waves"], "no wave ran at all: the trial proved nothing"
    return {"steps": trial.log, "found": found}

"""Through the whole `trio-bot run` path, live against `trio-bot fake-exchange`: Binance answers
an entry 503 "Unknown error" and executes it 3 s later; Ctrl-C arrives in between. The run says
on screen what it waits for, protects the late fill before it exits, and the stored outcome
says `opened`, with the time it was resolved."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.crash_driver import CONFIG, env, free_port
from tests.crash_paper_checks import Bot, check, problems

pytestmark = pytest.mark.e2e

SCENARIO = """\
[exchange]
balance_usdt = 100000.0
[exchange.markets.BTCUSDT]
price = 67000.0
[exchange.markets.ETHUSDT]
price = 2600.0

[[faults]]
point = "exchange.entry_order"
effect = "unknown"
seconds = 3.0
times = 1
match = {symbol = "BTCUSDT"}
"""


def test_ctrl_c_waits_for_a_late_entry_protects_it_and_says_so(tmp_path: Path) -> None:
    port, ws_port = free_port(), free_port()
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    (tmp_path / "live.toml").write_text(CONFIG.format(port=port, ws_port=ws_port,
                                                      symbols=json.dumps(["BTCUSDT", "ETHUSDT"])))
    # Two waves 600 s apart: the run is waiting for the second when Ctrl-C arrives.
    waves = [[{"id": sid, "symbol": symbol, "side": "long", "score": 5}]
             for sid, symbol in (("late-1", "BTCUSDT"), ("next-1", "ETHUSDT"))]
    (tmp_path / "waves.jsonl").write_text("".join(json.dumps(w) + "\n" for w in waves))
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    exchange = subprocess.Popen([sys.executable, "-m", "trio_bot.cli", "fake-exchange", "--port", str(port),
                                 "--ws-port", str(ws_port), "--scenario", "scenario.toml"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=tmp_path)
    bot = None
    try:
        assert exchange.stdout is not None and "fake Binance" in exchange.stdout.readline()
        bot = Bot(["run", "--config", "live.toml", "--db", db, "--signals", "waves.jsonl",
                   "--wave-interval", "600", "--no-api"], tmp_path)
        deadline = time.monotonic() + 60
        while not any(line.startswith("wave w1") for line in bot.output) and time.monotonic() < deadline:
            bot.wait_lines(1, timeout=1.0)
        reported = [line for line in bot.output if "late-1" in line and "timed_out" in line]
        assert reported and "entry order outcome unknown" in reported[0], "".join(bot.output)
        bot.proc.send_signal(signal.SIGINT)  # before the exchange executes the entry
        code = bot.finish(timeout=60.0)
        transcript = "".join(bot.output)
        assert code == 0, transcript[-3000:]
        assert "shutdown: waiting up to" in transcript and "(BTCUSDT, signal late-1" in transcript, transcript
        assert "resolved: opened" in transcript, transcript
        # Ctrl-C came first; the run waited for the late fill, protected it, then left.
        assert transcript.index("SIGINT: finishing up") < transcript.index("resolved: opened"), transcript
        found = check(port, db)
        assert problems(found) == [], problems(found)
        assert list(found["held"]) == ["BTCUSDT"]  # the late fill, held and covered by its stop
        (wave,) = found["waves"]["waves"]
        (sig,) = wave["signals"]
        assert sig["outcome"] == "opened" and sig["resolved_at"] is not None
    finally:
        if bot is not None:
            bot.kill()
        exchange.send_signal(signal.SIGINT)
        try:
            exchange.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            exchange.kill()
            exchange.communicate(timeout=10)

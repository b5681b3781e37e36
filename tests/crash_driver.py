"""A crash trial: `trio-bot run` live against `trio-bot fake-exchange`, killed with SIGKILL at
moments chosen from its progress, restarted, finally stopped with SIGINT, then the exchange
(read over its REST API) and the store (read with the CLI) are compared.

The exchange delays entries and stops, so a kill lands between an entry and its stop as often as
not; prices walk every second with tight trailing settings, so stops also move. Every wait is
bounded and every process is killed in a `finally`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

KEY, SECRET = "chaos-key", "chaos-secret-0123456789"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "NEOUSDT")
ENTRY_DELAY, STOP_DELAY = 0.3, 0.3

SCENARIO = f"""\
[exchange]
balance_usdt = 100000.0
{chr(10).join(f'[exchange.markets.{s}]{chr(10)}price = {p}' for s, p in (
    ("BTCUSDT", 67000.0), ("ETHUSDT", 2600.0), ("BNBUSDT", 600.0), ("SOLUSDT", 150.0), ("XRPUSDT", 0.55),
    ("NEOUSDT", 10.0)))}

[[faults]]
point = "exchange.entry_order"
effect = "delay"
seconds = {ENTRY_DELAY}

[[faults]]
point = "exchange.stop_order"
effect = "delay"
seconds = {STOP_DELAY}
"""

# Prices walk ~0.1 % a second: trailing activates within seconds and stops move, while a stop that
# triggers in the second between the bot's exit and the checks (a change the store cannot know) is rare.
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
trailing_callback_percent = 0.6
# The local server applies a delayed entry within 0.3 s: a 10 s window resolves every entry of
# unknown outcome, and keeps the final SIGINT's wait for them inside the trial's exit deadline.
unknown_outcome_window = 10.0
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    return {**os.environ, "TRIO_BOT_API_KEY": KEY, "TRIO_BOT_API_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}


def signed_get(port: int, path: str, **params: str) -> Any:
    """A signed GET on the exchange's REST API, as any Binance client sends it."""
    query = urllib.parse.urlencode({**params, "timestamp": str(int(time.time() * 1000)), "recvWindow": "5000"})
    signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}?{query}&signature={signature}",
                                     headers={"X-MBX-APIKEY": KEY})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Bot:
    """One `trio-bot run` process whose output lines are read on a thread (so waits stay bounded)."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "trio_bot.cli", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env(), cwd=cwd)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_lines(self, n: int, timeout: float) -> int:
        """Read up to `n` more lines within `timeout` seconds; the number read."""
        deadline, read = time.monotonic() + timeout, 0
        while read < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            read += 1
        return read

    def finish(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        self.wait_lines(10**6, 2.0)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def cli_json(*args: str) -> Any:
    """A read-only CLI command's JSON, run in this process (a new interpreter per read costs seconds)."""
    from trio_bot.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    assert code == 0, f"trio-bot {' '.join(args)} exited {code}"
    return json.loads(out.getvalue())


def run_trial(tmp: Path, seed: int, *, kills: int = 2, waves: int = 40,
              lines: tuple[int, int] = (15, 60)) -> dict[str, Any]:
    """Run one trial; returns what was found (see `check`). Raises AssertionError on a broken invariant."""
    rng = random.Random(seed)
    port = free_port()
    ws_port = free_port()
    (tmp / "scenario.toml").write_text(SCENARIO)
    (tmp / "live.toml").write_text(CONFIG.format(port=port, ws_port=ws_port, symbols=json.dumps(list(SYMBOLS))))
    with (tmp / "waves.jsonl").open("w") as f:
        for w in range(waves):
            picked = rng.sample(SYMBOLS, 3)
            f.write(json.dumps([{"id": f"s{w}-{i}", "symbol": s, "side": rng.choice(("long", "short")),
                                 "score": round(rng.uniform(1, 9), 2)} for i, s in enumerate(picked)]) + "\n")
    db = f"sqlite:///{tmp / 'chaos.db'}"
    run_args = ["-v", "run", "--config", "live.toml", "--db", db, "--signals", "waves.jsonl",
                "--wave-interval", "0.4", "--no-api", "--seed", str(seed)]
    exchange = subprocess.Popen([sys.executable, "-m", "trio_bot.cli", "fake-exchange", "--port", str(port),
                                 "--ws-port", str(ws_port), "--scenario", "scenario.toml", "--walk",
                                 "--seed", str(seed)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=tmp)
    bots: list[Bot] = []
    try:
        assert exchange.stdout is not None
        assert "fake Binance" in exchange.stdout.readline()
        for _ in range(kills):
            bot = Bot(run_args, tmp)
            bots.append(bot)
            bot.wait_lines(rng.randint(*lines), timeout=8.0)
            time.sleep(rng.uniform(0.0, 0.5))
            bot.kill()  # SIGKILL
        bot = Bot(run_args, tmp)
        bots.append(bot)
        bot.wait_lines(rng.randint(*lines), timeout=8.0)
        bot.proc.send_signal(signal.SIGINT)
        code = bot.finish(timeout=30.0)
        transcript = "".join(bot.output)
        assert code == 0, f"SIGINT exit status {code}:\n{transcript[-3000:]}"
        return check(port, db)
    finally:
        for b in bots:
            b.kill()
        exchange.send_signal(signal.SIGINT)
        try:
            exchange.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            exchange.kill()
            exchange.communicate(timeout=10)


def check(port: int, db: str) -> dict[str, Any]:
    positions = [p for p in signed_get(port, "/fapi/v2/positionRisk") if float(p["positionAmt"]) != 0]
    held = {p["symbol"]: float(p["positionAmt"]) for p in positions}
    algo = signed_get(port, "/fapi/v1/openAlgoOrders")
    plain = signed_get(port, "/fapi/v1/openOrders")
    stored = cli_json("positions", "--db", db)
    waves = cli_json("waves", "--db", db)
    history = cli_json("positions", "--db", db, "--all")
    return {"held": held, "algo": algo, "plain": plain, "stored": stored, "waves": waves, "history": history}


def _reduce_only(order: dict[str, Any]) -> bool:
    return str(order.get("reduceOnly", "")).lower() == "true" or str(order.get("closePosition", "")).lower() == "true"


def _stop_qty(order: dict[str, Any]) -> float:
    return float(order.get("quantity") or order.get("origQty") or 0)


def problems(found: dict[str, Any]) -> list[str]:
    """Every invariant the trial broke, in words (empty: the exchange and the store agree)."""
    out: list[str] = []
    held: dict[str, float] = found["held"]
    reduce_only = [o for o in found["algo"] + found["plain"] if _reduce_only(o)]
    for symbol, amount in held.items():
        closing_side = "SELL" if amount > 0 else "BUY"
        cover = sum(_stop_qty(o) for o in found["algo"]
                    if o["symbol"] == symbol and _reduce_only(o) and o["side"] == closing_side)
        if cover + 1e-12 < abs(amount):
            out.append(f"{symbol}: {amount} held, reduce-only stops cover only {cover}")
    stored: dict[str, float] = {}
    for p in found["stored"]["positions"]:
        sign = 1.0 if p["side"] == "long" else -1.0
        stored[p["symbol"]] = stored.get(p["symbol"], 0.0) + sign * float(p["quantity"])
    for symbol in sorted(set(held) | set(stored)):
        if abs(held.get(symbol, 0.0) - stored.get(symbol, 0.0)) > 1e-9:
            out.append(f"{symbol}: exchange holds {held.get(symbol, 0.0)}, store says {stored.get(symbol, 0.0)}")
    for o in reduce_only:
        if o["symbol"] not in held:
            out.append(f"{o['symbol']}: reduce-only order {o.get('clientAlgoId') or o.get('clientOrderId')} "
                       "without a position")
    for wave in found["waves"]["waves"]:
        if wave.get("duration") is None:
            out.append(f"wave {wave['id']} has no end")
        for s in wave["signals"]:
            if not s.get("outcome"):
                out.append(f"wave {wave['id']}: signal {s['id']} without an outcome")
    traded = Counter(p["signal_id"] for p in found["history"]["positions"])
    opened = Counter(s["id"] for w in found["waves"]["waves"] for s in w["signals"] if s["outcome"] == "opened")
    for signal_id in traded + opened:
        if traded[signal_id] > 1 or opened[signal_id] > 1:
            out.append(f"signal {signal_id} traded {max(traded[signal_id], opened[signal_id])} times")
    return out

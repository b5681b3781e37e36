"""A simple process handle and the basic exchange/store checks, for trials that build the exchange
side themselves (the paper crash trial: a paper account has no REST API) or need only the
basics (the unknown-outcome live test): found = {"held", "algo", "plain", "stored", "waves",
"history"}. The named-moment crash trials read much more (order history, store client ids): see
tests/crash_checks.py."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.crash_checks import cli_json, signed_get
from tests.crash_driver import env

__all__ = ["Bot", "check", "cli_json", "problems"]


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

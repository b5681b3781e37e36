"""A virtual trading day: 96 waves of 20 signals, 20 symbols ticking every second for 24 h.

The day is an ordinary scenario file (prices through `[[walks]]`), run by `trio-bot simulate`'s
own code in a child process so its peak memory is its own:

    python -m bench.virtual_day [--hours H] [--out day.toml] [--report report.json]

prints one JSON object: seconds, cpu_seconds, peak_mb, ticks, ticks_per_second, invariants_hold.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SYMBOLS = 20
WAVE_EVERY = 900.0  # seconds: 96 waves in 24 h
SIGNALS_PER_WAVE = 20


def day_scenario(hours: float = 24.0, seed: int = 14) -> str:
    """The day as scenario TOML: a few kilobytes however many ticks it describes."""
    rng = random.Random(seed)
    symbols = [f"D{i:02d}USDT" for i in range(SYMBOLS)]
    until = hours * 3600.0
    lines = [f'name = "virtual-day-{hours:g}h"', f"seed = {seed}", "",
             "[engine]", "max_positions_per_wave = 5", "max_concurrent_signals = 5", "",
             "[exchange]", "balance_usdt = 100000.0", "latency = 0.05", ""]
    for i, symbol in enumerate(symbols):
        lines += [f"[exchange.markets.{symbol}]", f"price = {round(0.5 + 7.3 * i + rng.random(), 4)}", ""]
    lines += ["[[walks]]", "every = 1.0", "step_percent = 0.05", ""]
    n = 0
    at = 0.0
    while at < until:
        lines += ["[[waves]]", f"at = {at}", "signals = ["]
        for _ in range(SIGNALS_PER_WAVE):
            n += 1
            side = "long" if rng.random() < 0.5 else "short"
            lines.append(f'  {{ id = "{n}", symbol = "{rng.choice(symbols)}", side = "{side}", '
                         f"score = {round(rng.uniform(1, 10), 3)} }},")
        lines += ["]", ""]
        at += WAVE_EVERY
    lines += ["[run]", f"until = {until}", ""]
    return "\n".join(lines)


def run_day(path: Path, report: Path | None = None) -> dict[str, Any]:
    """Load and simulate in this process; seconds include parsing, as a user waits for both."""
    import logging

    from adapters.sim.scenario import load_scenario
    from trio_bot.simulate import invariants_hold, simulate

    logging.disable(logging.CRITICAL)
    started, cpu = time.perf_counter(), time.process_time()
    result = simulate(load_scenario(path))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if report is not None:
        report.write_text(json.dumps(result, indent=2) + "\n")
    peak_kb = _peak_rss_kb()
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak_kb / 1024, "ticks": result["ticks"],
            "ticks_per_second": result["ticks"] / seconds, "invariants_hold": invariants_hold(result),
            "positions": len(result["positions"])}


def _peak_rss_kb() -> float:
    """This process's peak resident size. Linux's `ru_maxrss` carries the parent's peak over a
    fork and exec (`python -m bench` is large by the time it starts the day), so the address
    space's own high-water mark (`VmHWM`) is read where there is one."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def measure(hours: float = 24.0) -> dict[str, Any]:
    """Run the day in a child process (clean peak memory) and return its numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "day.toml"
        path.write_text(day_scenario(hours))
        out = subprocess.run([sys.executable, "-m", "bench.virtual_day", "--run", str(path)],
                             check=True, capture_output=True, text=True, timeout=1800)
    result: dict[str, Any] = json.loads(out.stdout)
    return {"hours": hours, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description="simulate a virtual trading day")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--out", type=Path, help="write the day's scenario file here and stop")
    parser.add_argument("--run", type=Path, help="simulate this scenario file in this process")
    parser.add_argument("--report", type=Path, help="with --run: write the simulation report here")
    args = parser.parse_args()
    if args.out is not None:
        args.out.write_text(day_scenario(args.hours))
        return
    result = run_day(args.run, args.report) if args.run is not None else measure(args.hours)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

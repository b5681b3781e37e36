"""`python -m bench [--quick] [--json] [--update | --out DIR]`: every benchmark, as ratios
measured side by side in one run.

Prints a table (or, with --json, one JSON object with the headline keys on stdout). The
tracked bench/results.json and bench/wave_scaling.png, which the README's numbers come
from, are rewritten only with --update, so a run to look never dirties the checkout;
--out DIR writes both files to DIR instead.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import api_load, live, overhead, paper_account, signals, soak, storage, virtual_day, waves

HERE = Path(__file__).resolve().parent
KEYS = ("wave_over_critical_path_n50", "speedup_vs_sequential_n50", "speedup_vs_sequential_n50_hangs",
        "cpu_ms_per_signal", "kb_per_position", "ticks_per_second_manager", "ticks_per_second_machine",
        "tick_to_order_p99_ms", "pg_over_asyncpg_ratio", "wave_over_critical_path_n50_api_load",
        "api_status_p99_ms", "webhook_signals_per_second", "signal_to_entry_ms_p99_websocket",
        "signal_to_entry_ms_p99_webhook", "signal_to_entry_ms_p99_nats", "virtual_day_seconds",
        "virtual_day_peak_mb", "simulated_ticks_per_second", "live_tick_to_stop_ms_p99",
        "live_tick_to_stop_ms_p99_back_to_back", "live_fill_to_record_ms_p99", "live_cpu_ms_per_signal",
        "kb_per_wave_soak", "paper_mutation_ms_p50", "paper_mutation_ms_p99")
GOALS = {"wave_over_critical_path_n50": ("<=", 1.2), "speedup_vs_sequential_n50": (">=", 25),
         "speedup_vs_sequential_n50_hangs": (">=", 25), "cpu_ms_per_signal": ("<=", 1.0),
         "ticks_per_second_manager": (">=", 100_000), "tick_to_order_p99_ms": ("<=", 1.0),
         "pg_over_asyncpg_ratio": ("<=", 1.5), "wave_over_critical_path_n50_api_load": ("<=", 1.2),
         "webhook_signals_per_second": (">=", 2000), "signal_to_entry_ms_p99_websocket": ("<=", 10),
         "signal_to_entry_ms_p99_webhook": ("<=", 10), "signal_to_entry_ms_p99_nats": ("<=", 10),
         "virtual_day_seconds": ("<=", 30), "virtual_day_peak_mb": ("<=", 300),
         "live_tick_to_stop_ms_p99": ("<=", 5.0), "live_fill_to_record_ms_p99": ("<=", 50.0),
         "kb_per_wave_soak": ("<=", 0.1)}


def _pg_url() -> str | None:
    url = os.environ.get("TRIO_BOT_TEST_PG", storage.DEFAULT_URL)
    try:
        import socket
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=2):
            return url
    except OSError:
        return None


def run(quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    sizes = (1, 10, 50, 200)
    wave = waves.measure(sizes)
    seeds = (1,) if quick else (1, 2, 3, 4, 5)
    hang_speedups = []
    for seed in seeds:
        engine, sequential = waves.run_engine(50, 0.10, seed), waves.run_sequential(50, 0.10, seed)
        hang_speedups.append(sequential["duration"] / engine["duration"])
    results: dict[str, Any] = {
        "waves": wave,
        "hang_speedups_by_seed": hang_speedups,
        "wave_over_critical_path_n50": wave["wave_over_critical_path_n50"],
        "speedup_vs_sequential_n50": wave["speedup_vs_sequential_n50"],
        "speedup_vs_sequential_n50_hangs": statistics.median(hang_speedups),
        "cpu_ms_per_signal": overhead.cpu_per_signal(200, rounds=1 if quick else 3),
        "kb_per_position": overhead.memory_per_position(300 if quick else 1000),
        "ticks_per_second_manager": overhead.trailing_throughput(1000, 50_000 if quick else 200_000),
        "ticks_per_second_manager_rising": overhead.trailing_throughput(1000, 20_000 if quick else 100_000,
                                                                        rising=True),
        "ticks_per_second_machine": overhead.machine_throughput(200_000 if quick else 1_000_000),
    }
    results.update(overhead.tick_to_order_latency(100 if quick else 200))
    results.update(live.measure(5 if quick else 20, 2 if quick else 5))
    results.update(paper_account.measure(150 if quick else 600))
    pg = _pg_url()
    store = storage.measure(pg, 50 if quick else 300, rounds=1 if quick else 3)
    results["storage"] = store
    results["api_load"] = api_load.measure(50, clients=4, rounds=1 if quick else 5)
    results["wave_over_critical_path_n50_api_load"] = results["api_load"]["wave_over_critical_path_n50_api_load"]
    results["api_status_p99_ms"] = results["api_load"]["api_status_p99_ms"]
    results["pg_over_asyncpg_ratio"] = store.get("pg_over_asyncpg_ratio")
    transports = signals.measure(10 if quick else 100, quick=quick)
    results["signals"] = transports
    results.update({key: value for key, value in transports.items() if key in KEYS})
    # The whole day takes about half a minute; --quick simulates its first hour.
    day = virtual_day.measure(hours=1.0 if quick else 24.0)
    results["virtual_day"] = day
    results["virtual_day_seconds"] = day["seconds"]
    results["virtual_day_peak_mb"] = day["peak_mb"]
    results["simulated_ticks_per_second"] = day["ticks_per_second"]
    # Memory held per wave between wave 200 and 1,000 of a simulated run (--quick: 120 to 200).
    results["soak"] = soak.measure(*((120, 200) if quick else (200, 1000)))
    results["kb_per_wave_soak"] = results["soak"]["kb_per_wave_soak"]
    results["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform(), "quick": quick}
    results["seconds"] = time.perf_counter() - started
    return results


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scaling = results["waves"]["scaling"]
    n = [s["n"] for s in scaling]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(n, [s["duration"] for s in scaling], "o-", label="trio-bot wave duration")
    ax.plot(n, [s["critical_path"] for s in scaling], "k--", label="critical path (round trips + rate limit)")
    seq = results["waves"]["sequential"]["plain"]["duration"]
    ax.plot([50], [seq], "rs", label=f"sequential design, N=50 ({seq:.1f} s)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("signals in the wave (target = N)")
    ax.set_ylabel("virtual seconds")
    ax.set_title("Wave duration, 50 ms per exchange call")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _verdict(key: str, value: float | None) -> str:
    if key not in GOALS or value is None:
        return ""
    op, goal = GOALS[key]
    ok = value <= goal if op == "<=" else value >= goal
    return f"{op} {goal:g}  {'met' if ok else 'MISSED'}"


def table(results: dict[str, Any]) -> str:
    lines = ["trio-bot benchmarks" + (" (quick)" if results["machine"]["quick"] else ""), ""]
    lines.append(f"{'N':>5}{'wave s':>10}{'critical s':>12}{'ratio':>8}")
    for s in results["waves"]["scaling"]:
        lines.append(f"{s['n']:>5}{s['duration']:>10.3f}{s['critical_path']:>12.3f}{s['ratio']:>8.2f}")
    lines.append("")
    for key in KEYS:
        value = results.get(key)
        missing = "n/a (no NATS)" if key.endswith("_nats") else "n/a (no PostgreSQL)"
        shown = missing if value is None else f"{value:,.3f}"
        lines.append(f"{key:<36}{shown:>16}   {_verdict(key, value)}")
    lines.append(f"{'ticks_per_second_manager_rising':<36}{results['ticks_per_second_manager_rising']:>16,.3f}")
    lines.append(f"{'tick_to_order_p50_ms':<36}{results['tick_to_order_p50_ms']:>16,.3f}")
    load = results["api_load"]
    for key in ("wave_over_critical_path_n50_realtime", "api_status_p50_ms", "api_status_requests_per_wave",
                "events_streamed_per_wave", "stream_lag_after_wave_s"):
        lines.append(f"{key:<36}{load[key] if load[key] is not None else float('nan'):>16,.3f}")
    for key, value in results["signals"].items():
        if key not in KEYS:
            lines.append(f"{key:<36}{value if value is not None else float('nan'):>16,.3f}")
    day = results["virtual_day"]
    lines.append(f"virtual day: {day['hours']:g} h, {day['ticks']:,} ticks, {day['positions']} positions, "
                 f"{day['cpu_seconds']:.1f} s CPU, invariants {'hold' if day['invariants_hold'] else 'BROKEN'}")
    lines.append("")
    lines.append(storage.table(results["storage"], rounds=1 if results["machine"]["quick"] else 3))
    lines.append(f"\n{results['machine']['cpus']} CPUs, Python {results['machine']['python']}, "
                 f"{results['seconds']:.0f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="trio-bot benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller runs, under 2 minutes")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the headline keys")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--update", action="store_true",
                       help="rewrite the tracked bench/results.json and bench/wave_scaling.png")
    where.add_argument("--out", type=Path, help="write results.json and wave_scaling.png to this folder")
    args = parser.parse_args()
    out: Path | None = HERE if args.update else args.out
    logging.disable(logging.CRITICAL)  # the hanging-call runs log every timeout; the numbers are the output
    with contextlib.redirect_stdout(io.StringIO()):
        results = run(args.quick)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
        plot(results, out / "wave_scaling.png")
    if args.json:
        print(json.dumps({key: results.get(key) for key in KEYS}))
    else:
        print(table(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

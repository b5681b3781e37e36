"""Shared builders: scenarios as dicts, run through the real simulate path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from adapters.sim.scenario import parse_scenario
from tests.natsutil import nats_stream  # noqa: F401  (a fixture, shared by every test module)
from tests.pgutil import pg_url  # noqa: F401  (a fixture, shared by every test module)
from trio_bot.simulate import simulate

PRICES = {
    "FORMUSDT": 0.8132, "ALICEUSDT": 0.3391, "BNBUSDT": 1083.5,
    "NEOUSDT": 5.62, "ALGOUSDT": 0.1942, "FILUSDT": 1.903,
}
SIDES = ["long", "short", "long", "long", "short", "long"]


def wave_signals(n: int = 6, start: int = 4974690) -> list[dict[str, Any]]:
    symbols = list(PRICES)
    return [{"id": str(start + i), "symbol": symbols[i], "side": SIDES[i], "score": 9.1 - i * 0.4}
            for i in range(n)]


def scenario(*, engine: dict[str, Any] | None = None, faults: list[dict[str, Any]] | None = None,
             waves: list[dict[str, Any]] | None = None, ticks: list[dict[str, Any]] | None = None,
             until: float = 300.0, latency: float = 0.05, balance: float = 10_000.0) -> dict[str, Any]:
    return {
        "name": "test",
        "seed": 1,
        "engine": {"max_positions_per_wave": 5, "max_concurrent_signals": 5, **(engine or {})},
        "exchange": {"balance_usdt": balance, "latency": latency,
                     "markets": {s: {"price": p} for s, p in PRICES.items()}},
        "faults": copy.deepcopy(faults or []),
        "waves": waves if waves is not None else [{"at": 0.0, "signals": wave_signals()}],
        "ticks": ticks or [],
        "run": {"until": until},
    }


def run(data: dict[str, Any]) -> dict[str, Any]:
    return simulate(parse_scenario(data))


def outcomes(report: dict[str, Any], wave: int = 0) -> dict[str, str]:
    return {s["symbol"]: s["outcome"] for s in report["waves"][wave]["signals"]}


def assert_invariants(report: dict[str, Any]) -> None:
    inv = report["invariants"]
    assert inv == {"counts_consistent": True, "unprotected_positions": 0, "duplicate_entries": 0,
                   "store_exchange_mismatches": 0, "opened_not_on_exchange": 0}, inv
    # Counts match the exchange: every `opened` signal holds a protected position there.
    held = {p["symbol"] for p in report["exchange"]["positions"]}
    stops = {o["symbol"] for o in report["exchange"]["open_orders"] if o["kind"] == "stop"}
    opened_now = {p["symbol"] for p in report["positions"] if p["status"] == "open"}
    assert opened_now == held <= stops


@pytest.fixture
def one_signal() -> dict[str, Any]:
    return {"engine": {"max_positions_per_wave": 1, "max_concurrent_signals": 1},
            "waves": [{"at": 0.0, "signals": wave_signals(1)}]}

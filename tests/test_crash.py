"""Crash trials: `trio-bot run` live against `trio-bot fake-exchange`, SIGKILLed at named moments
(intent stored, entry sent, entry filled, stop placed, stop moved, position closed), restarted,
stopped with SIGINT, restarted cleanly; after each restart the exchange and the store must agree
(tests/crash_driver.py, tests/crash_checks.py). On SQLite and PostgreSQL. A few trials run with
`make test-e2e`; `make chaos` runs 50."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.crash_driver import MOMENTS, run_trial

NAMES = sorted(MOMENTS)


def _trial(tmp_path: Path, seed: int, db: str, moments: list[str]) -> None:
    run_trial(tmp_path, seed, db, moments)


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'crash.db'}"


# CI: one moment per trial, each store twice; the moments rotate with the seeds.
@pytest.mark.e2e
@pytest.mark.parametrize(("seed", "moment"), [(1, "entry_sent"), (2, "stop_moved")])
def test_kill_9_on_sqlite_at_a_named_moment_then_restart_leaves_exchange_and_store_in_agreement(
        tmp_path: Path, seed: int, moment: str) -> None:
    _trial(tmp_path, seed, _sqlite(tmp_path), [moment])


@pytest.mark.e2e
@pytest.mark.parametrize(("seed", "moment"), [(3, "entry_filled"), (4, "position_closed")])
def test_kill_9_on_postgres_at_a_named_moment_then_restart_leaves_exchange_and_store_in_agreement(
        tmp_path: Path, pg_url: str, seed: int, moment: str) -> None:
    _trial(tmp_path, seed, pg_url, [moment])


def chaos_plan(seed: int) -> tuple[str, list[str]]:
    """Seeds 100-149: every moment is the first kill of some trials, a second kill follows at
    another moment; even seeds on SQLite, odd ones on PostgreSQL."""
    rng = random.Random(seed)
    first = NAMES[seed % len(NAMES)]
    return ("sqlite" if seed % 2 == 0 else "postgres"), [first, rng.choice([m for m in NAMES if m != first])]


@pytest.mark.chaos
@pytest.mark.parametrize("seed", range(100, 150))
def test_chaos_trial(tmp_path: Path, request: pytest.FixtureRequest, seed: int) -> None:
    store, moments = chaos_plan(seed)
    db = _sqlite(tmp_path) if store == "sqlite" else request.getfixturevalue("pg_url")
    _trial(tmp_path, seed, db, moments)

"""Crash trials: `trio-bot run` live against `trio-bot fake-exchange`, SIGKILLed between entries
and stops, restarted, stopped with SIGINT; then the exchange and the store must agree (see
tests/crash_driver.py). Two short trials run with the suite; `make chaos` runs 50."""

import pytest

from tests.crash_driver import problems, run_trial


def _trial(tmp_path, seed: int, kills: int, lines: tuple[int, int] = (15, 60)) -> None:
    found = run_trial(tmp_path, seed, kills=kills, lines=lines)
    broken = problems(found)
    assert not broken, "\n".join(broken) + f"\n\nexchange and store: {found}"
    assert found["waves"]["waves"], "no wave ran at all: the trial proved nothing"


@pytest.mark.e2e
@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_restart_and_sigint_leave_exchange_and_store_in_agreement(tmp_path, seed):
    _trial(tmp_path, seed, kills=1, lines=(20, 40))


@pytest.mark.chaos
@pytest.mark.parametrize("seed", range(100, 150))
def test_chaos_trial(tmp_path, seed):
    _trial(tmp_path, seed, kills=3)

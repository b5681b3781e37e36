"""Crash trials in paper mode: `trio-bot run` on its paper exchange, SIGKILLed at random moments,
restarted, finally stopped with SIGINT; then the paper account (read from its file) and the store
(read with the CLI) must agree.

Stops are tight and waves come every 0.4 s while prices walk every second, so stops fill and move
between waves and a kill often lands right after one did: the moment a paper account saved only
after each wave lost (the restarted exchange held the closed position again and a new wave then
doubled it). Each trial is bounded (about 30 s); `make chaos` runs more of them.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.exchange import SimExchange
from adapters.sim.paper_account import PaperAccountFile, paper_account_path
from tests.crash_paper_checks import Bot, cli_json, problems
from trio_bot.run import load_run_config

CONFIG = """\
[engine]
max_positions_per_wave = 3
max_concurrent_signals = 3
position_size_usdt = 100.0
stop_loss_percent = 0.15
trailing_activation_percent = 0.05
trailing_callback_percent = 0.1
# Sweeps every second: they run while stops fill and move. (`unknown_outcome_window` is left to
# the paper default, 0: an entry the paper account does not hold after a kill never reached it.)
sweep_interval = 1.0

[paper]
balance_usdt = 100000.0
latency = 0.05
[paper.markets.BTCUSDT]
price = 67000.0
[paper.markets.ETHUSDT]
price = 2600.0
[paper.markets.BNBUSDT]
price = 600.0
[paper.markets.SOLUSDT]
price = 150.0
[paper.markets.XRPUSDT]
price = 0.55
[paper.markets.NEOUSDT]
price = 10.0
"""


def paper_found(tmp: Path, db: str) -> dict[str, Any]:
    """The paper account in the shape `crash_driver.problems` reads an exchange in, plus the store."""
    file = paper_account_path(db)
    assert file is not None, "no paper account for this store"
    file = file if file.is_absolute() else tmp / file  # PostgreSQL: in the run's working directory
    assert file.exists(), "no paper account was written"
    account = PaperAccountFile.open(file)
    try:
        state = account.load()
    finally:
        account.close()
    assert state is not None
    exchange = SimExchange.from_spec(load_run_config(str(tmp / "paper.toml")).paper)
    exchange.import_state(state)
    held = {p.symbol: p.quantity if p.side.value == "long" else -p.quantity for p in exchange.positions_snapshot()}
    algo = [{"symbol": o.symbol, "side": o.side.value.upper(), "quantity": str(o.quantity),
             "reduceOnly": str(o.reduce_only).lower(), "clientAlgoId": o.client_order_id}
            for o in exchange.open_orders_snapshot()]
    return {"held": held, "algo": algo, "plain": [], "stored": cli_json("positions", "--db", db),
            "waves": cli_json("waves", "--db", db), "history": cli_json("positions", "--db", db, "--all")}


def started(bot: Bot, timeout: float) -> bool:
    """Read the bot's output until start-up is done (a SIGINT before that may end in a traceback)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any("open positions loaded" in line for line in bot.output):
            return True
        if bot.wait_lines(1, timeout=max(0.0, deadline - time.monotonic())) == 0:
            return False
    return False


def stop(bot: Bot) -> None:
    bot.proc.send_signal(signal.SIGINT)
    code = bot.finish(timeout=20.0)
    assert code == 0, f"SIGINT exit status {code}:\n{''.join(bot.output)[-3000:]}"


def run_paper_trial(tmp: Path, seed: int, *, kills: int, lines: tuple[int, int] = (10, 50),
                    db: str | None = None) -> dict[str, Any]:
    """`db`: the store's URL (default a SQLite file in `tmp`)."""
    rng = random.Random(seed)
    (tmp / "paper.toml").write_text(CONFIG)
    db = db or f"sqlite:///{tmp / 'paper.db'}"
    args = ["-v", "run", "--config", "paper.toml", "--db", db, "--wave-interval", "0.4", "--no-api",
            "--seed", str(seed)]
    bots: list[Bot] = []
    try:
        for _ in range(kills):
            bot = Bot(args, tmp)
            bots.append(bot)
            bot.wait_lines(rng.randint(*lines), timeout=6.0)
            time.sleep(rng.uniform(0.0, 1.2))  # past the wave's output: often between waves
            bot.kill()  # SIGKILL
        bot = Bot(args, tmp)
        bots.append(bot)
        assert started(bot, timeout=30.0), f"the last run did not start:\n{''.join(bot.output)[-3000:]}"
        bot.wait_lines(rng.randint(*lines), timeout=6.0)
        stop(bot)
        # A stop can fill on the very last price move, after the engine's last look and before its
        # exit: no store can know that (a real exchange does the same while the bot is stopped).
        # One more start-up reconciles it: its sweep runs before the first wave and hands a position
        # gone from the exchange to its follower, which records the exit within a few calls; prices
        # first move a second after start, so it is stopped half a second after its start-up.
        bot = Bot(args, tmp)
        bots.append(bot)
        assert started(bot, timeout=30.0), f"the settling run did not start:\n{''.join(bot.output)[-3000:]}"
        time.sleep(0.5)
        stop(bot)
        transcript = "".join(line for b in bots for line in b.output)
        assert "Traceback" not in transcript, transcript[-3000:]
        return paper_found(tmp, db)
    finally:
        for n, b in enumerate(bots):
            b.kill()
            (tmp / f"run-{n}.log").write_text("".join(b.output))  # for a failed trial's post-mortem


def summary(found: dict[str, Any]) -> str:
    stored = [(p["id"], p["symbol"], p["side"], p["quantity"]) for p in found["stored"]["positions"]]
    stops = [(o["clientAlgoId"], o["symbol"], o["side"], o["quantity"]) for o in found["algo"]]
    return f"paper account holds {found['held']}, stops {stops}; store has open {stored}"


def assert_agree(found: dict[str, Any]) -> None:
    broken = problems(found)
    assert not broken, "\n".join(broken) + "\n\n" + summary(found)


def assert_proved_something(found: dict[str, Any]) -> None:
    assert found["waves"]["waves"], "no wave ran at all: the trial proved nothing"
    closed = [p for p in found["history"]["positions"] if p["status"] == "closed"]
    assert found["held"] or closed, "nothing was ever held: the trial proved nothing"


@pytest.mark.e2e
@pytest.mark.parametrize("seed", [11])
def test_kill_9_never_resurrects_or_loses_a_paper_position(tmp_path, seed):
    found = run_paper_trial(tmp_path, seed, kills=3)
    assert_agree(found)
    assert_proved_something(found)


@pytest.mark.e2e
@pytest.mark.parametrize("seed", [12])
def test_kill_9_in_paper_mode_with_the_store_on_postgres(tmp_path, pg_url, seed):
    # The paper account is its own SQLite file (in the working directory, named after the
    # database) while positions and waves are in PostgreSQL: the two must still agree.
    found = run_paper_trial(tmp_path, seed, kills=3, db=pg_url)
    assert_agree(found)
    assert_proved_something(found)


@pytest.mark.chaos
@pytest.mark.parametrize("seed", range(200, 250))
def test_paper_chaos_trial(tmp_path, request, seed):
    """Even seeds on SQLite, odd ones on PostgreSQL."""
    db = None if seed % 2 == 0 else request.getfixturevalue("pg_url")
    assert_agree(run_paper_trial(tmp_path, seed, kills=3, db=db))

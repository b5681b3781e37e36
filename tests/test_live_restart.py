"""Live mode survives the exchange going away: `trio-bot run` with examples/binance-local.toml
against the local Binance server, which is killed and restarted on the same ports with its
state (positions, orders) intact, and fills a stop while it is away.

Afterwards the exchange and the store must agree: the position whose stop filled while the
bot could not see it is recorded closed at that fill (no missed fill), every other position
is open with exactly one live stop, and no entry was sent twice (no duplicate orders).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import trio

from adapters.sim.fake_binance import FakeBinance
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from engine.model import OrderKind, OrderSide
from trio_bot.paper_markets import PAPER_PRICES

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
KEY, SECRET = "restart-key", "restart-secret"


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _stored(db: Path) -> list[tuple[int, str, str, str | None, float | None]]:
    """(id, symbol, status, exit reason, exit price) per stored position, read-only."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return [tuple(r) for r in conn.execute(
            "SELECT id, symbol, status, exit_reason, exit_price FROM positions ORDER BY id")]


async def _until(condition, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    with trio.move_on_after(seconds):
        while True:
            if await trio.to_thread.run_sync(condition):
                return
            await trio.sleep(0.2)
    raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[tuple[IO[str], IO[str]]]:
    """The bot's stdout and stderr, as files (read after it ended)."""
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        yield out, err


async def test_live_run_survives_the_exchange_killed_and_restarted(tmp_path: Path,
                                                                    logs: tuple[IO[str], IO[str]]) -> None:
    port, ws_port = _free_ports(2)
    config = tmp_path / "live.toml"
    config.write_text((ROOT / "examples" / "binance-local.toml").read_text()
                      .replace("http://127.0.0.1:8765", f"http://127.0.0.1:{port}")
                      .replace("ws://127.0.0.1:8766", f"ws://127.0.0.1:{ws_port}")
                      .replace("price_poll_interval = 1.0", "price_poll_interval = 0.5"))
    db = tmp_path / "live.db"
    fake = FakeBinance(ExchangeSpec(markets=tuple(MarketSpec(s, p) for s, p in PAPER_PRICES.items())),
                       api_key=KEY, api_secret=SECRET)
    env = {**os.environ, "TRIO_BOT_API_KEY": KEY, "TRIO_BOT_API_SECRET": SECRET}
    command = [sys.executable, "-m", "trio_bot.cli", "run", "--config", str(config), "--db", f"sqlite:///{db}",
               "--waves", "2", "--wave-interval", "600", "--seed", "7", "--no-api"]

    def server_holds_three_protected() -> bool:
        held = fake.exchange.positions_snapshot()
        stops = [o for o in fake.exchange.open_orders_snapshot() if o.kind is OrderKind.STOP]
        return len(held) == 3 and len(stops) == 3

    scopes: list[trio.CancelScope] = []

    async def serve(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            await fake.serve(port=port, ws_port=ws_port, task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(serve)
        bot = await trio.lowlevel.open_process(command, env=env, cwd=tmp_path, stdout=logs[0], stderr=logs[1])
        try:
            await _until(server_holds_three_protected, 60, "three protected positions")
            await _until(lambda: db.exists() and sum(1 for r in _stored(db) if r[2] == "open") == 3, 30,
                         "three open positions stored")
            entries_before = len([f for f in fake.exchange.fills if f.kind is OrderKind.ENTRY])

            # The exchange goes away: every connection drops, nothing answers.
            scopes[-1].cancel()
            await trio.sleep(0.5)
            # While it is away, one position's stop fills (the market falls through it).
            victim = sorted(fake.exchange.positions_snapshot(), key=lambda h: h.symbol)[0]
            (stop,) = [o for o in fake.exchange.open_orders_snapshot() if o.symbol == victim.symbol]
            assert stop.stop_price is not None
            through = stop.stop_price * (0.98 if stop.side is OrderSide.SELL else 1.02)
            fake.exchange.set_price(victim.symbol, through)
            assert victim.symbol not in {h.symbol for h in fake.exchange.positions_snapshot()}
            await trio.sleep(3.0)  # the bot retries against a closed port meanwhile

            await nursery.start(serve)  # the same server, state intact, on the same ports

            def victim_closed() -> bool:
                return any(r[1] == victim.symbol and r[2] == "closed" for r in _stored(db))

            await _until(victim_closed, 30, f"{victim.symbol} recorded closed after the restart")
            await _until(lambda: fake.streams.connected > 0 and len(fake.user_streams._clients.get(KEY, ())) > 0,
                         30, "the market and user streams connected again")
        finally:
            if bot.returncode is None:
                bot.send_signal(signal.SIGINT)
                with trio.move_on_after(20):
                    await bot.wait()
                if bot.returncode is None:
                    bot.kill()
                    await bot.wait()
            scopes[-1].cancel()

    logs[1].flush()
    err = (tmp_path / "err").read_text()
    assert "Traceback" not in err, err
    rows = _stored(db)
    (closed,) = [r for r in rows if r[2] == "closed"]
    assert closed[1] == victim.symbol and closed[3] in ("stop_loss", "trailing_stop"), rows
    assert closed[4] == pytest.approx(through), "recorded at the fill the exchange made while away"
    still_open = {r[1] for r in rows if r[2] == "open"}
    assert still_open == {h.symbol for h in fake.exchange.positions_snapshot()}
    stops = [o for o in fake.exchange.open_orders_snapshot() if o.kind is OrderKind.STOP]
    assert sorted(o.symbol for o in stops) == sorted(still_open), "exactly one live stop per open position"
    listen_keys = [s for m, p, s in fake.hits if (m, p) == ("POST", "/fapi/v1/listenKey")]
    assert len(listen_keys) >= 2, "a listenKey again after the restart"
    entries = [f for f in fake.exchange.fills if f.kind is OrderKind.ENTRY]
    assert len(entries) == entries_before == 3, "no entry sent twice"

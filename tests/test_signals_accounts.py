"""`trio-bot run` processes fed by NATS JetStream, trading live on local exchange servers:
a bot killed between receiving a wave and acknowledging it, and several accounts on one stream.

Several processes each: marked `e2e` (`make test-e2e`; CI runs them after the suite).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from functools import partial
from pathlib import Path

import asyncpg
import pytest
import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.fake_binance import FakeBinance
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from tests.natsutil import Stream
from tests.pgutil import require_postgres, with_database
from tests.signalutil import eventually
from trio_bot.paper_markets import PAPER_PRICES

pytestmark = pytest.mark.e2e

MARKETS = ExchangeSpec(markets=tuple(MarketSpec(s, p) for s, p in PAPER_PRICES.items()))
WAVE = {"wave": "N1", "signals": [
    {"id": f"n1-{i}", "symbol": s, "side": "long" if i % 2 else "short", "score": 9 - i}
    for i, s in enumerate(["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"])]}


class Bot:
    """One `trio-bot run` process; its output is collected as it comes."""

    def __init__(self, tmp: Path, name: str, fake: FakeBinance, key: str, stream: Stream, db: str,
                 durable: str) -> None:
        config = tmp / f"{name}.toml"
        config.write_text(f"""
[exchange]
name = "binanceusdm"
live = true
base_url = "{fake.base_url}"
api_key_env = "BOT_KEY"
api_secret_env = "BOT_SECRET"
symbols = ["BTCUSDT"]

[signals]
source = "nats"
url = "{stream.url}"
stream = "{stream.name}"
subject = "{stream.subject}"
{f'durable = "{durable}"' if durable else ""}
ack_wait = 2

[engine]
max_positions_per_wave = 4
sweep_interval = 0
# The local server answers at once: an entry a kill left unknown is settled well within 10 s,
# which keeps the restarted bot's exit (it waits for such entries) inside the test's bound.
unknown_outcome_window = 10
""")
        self.args = [sys.executable, "-m", "trio_bot.cli", "run", "--config", str(config), "--db", db]
        self.env = {**os.environ, "BOT_KEY": key, "BOT_SECRET": "s3cret-" + key}
        self.cwd = tmp
        self.out = ""
        self.proc: trio.Process | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.proc = await trio.lowlevel.open_process(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                     env=self.env, cwd=self.cwd)
        task_status.started()
        try:
            assert self.proc.stdout is not None
            async for chunk in self.proc.stdout:
                self.out += chunk.decode()
            await self.proc.wait()
        finally:
            if self.proc.returncode is None:  # the test ended or failed first: never leave a bot behind
                self.proc.kill()
                with trio.CancelScope(shield=True):
                    await self.proc.wait()

    async def exited(self) -> int:
        await eventually(lambda: self.proc is not None and self.proc.returncode is not None, within=30)
        assert self.proc is not None and self.proc.returncode is not None
        return self.proc.returncode

    def stop(self, how: int = signal.SIGINT) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(how)


def fake_exchange(key: str) -> FakeBinance:
    return FakeBinance(MARKETS, api_key=key, api_secret="s3cret-" + key)


def entry_fills(exchange: SimExchange) -> dict[str, int]:
    counts: dict[str, int] = {}
    for fill in exchange.fills:
        if not fill.reduce_only:
            counts[fill.symbol] = counts.get(fill.symbol, 0) + 1
    return counts


async def consumers_ready(stream: Stream, count: int) -> None:
    while len(await trio.to_thread.run_sync(stream.consumers)) < count:  # noqa: ASYNC110 - the broker's state
        await trio.sleep(0.2)


async def settled(stream: Stream, durable: str, deliveries: int) -> None:
    """Until the consumer has had `deliveries` deliveries and nothing awaits an ack or a delivery."""
    while True:
        state = await trio.to_thread.run_sync(stream.consumer, durable)
        if state["deliveries"] >= deliveries and state["ack_pending"] == 0 and state["pending"] == 0:
            return
        await trio.sleep(0.2)


async def test_a_bot_killed_between_receiving_a_wave_and_acknowledging_it_trades_it_once(nats_stream, tmp_path):
    fake = fake_exchange("key-one")
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        first = Bot(tmp_path, "first", fake, "key-one", nats_stream, db, "acct-one")
        await nursery.start(first.run)
        with trio.fail_after(60):
            await consumers_ready(nats_stream, 1)
            await trio.to_thread.run_sync(nats_stream.publish, WAVE)
            await eventually(lambda: len(fake.exchange.fills) >= 1, within=30)
        first.stop(signal.SIGKILL)  # mid-wave: entries sent, nothing acknowledged
        await first.exited()
        assert "from nats (wave N1)" in first.out

        second = Bot(tmp_path, "second", fake, "key-one", nats_stream, db, "acct-one")
        await nursery.start(second.run)
        with trio.fail_after(60):  # the broker redelivers after ack_wait; the restarted bot settles it
            await settled(nats_stream, "acct-one", deliveries=2)
        second.stop()
        assert await second.exited() == 0, second.out
        nursery.cancel_scope.cancel()
    fills = entry_fills(fake.exchange)
    assert set(fills) <= {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"}
    assert all(n == 1 for n in fills.values()), f"a signal traded twice: {fills}"
    assert fake.exchange.unprotected_positions() == []


WAVE_2 = {"wave": "N2", "signals": [
    {"id": f"n2-{i}", "symbol": s, "side": "long", "score": 5 - i}
    for i, s in enumerate(["BNBUSDT", "DOGEUSDT", "ADAUSDT"])]}


async def test_three_accounts_on_one_stream_each_trade_every_wave_once(nats_stream, tmp_path):
    admin = require_postgres()
    names = [f"trio_bot_acct_{uuid.uuid4().hex[:10]}" for _ in range(3)]
    await trio.to_thread.run_sync(partial(admin_sql, admin, [f'CREATE DATABASE "{n}"' for n in names]))
    # One local exchange server holding the three accounts, one per API key.
    fake = FakeBinance(MARKETS, api_key="key-alpha", api_secret="s3cret-key-alpha", accounts=3)
    keys = list(fake.accounts)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            bots = []
            for key, name in zip(keys, names, strict=True):
                # One database per account on the shared server: it holds the account's state and its lease.
                bot = Bot(tmp_path, key, fake, key, nats_stream, with_database(admin, name), durable="")
                bots.append(bot)
                await nursery.start(bot.run)
            with trio.fail_after(90):
                await consumers_ready(nats_stream, 3)
                await trio.to_thread.run_sync(nats_stream.publish, WAVE, WAVE_2)
                for durable in await trio.to_thread.run_sync(nats_stream.consumers):
                    await settled(nats_stream, durable, deliveries=2)
                for bot in bots:
                    bot.stop()
                for bot in bots:
                    assert await bot.exited() == 0, bot.out
            nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(partial(admin_sql, admin, [f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'
                                                                 for n in names]))
    assert len(await trio.to_thread.run_sync(nats_stream.consumers)) == 3  # one durable consumer per account
    assert len(keys) == 3
    for account in fake.accounts.values():
        assert entry_fills(account.exchange) == {s: 1 for s in ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT",
                                                    "DOGEUSDT", "ADAUSDT"]}
        assert account.exchange.unprotected_positions() == []


def admin_sql(url: str, statements: list[str]) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()
    asyncio.run(go())

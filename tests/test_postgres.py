"""PostgreSQL under pressure: cancellation, lock waits, an exhausted pool, outages, the lease.

These run in real time (a socket to another process cannot run under the mock
clock). Every wait is bounded by an outer `fail_after`, so a regression shows
as a failure, never as a hung suite.
"""

from __future__ import annotations

import attrs
import pytest
import trio
import trio_asyncio

from adapters.leases import LeaseHeld, postgres_lease
from adapters.postgres_store import PostgresStore
from adapters.sim.exchange import SimExchange
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from engine import EngineConfig
from engine.errors import StorageError
from engine.model import Event, Position, PositionStatus, Side
from tests.pgutil import TcpProxy
from trio_bot import Engine
from trio_bot.aio import asyncio_loop


def position(pid=1, **kw):
    return Position(**{**dict(id=pid, signal_id="s", wave_id="w1", symbol="FORMUSDT", side=Side.LONG,
                              status=PositionStatus.OPEN, quantity=1.0, entry_client_id=f"tb-{pid}-entry"), **kw})


async def count_events(store):
    return len(await store.events())


async def test_cancelled_queries_roll_back_and_never_poison_the_pool(pg_url):
    async with asyncio_loop():
        store = await PostgresStore.open(pg_url, call_timeout=10.0, pool_size=2)
        try:
            for i in range(6):  # three times the pool size: a poisoned connection would show
                async def half_then_sleep(conn, i=i):
                    await conn.execute("INSERT INTO events (at, kind, detail, uid) VALUES (0, 'half', '', $1)",
                                       f"u{i}")
                    await conn.execute("SELECT pg_sleep(30)")

                with trio.fail_after(5), trio.move_on_after(0.3) as scope:
                    await store._run("half-written", half_then_sleep)
                assert scope.cancelled_caught
                with trio.fail_after(5):
                    assert await count_events(store) == 0  # rolled back, and the pool still works
            with trio.fail_after(5):
                await store.write([position()])
                assert (await store.position(1)).status is PositionStatus.OPEN
        finally:
            await store.aclose()


async def test_a_lock_wait_is_bounded_and_leaves_nothing_half_written(pg_url):
    async with asyncio_loop():
        store = await PostgresStore.open(pg_url, call_timeout=1.0)
        blocker = await trio_asyncio.aio_as_trio(_connect)(pg_url)
        try:
            await store.write([position(quantity=1.0)])
            await trio_asyncio.aio_as_trio(blocker.execute)("BEGIN; SELECT * FROM positions WHERE id = 1 FOR UPDATE")
            with trio.fail_after(5), pytest.raises(StorageError, match=r"did not answer within 1s"):
                await store.write([Event(at=0.0, kind="first", uid="e1"), position(quantity=2.0)])
            await trio_asyncio.aio_as_trio(blocker.execute)("ROLLBACK")
            with trio.fail_after(5):
                assert (await store.position(1)).quantity == 1.0
                assert await count_events(store) == 0  # the event before the wait was rolled back too
                await store.write([position(quantity=3.0)])
                assert (await store.position(1)).quantity == 3.0
        finally:
            await trio_asyncio.aio_as_trio(blocker.close)()
            await store.aclose()


async def _connect(url):
    import asyncpg

    return await asyncpg.connect(url)


async def test_an_exhausted_pool_times_out_instead_of_hanging(pg_url):
    async with asyncio_loop():
        store = await PostgresStore.open(pg_url, call_timeout=1.5, pool_size=2)
        try:
            async def hold(conn):
                await conn.execute("SELECT pg_sleep(1.2)")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(store._run, "hold", hold)
                nursery.start_soon(store._run, "hold", hold)
                await trio.sleep(0.2)
                with trio.fail_after(4), pytest.raises(StorageError, match=r"did not answer within 1\.5s"):
                    await store._run("third", hold)
            with trio.fail_after(5):
                assert await store.wave_count() == 0
        finally:
            await store.aclose()


async def test_database_down_at_start_names_the_url_without_the_password():
    async with asyncio_loop():
        with trio.fail_after(10), pytest.raises(StorageError) as info:
            await PostgresStore.open("postgresql://trader:hunter2@127.0.0.1:1/bot", call_timeout=3.0)
    message = str(info.value)
    assert "postgresql://***@127.0.0.1:1/bot" in message and "hunter2" not in message and "trader" not in message


async def test_database_lost_mid_run_fails_signals_cleanly_and_reconnects(pg_url):
    spec = ExchangeSpec(latency=0.0, markets=(MarketSpec("FORMUSDT", 0.8132), MarketSpec("NEOUSDT", 5.62),
                                              MarketSpec("FILUSDT", 1.9)))
    exchange = SimExchange.from_spec(spec)
    config = EngineConfig(call_timeout=1.0, signal_timeout=5.0, wave_timeout=20.0, sweep_interval=0,
                          stop_loss_retries=2, retry_backoff=0.05, writer_retry_backoff=0.1, shutdown_timeout=5.0)
    proxy = TcpProxy(pg_url)
    async with asyncio_loop(), trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        store = await PostgresStore.open(proxy.url_for(pg_url), call_timeout=1.0)
        try:
            with trio.fail_after(60):
                async with Engine.open(config, exchange, store) as engine:
                    proxy.down()
                    lost = await engine.process_wave([{"id": "1", "symbol": "FORMUSDT", "side": "long", "score": 2}])
                    (o,) = lost.outcomes
                    # Without the store no id can be checked against those already handled: no trade.
                    assert o.outcome == "rejected" and "could not check the signal ids" in o.reason
                    assert exchange.positions_snapshot() == []
                    proxy.up = True
                    back = await engine.process_wave([{"id": "2", "symbol": "NEOUSDT", "side": "long", "score": 2}])
                    assert back.counts.opened == 1
                    assert await engine.flush()
            assert [p.symbol for p in await store.positions()] == ["NEOUSDT"]
        finally:
            await store.aclose()
            nursery.cancel_scope.cancel()


async def test_one_instance_per_account(pg_url):
    async with asyncio_loop():
        with trio.fail_after(20):
            async with postgres_lease(pg_url, "binanceusdm:main"):
                with pytest.raises(LeaseHeld, match="another trio-bot instance is trading account 'binanceusdm:main'"):
                    async with postgres_lease(pg_url, "binanceusdm:main"):
                        pass
                async with postgres_lease(pg_url, "binanceusdm:other"):
                    pass  # another account is fine


async def test_standby_takes_over_when_the_first_stops(pg_url):
    taken = []
    async with asyncio_loop():
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                first_done = trio.Event()

                async def first():
                    async with postgres_lease(pg_url, "acct"):
                        taken.append("first")
                        await first_done.wait()

                async def second():
                    async with postgres_lease(pg_url, "acct", standby=True, poll=0.1):
                        taken.append("second")

                nursery.start_soon(first)
                await trio.sleep(0.5)
                nursery.start_soon(second)
                await trio.sleep(1.0)
                assert taken == ["first"]
                first_done.set()
    assert taken == ["first", "second"]


def test_position_fixture_is_valid():
    assert attrs.has(Position)

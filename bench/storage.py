"""Storage latency: trio-bot's PostgreSQL store (triopg pool, one trio-asyncio crossing per
operation) against raw asyncpg on plain asyncio running the same statements, plus the naive
triopg style (one crossing per statement) and SQLite for reference.

    python -m bench.storage [--ops N] [--url postgresql://...]

Each variant runs the same logical operations on its own fresh database, one after another:
  intent  — insert a position and its entry order in one transaction;
  write   — upsert the position and an order and append three events, one transaction;
  read    — select one position.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import attrs
import trio
import trio_asyncio
import triopg

from adapters.postgres_store import PostgresStore
from adapters.records import ORDERS, POSITIONS, write_plan
from adapters.sqlite_store import SQLiteStore
from engine.model import Event, OrderKind, OrderRecord, OrderSide, OrderStatus, Position, PositionStatus, Side

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def records(i: int) -> tuple[Position, OrderRecord, list[Any]]:
    position = Position(id=i, signal_id=f"s{i}", wave_id="w1", symbol="FORMUSDT", side=Side.LONG,
                        status=PositionStatus.OPENING, quantity=245.0, entry_client_id=f"tb-{i}-entry")
    entry = OrderRecord(f"tb-{i}-entry", i, "FORMUSDT", OrderKind.ENTRY, OrderSide.BUY, 245.0, OrderStatus.PENDING)
    batch: list[Any] = [
        attrs.evolve(position, status=PositionStatus.OPEN, entry_price=0.8132),
        OrderRecord(f"tb-{i}-stop1", i, "FORMUSDT", OrderKind.STOP, OrderSide.SELL, 245.0, OrderStatus.NEW,
                    stop_price=0.7969),
        *[Event(at=float(k), kind="step", position_id=i, uid=f"{i}-{k}") for k in range(3)],
    ]
    return position, entry, batch


def summarize(samples: dict[str, list[float]]) -> dict[str, float]:
    out = {f"{op}_ms": statistics.fmean(v) * 1000 for op, v in samples.items()}
    out["mean_ms"] = statistics.fmean([x for v in samples.values() for x in v]) * 1000
    return out


async def _timed(samples: dict[str, list[float]], op: str, fn: Callable[[], Awaitable[Any]]) -> None:
    t = time.perf_counter()
    await fn()
    samples.setdefault(op, []).append(time.perf_counter() - t)


async def _statements(pool: Any, i: int, samples: dict[str, list[float]]) -> None:
    """The raw statements of the three operations, on an asyncpg pool or a triopg pool alike
    (both spell acquire/transaction/execute the same way; only who crosses into asyncio differs)."""
    position, entry, batch = records(i)

    async def intent() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(POSITIONS.insert("postgresql"), *POSITIONS.encode(position))
            await conn.execute(ORDERS.insert("postgresql"), *ORDERS.encode(entry))

    async def write() -> None:
        async with pool.acquire() as conn, conn.transaction():
            for sql, rows in write_plan("postgresql", batch):
                if len(rows) == 1:
                    await conn.execute(sql, *rows[0])
                else:
                    await conn.executemany(sql, rows)

    async def read() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.fetch(f"{POSITIONS.select()} WHERE id = $1", i)

    await _timed(samples, "intent", intent)
    await _timed(samples, "write", write)
    await _timed(samples, "read", read)


def run_asyncpg(url: str, ops: int) -> dict[str, float]:
    """The baseline: plain asyncio, plain asyncpg pool, the same statements."""
    async def main() -> dict[str, float]:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        samples: dict[str, list[float]] = {}
        try:
            for i in range(1, ops + 1):
                await _statements(pool, i, samples)
        finally:
            await pool.close()
        return summarize(samples)

    return asyncio.run(main())


async def _store_ops(store: Any, ops: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {}
    for i in range(1, ops + 1):
        position, entry, batch = records(i)
        await _timed(samples, "intent", partial(store.record_intent, position, entry))
        await _timed(samples, "write", partial(store.write, batch))
        await _timed(samples, "read", partial(store.position, i))
    return summarize(samples)


def run_trio_bot(url: str, ops: int) -> dict[str, float]:
    async def main() -> dict[str, float]:
        async with trio_asyncio.open_loop():
            store = await PostgresStore.open(url, pool_size=4)
            try:
                return await _store_ops(store, ops)
            finally:
                await store.aclose()

    return trio.run(main)


def run_naive_triopg(url: str, ops: int) -> dict[str, float]:
    """What the ratio would be without the single crossing: triopg's proxies, one per statement."""
    async def main() -> dict[str, float]:
        samples: dict[str, list[float]] = {}
        async with trio_asyncio.open_loop(), triopg.create_pool(url, min_size=1, max_size=4) as pool:
            for i in range(1, ops + 1):
                await _statements(pool, i, samples)
        return summarize(samples)

    return trio.run(main)


def run_sqlite(ops: int) -> dict[str, float]:
    async def main() -> dict[str, float]:
        with tempfile.TemporaryDirectory() as tmp:
            store = await SQLiteStore.open(f"{tmp}/bench.db")
            try:
                return await _store_ops(store, ops)
            finally:
                await store.aclose()

    return trio.run(main)


def _database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _admin(url: str, sql: str) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(main())


def fresh_database(url: str, migrated: bool = True) -> tuple[str, Callable[[], None]]:
    name = f"trio_bot_bench_{uuid.uuid4().hex[:10]}"
    _admin(url, f'CREATE DATABASE "{name}"')
    db = _database(url, name)
    if migrated:
        async def migrate() -> None:
            async with trio_asyncio.open_loop():
                await (await PostgresStore.open(db)).aclose()

        trio.run(migrate)
    return db, lambda: _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(url: str | None, ops: int, rounds: int = 3) -> dict[str, Any]:
    """Interleaved rounds, best mean of each variant (the least disturbed by the machine)."""
    result: dict[str, Any] = {"ops": ops, "sqlite": min((run_sqlite(ops) for _ in range(rounds)),
                                                      key=lambda r: r["mean_ms"])}
    if url is None:
        return result
    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for name, fn in (("asyncpg", run_asyncpg), ("trio_bot", run_trio_bot), ("naive_triopg", run_naive_triopg)):
            db, drop = fresh_database(url)
            try:
                r = fn(db, ops)
            finally:
                drop()
            if name not in best or r["mean_ms"] < best[name]["mean_ms"]:
                best[name] = r
    result.update(best)
    result["pg_over_asyncpg_ratio"] = best["trio_bot"]["mean_ms"] / best["asyncpg"]["mean_ms"]
    result["naive_over_asyncpg_ratio"] = best["naive_triopg"]["mean_ms"] / best["asyncpg"]["mean_ms"]
    return result


def table(result: dict[str, Any], rounds: int = 3) -> str:
    lines = [f"storage latency per operation (ms, mean of {result['ops']} each; best of {rounds} rounds)",
             f"{'variant':<28}{'intent':>9}{'write':>9}{'read':>9}{'mean':>9}"]
    names = {"asyncpg": "asyncpg on asyncio", "trio_bot": "trio-bot PostgresStore",
             "naive_triopg": "triopg, crossing/statement", "sqlite": "trio-bot SQLiteStore"}
    for key, label in names.items():
        if key in result:
            r = result[key]
            lines.append(f"{label:<28}{r['intent_ms']:>9.3f}{r['write_ms']:>9.3f}{r['read_ms']:>9.3f}"
                         f"{r['mean_ms']:>9.3f}")
    if "pg_over_asyncpg_ratio" in result:
        lines.append(f"trio-bot / asyncpg = {result['pg_over_asyncpg_ratio']:.2f}x   "
                     f"(naive triopg / asyncpg = {result['naive_over_asyncpg_ratio']:.2f}x)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.url, args.ops)
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main()

"""A running engine with its operator API on a real socket, for the API tests (real HTTP, real time)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.faults import FaultPlan
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from engine.config import EngineConfig
from engine.nursery.engine import Engine
from engine.ports import Storage
from tests.conftest import PRICES
from trio_bot.api.settings import ApiSettings, Token
from trio_bot.api.wiring import RunningApi, start_api
from trio_bot.storage import open_storage

TOKEN = "test-token-0123456789abcdef"


@attrs.define
class Harness:
    engine: Engine
    api: RunningApi
    client: httpx.AsyncClient
    exchange: SimExchange
    db: Path

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.post(path, **kw)


def quick_config(**kw: Any) -> EngineConfig:
    return EngineConfig(sweep_interval=0, **kw)


@asynccontextmanager
async def running_api(tmp_path: Path, *, config: EngineConfig | None = None,
                      settings: ApiSettings | None = None, latency: float = 0.001,
                      db_url: str | None = None, faults: FaultPlan | None = None) -> AsyncIterator[Harness]:
    """`db_url`: another store (e.g. PostgreSQL, which needs the caller's trio-asyncio loop)."""
    exchange = SimExchange.from_spec(ExchangeSpec(
        latency=latency, markets=tuple(MarketSpec(s, p) for s, p in PRICES.items())), faults)
    db = tmp_path / "api.db"
    storage: Storage = (await SQLiteStore.open(str(db)) if db_url is None
                        else await open_storage(db_url, call_timeout=10.0))
    settings = settings or ApiSettings(port=0, listen_given=True)
    try:
        async with Engine.open(config or quick_config(), exchange, storage) as engine, \
                trio.open_nursery() as nursery:
            api = await start_api(nursery, engine, settings, Token(TOKEN, generated=False), account="paper",
                                  exchange="paper exchange")
            async with httpx.AsyncClient(base_url=api.url, headers={"authorization": f"Bearer {TOKEN}"},
                                         timeout=10) as client:
                yield Harness(engine, api, client, exchange, db)
            nursery.cancel_scope.cancel()
    finally:
        await storage.aclose()

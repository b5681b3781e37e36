"""An entry whose answer was lost may still execute: it is looked up for
`unknown_outcome_window` seconds, and a late fill is protected and reported `opened`."""

import trio

from adapters.sim.exchange import SimExchange
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.errors import TransientError
from engine.model import OrderKind, OrderRequest, OrderState
from tests.test_restart import SPEC
from trio_bot import Engine


class LateExchange(SimExchange):
    """Answers an entry with Binance's 503 "unknown" and executes it `late` seconds afterwards."""

    nursery: trio.Nursery
    late = 0.15

    async def place_order(self, request: OrderRequest) -> OrderState:
        if request.kind is OrderKind.ENTRY:
            self.nursery.start_soon(self._execute_late, request)
            raise TransientError("503 Unknown error, please check your request or try again later.")
        return await super().place_order(request)

    async def _execute_late(self, request: OrderRequest) -> None:
        await trio.sleep(self.late)
        await super().place_order(request)


async def run_wave(config):
    exchange = LateExchange.from_spec(SPEC)
    store = await SQLiteStore.open(":memory:")
    async with trio.open_nursery() as nursery:
        exchange.nursery = nursery
        async with Engine.open(config, exchange, store) as engine:
            record = await engine.process_wave([{"id": "1", "symbol": "FORMUSDT", "side": "long", "score": 1}])
    await store.aclose()
    return record, exchange


async def test_an_entry_that_executes_after_its_lost_answer_is_protected_and_opened(autojump_clock):
    record, exchange = await run_wave(EngineConfig(sweep_interval=0))
    (outcome,) = record.outcomes
    assert outcome.outcome == "opened"
    assert [p.symbol for p in exchange.positions_snapshot()] == ["FORMUSDT"]
    assert exchange.unprotected_positions() == []


async def test_without_a_window_the_late_fill_would_be_left_unprotected(autojump_clock):
    record, exchange = await run_wave(EngineConfig(sweep_interval=0, unknown_outcome_window=0))
    assert record.outcomes[0].outcome != "opened"
    assert exchange.unprotected_positions() == ["FORMUSDT"]  # what the window exists to prevent

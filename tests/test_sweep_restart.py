"""The restart summary: what start-up found and what the first sweep repaired, said without -v."""

import io

import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.errors import TransientError
from engine.model import OrderKind, OrderRequest, OrderSide
from trio_bot import Engine
from trio_bot.run import print_restart_summary

SPEC = ExchangeSpec(latency=0.05, markets=(MarketSpec("ALICEUSDT", 1.12), MarketSpec("FORMUSDT", 0.8132),
                                           MarketSpec("NEOUSDT", 5.62)))
CONFIG = EngineConfig(max_positions_per_wave=2, sweep_interval=30.0)


async def restarted(db, exchange):
    out = io.StringIO()
    store = await SQLiteStore.open(db)
    try:
        async with Engine.open(CONFIG, exchange, store) as engine:
            print_restart_summary(engine, out)
            await trio.sleep(2)
            unprotected = exchange.unprotected_positions()
    finally:
        await store.aclose()
    return out.getvalue().splitlines(), unprotected


async def test_the_restart_says_what_it_resumed_and_what_the_first_sweep_repaired(autojump_clock, tmp_path):
    db = str(tmp_path / "bot.db")
    exchange = SimExchange.from_spec(SPEC)
    store = await SQLiteStore.open(db)
    async with Engine.open(CONFIG, exchange, store) as engine:
        record = await engine.process_wave([{"id": "1", "symbol": "FORMUSDT", "side": "long", "score": 2},
                                            {"id": "2", "symbol": "NEOUSDT", "side": "long", "score": 1}])
        assert record.counts.opened == 2
        neo = next(p for p in engine.positions() if p.symbol == "NEOUSDT")
    await store.aclose()
    # While trio-bot was down: NEOUSDT's stop was cancelled, and someone opened ALICEUSDT by hand.
    await exchange.cancel_order("NEOUSDT", neo.stop_client_id)
    await exchange.place_order(OrderRequest("ALICEUSDT", OrderSide.SELL, OrderKind.ENTRY, 10.0, "by-hand-1"))

    lines, unprotected = await restarted(db, exchange)
    assert lines == [
        "trio-bot: restart: 2 open positions resumed with their stops: #1 FORMUSDT long 245 stop 0.7969, "
        "#2 NEOUSDT long 35 stop 5.508",
        "trio-bot: restart: start-up sweep repaired 2: 1 position unknown to the store adopted and protected, "
        "1 missing stop replaced"]
    assert unprotected == []  # repaired before the first wave

    lines, _ = await restarted(db, exchange)  # nothing happened meanwhile
    assert lines == [
        "trio-bot: restart: 3 open positions resumed with their stops: #1 FORMUSDT long 245 stop 0.7969, "
        "#2 NEOUSDT long 35 stop 5.508, #3 ALICEUSDT short 10 stop 1.142",
        "trio-bot: restart: start-up sweep: the exchange matches the store, every position held has its stop"]


async def test_a_first_start_says_nothing_and_an_unreadable_exchange_is_said(autojump_clock, tmp_path):
    exchange = SimExchange.from_spec(SPEC)
    lines, _ = await restarted(str(tmp_path / "bot.db"), exchange)
    assert lines == []  # a first start: nothing to say

    async def down():
        raise TransientError("exchange down")

    exchange.fetch_positions = down  # markets load, the sweep's reads fail
    lines, _ = await restarted(str(tmp_path / "bot.db"), exchange)
    assert lines == ["trio-bot: restart: start-up sweep could not look at the exchange (exchange down); the "
                     "sweep tries again every sweep_interval"]


async def test_a_position_adopted_at_start_up_is_stopped_from_the_current_price_not_closed(autojump_clock, tmp_path):
    exchange = SimExchange.from_spec(SPEC)
    await exchange.place_order(OrderRequest("FORMUSDT", OrderSide.BUY, OrderKind.ENTRY, 100.0, "by-hand-2"))
    exchange.set_price("FORMUSDT", 0.7800)  # 4% under its entry: a stop 2% under the entry would be refused
    lines, unprotected = await restarted(str(tmp_path / "bot.db"), exchange)
    assert lines == ["trio-bot: restart: start-up sweep repaired 1: 1 position unknown to the store adopted and "
                     "protected"]
    assert unprotected == [] and [(o.quantity, o.stop_price) for o in exchange.open_orders_snapshot()] == [
        (100.0, 0.7644)]  # 2% under the price now


async def test_a_stop_lost_while_down_and_crossed_since_is_replaced_from_the_current_price(autojump_clock, tmp_path):
    db = str(tmp_path / "bot.db")
    exchange = SimExchange.from_spec(SPEC)
    store = await SQLiteStore.open(db)
    async with Engine.open(CONFIG, exchange, store) as engine:
        await engine.process_wave([{"id": "1", "symbol": "FORMUSDT", "side": "long", "score": 2}])
        (form,) = engine.positions()
    await store.aclose()
    await exchange.cancel_order("FORMUSDT", form.stop_client_id)
    exchange.set_price("FORMUSDT", 0.7900)  # under the lost stop (0.7969)
    lines, unprotected = await restarted(db, exchange)
    assert lines[-1] == "trio-bot: restart: start-up sweep repaired 1: 1 missing stop replaced"
    assert unprotected == [] and [(o.quantity, o.stop_price) for o in exchange.open_orders_snapshot()] == [
        (245.0, 0.7742)]  # 2% under the price now, not the refused old level and an emergency close

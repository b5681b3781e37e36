"""A trailing move in flight when the engine was killed: the new stop (the next id in the
position's sequence) reached the exchange, the store never heard of it. The restart must find it:
adopt it when it rests, record the exit when it has already closed the position, and leave no
older stop behind. (Found by the crash trials: SIGKILL right as the exchange received a move.)"""

from __future__ import annotations

import attrs
import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.ids import entry_id, stop_id
from engine.model import (
    ExitReason,
    OrderKind,
    OrderRecord,
    OrderRequest,
    OrderSide,
    OrderStatus,
    Position,
    PositionStatus,
    Side,
)
from tests.conftest import PRICES
from trio_bot import Engine

SPEC = ExchangeSpec(latency=0.05, markets=tuple(MarketSpec(s, p) for s, p in PRICES.items()))
QTY, STOP1, STOP2 = 245.0, 0.7969, 0.8050


async def crashed_mid_move(tmp_path) -> tuple[str, SimExchange]:
    """Position 1 long FORMUSDT, stored with tb-1-stop1; the exchange also has tb-1-stop2."""
    db = str(tmp_path / "bot.db")
    exchange = SimExchange.from_spec(SPEC)
    store = await SQLiteStore.open(db)
    opening = Position(id=1, signal_id="s1", wave_id="w1", symbol="FORMUSDT", side=Side.LONG,
                       status=PositionStatus.OPENING, quantity=QTY, entry_client_id=entry_id(1))
    await store.record_intent(opening, OrderRecord(entry_id(1), 1, "FORMUSDT", OrderKind.ENTRY, OrderSide.BUY, QTY,
                                                   OrderStatus.PENDING))
    await exchange.place_order(OrderRequest("FORMUSDT", OrderSide.BUY, OrderKind.ENTRY, QTY, entry_id(1)))
    for seq, price in ((1, STOP1), (2, STOP2)):
        await exchange.place_order(OrderRequest("FORMUSDT", OrderSide.SELL, OrderKind.STOP, QTY, stop_id(1, seq),
                                                price))
    await store.write([attrs.evolve(opening, status=PositionStatus.OPEN, entry_price=0.8132, stop_price=STOP1,
                                    stop_client_id=stop_id(1, 1)),
                       OrderRecord(stop_id(1, 1), 1, "FORMUSDT", OrderKind.STOP, OrderSide.SELL, QTY, OrderStatus.NEW,
                                   stop_price=STOP1)])
    await store.aclose()
    return db, exchange


def resting(exchange: SimExchange) -> list[tuple[str, float | None]]:
    return sorted((o.client_order_id, o.stop_price) for o in exchange.open_orders_snapshot())


async def test_a_stop_placed_by_a_move_the_crash_interrupted_is_adopted(autojump_clock, tmp_path):
    db, exchange = await crashed_mid_move(tmp_path)
    store = await SQLiteStore.open(db)
    async with Engine.open(EngineConfig(), exchange, store):
        await trio.sleep(5)
        assert resting(exchange) == [(stop_id(1, 2), STOP2)]  # the newer stop protects; the older is gone
    (position,) = await store.positions()
    assert (position.stop_client_id, position.stop_price) == (stop_id(1, 2), STOP2)
    await store.aclose()


async def test_a_stop_placed_by_an_interrupted_move_that_closed_the_position_is_recorded(autojump_clock, tmp_path):
    db, exchange = await crashed_mid_move(tmp_path)
    exchange.set_price("FORMUSDT", 0.8000)  # tb-1-stop2 fires while no engine runs; tb-1-stop1 does not
    assert exchange.positions_snapshot() == []
    store = await SQLiteStore.open(db)
    async with Engine.open(EngineConfig(), exchange, store) as engine:
        await trio.sleep(5)
        assert engine.positions() == []
        assert resting(exchange) == []  # tb-1-stop1 cancelled: no reduce-only order left on a flat symbol
    (position,) = await store.positions(include_closed=True)
    assert position.status is PositionStatus.CLOSED
    assert (position.exit_price, position.exit_reason) == (0.8, ExitReason.STOP_LOSS)
    await store.aclose()


async def test_an_open_whose_stop_filled_while_the_engine_was_down_is_recorded_stopped_out(autojump_clock, tmp_path):
    """Killed right after its stop was placed, before the store heard of it: the stop then filled.
    The restart must not place a new stop under the same (reusable) id on a flat symbol."""
    db = str(tmp_path / "bot.db")
    # Binance lets a client id be used again once its order has ended.
    exchange = SimExchange(SPEC.markets, balance_usdt=SPEC.balance_usdt, latency=SPEC.latency, reuse_closed_ids=True)
    store = await SQLiteStore.open(db)
    opening = Position(id=1, signal_id="s1", wave_id="w1", symbol="FORMUSDT", side=Side.LONG,
                       status=PositionStatus.OPENING, quantity=QTY, entry_client_id=entry_id(1))
    await store.record_intent(opening, OrderRecord(entry_id(1), 1, "FORMUSDT", OrderKind.ENTRY, OrderSide.BUY, QTY,
                                                   OrderStatus.PENDING))
    await store.aclose()
    await exchange.place_order(OrderRequest("FORMUSDT", OrderSide.BUY, OrderKind.ENTRY, QTY, entry_id(1)))
    await exchange.place_order(OrderRequest("FORMUSDT", OrderSide.SELL, OrderKind.STOP, QTY, stop_id(1, 1), STOP1))
    exchange.set_price("FORMUSDT", 0.79)  # the stop fills while no engine runs
    assert exchange.positions_snapshot() == []
    store = await SQLiteStore.open(db)
    async with Engine.open(EngineConfig(), exchange, store) as engine:
        await trio.sleep(5)
        assert engine.positions() == []
        assert resting(exchange) == []
    (position,) = await store.positions(include_closed=True)
    assert (position.status, position.exit_price) == (PositionStatus.CLOSED, 0.79)
    await store.aclose()


async def test_a_stop_that_filled_while_the_engine_was_down_is_an_exit_not_a_stop_to_trail(autojump_clock, tmp_path):
    """The stop filled while no engine ran and the price has since run far the position's way: the
    restarted follower must read its stop before trailing it, not place new stops on a flat symbol."""
    db = str(tmp_path / "bot.db")
    exchange = SimExchange(SPEC.markets, balance_usdt=SPEC.balance_usdt, latency=SPEC.latency, reuse_closed_ids=True)
    store = await SQLiteStore.open(db)
    opening = Position(id=1, signal_id="s1", wave_id="w1", symbol="FORMUSDT", side=Side.LONG,
                       status=PositionStatus.OPENING, quantity=QTY, entry_client_id=entry_id(1))
    await store.record_intent(opening, OrderRecord(entry_id(1), 1, "FORMUSDT", OrderKind.ENTRY, OrderSide.BUY, QTY,
                                                   OrderStatus.PENDING))
    await exchange.place_order(OrderRequest("FORMUSDT", OrderSide.BUY, OrderKind.ENTRY, QTY, entry_id(1)))
    await exchange.place_order(OrderRequest("FORMUSDT", OrderSide.SELL, OrderKind.STOP, QTY, stop_id(1, 1), STOP1))
    await store.write([attrs.evolve(opening, status=PositionStatus.OPEN, entry_price=0.8132, stop_price=STOP1,
                                    stop_client_id=stop_id(1, 1)),
                       OrderRecord(stop_id(1, 1), 1, "FORMUSDT", OrderKind.STOP, OrderSide.SELL, QTY, OrderStatus.NEW,
                                   stop_price=STOP1)])
    await store.aclose()
    exchange.set_price("FORMUSDT", 0.79)  # the stop fills while no engine runs...
    exchange.set_price("FORMUSDT", 0.86)  # ...and the market then runs far above the trailing activation
    store = await SQLiteStore.open(db)
    async with Engine.open(EngineConfig(), exchange, store) as engine:
        await trio.sleep(5)
        assert engine.positions() == []
        assert resting(exchange) == []
    (position,) = await store.positions(include_closed=True)
    assert (position.status, position.exit_price) == (PositionStatus.CLOSED, 0.79)
    await store.aclose()

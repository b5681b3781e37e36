"""The protection sweep repairs each kind of mismatch between the exchange and the store."""

import trio

from adapters.sim.faults import FaultPlan
from adapters.sim.scenario import FaultSpec
from engine import EngineConfig
from engine.model import ExitReason, OrderKind, OrderRequest, OrderSide, PositionStatus
from tests.test_trailing_manager import CONFIG, live_stops, tick, trading


def manual(symbol, side, kind, qty, cid, stop=None):
    return OrderRequest(symbol, side, kind, qty, cid, stop)


async def test_missing_stop_is_replaced(autojump_clock):
    async with trading() as (engine, exchange, store):
        (position,) = engine.positions()
        await exchange.cancel_order("FORMUSDT", position.stop_client_id)
        assert exchange.unprotected_positions() == ["FORMUSDT"]
        repairs = await engine.sweep.sweep_once()
        assert repairs == {"missing_stop": 1}
        await trio.sleep(1)
        assert exchange.unprotected_positions() == [] and live_stops(exchange) == [0.7969]
        assert engine.positions()[0].stop_client_id == "tb-1-stop2"
        await engine.flush()
        kinds = [e.kind for e in await store.events(position_id=1)]
        assert "sweep_missing_stop" in kinds and "stop_missing" in kinds


async def test_position_closed_outside_the_engine_is_recorded_and_its_stop_cancelled(autojump_clock):
    async with trading() as (engine, exchange, _):
        await exchange.place_order(manual("FORMUSDT", OrderSide.SELL, OrderKind.CLOSE, 245.0, "by-hand-1"))
        assert await engine.sweep.sweep_once() == {"position_gone": 1}
        await trio.sleep(1)
        (position,) = engine.positions(include_closed=True)
        assert (position.status, position.exit_reason) == (PositionStatus.CLOSED, ExitReason.MANUAL)
        assert exchange.open_orders_snapshot() == []
        assert await engine.sweep.sweep_once() == {}


async def test_unknown_position_is_adopted_and_protected(autojump_clock):
    async with trading() as (engine, exchange, _):
        await exchange.place_order(manual("NEOUSDT", OrderSide.SELL, OrderKind.ENTRY, 30.0, "by-hand-2"))
        assert exchange.unprotected_positions() == ["NEOUSDT"]
        assert await engine.sweep.sweep_once() == {"adopted": 1}
        assert exchange.unprotected_positions() == []
        adopted = next(p for p in engine.positions() if p.symbol == "NEOUSDT")
        assert adopted.signal_id == "adopted-NEOUSDT" and adopted.side.value == "short"
        assert adopted.stop_price == 5.732  # 2% above the entry, on the tick
        assert engine.trailing.view(adopted.id) is not None
        # Followed like any other: a short gaining 2% activates and the stop comes down.
        await tick(exchange, 5.50, "NEOUSDT")
        assert live_stops(exchange, "NEOUSDT") == [5.528]
        assert await engine.sweep.sweep_once() == {}


async def test_orphan_stop_is_cancelled(autojump_clock):
    async with trading() as (engine, exchange, _):
        await exchange.place_order(manual("NEOUSDT", OrderSide.BUY, OrderKind.ENTRY, 30.0, "by-hand-3"))
        await exchange.place_order(manual("NEOUSDT", OrderSide.SELL, OrderKind.STOP, 30.0, "by-hand-4", 5.0))
        await exchange.place_order(manual("NEOUSDT", OrderSide.SELL, OrderKind.CLOSE, 30.0, "by-hand-5"))
        assert live_stops(exchange, "NEOUSDT") == [5.0]
        assert await engine.sweep.sweep_once() == {"orphan_stop": 1}
        assert live_stops(exchange, "NEOUSDT") == []


async def test_stale_stop_left_by_failed_cancels_is_cancelled(autojump_clock):
    faults = FaultPlan()
    async with trading(faults=faults) as (engine, exchange, _):
        faults.add(FaultSpec("exchange.cancel_order", "error", times=3))
        await tick(exchange, 0.8260, wait=10.0)
        assert sorted(live_stops(exchange)) == [0.7969, 0.8218]  # both live: still protected
        assert await engine.sweep.sweep_once() == {"stale_stop": 1}
        await trio.sleep(1)  # the position's follower cancels it: only it touches its orders
        assert live_stops(exchange) == [0.8218]


async def test_sweep_runs_on_its_own_schedule(autojump_clock):
    config = EngineConfig(max_positions_per_wave=1, sweep_interval=5.0)
    async with trading(config=config) as (engine, exchange, _):
        (position,) = engine.positions()
        await exchange.cancel_order("FORMUSDT", position.stop_client_id)
        await trio.sleep(6.0)
        assert exchange.unprotected_positions() == []
        assert engine.sweep.repairs["missing_stop"] == 1 and engine.sweep.sweeps >= 1
        assert CONFIG.sweep_interval == 0


async def test_an_adopted_position_whose_stop_is_refused_is_closed_at_once(autojump_clock):
    faults = FaultPlan()
    async with trading(faults=faults) as (engine, exchange, store):
        await exchange.place_order(manual("NEOUSDT", OrderSide.SELL, OrderKind.ENTRY, 30.0, "by-hand-6"))
        faults.add(FaultSpec("exchange.stop_order", "reject", match={"symbol": "NEOUSDT"}))
        assert await engine.sweep.sweep_once() == {"adopted": 1}
        assert "NEOUSDT" not in {p.symbol for p in await exchange.fetch_positions()}
        adopted = next(p for p in engine.positions(include_closed=True) if p.symbol == "NEOUSDT")
        assert (adopted.status, adopted.exit_reason) == (PositionStatus.CLOSED, ExitReason.EMERGENCY_CLOSE)
        assert engine.trailing.view(adopted.id) is None
        await engine.flush()
        kinds = [e.kind for e in await store.events(position_id=adopted.id)]
        assert kinds[:1] == ["sweep_adopted"] and "stop_rejected" in kinds and "emergency_close" in kinds
        assert await engine.sweep.sweep_once() == {}

"""The simulated exchange: Binance-like refusals, stops on price crossings, faults in Trio time."""

from __future__ import annotations

import pytest
import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.faults import FaultPlan
from adapters.sim.scenario import ExchangeSpec, FaultSpec, MarketSpec
from engine import ids
from engine.errors import DuplicateOrderError, PermanentError, TransientError
from engine.model import Market, OrderKind, OrderRequest, OrderSide, OrderStatus, Side

BTC = Market("BTCUSDT", tick_size=0.1, step_size=0.001, min_notional=5.0)
FORM = Market("FORMUSDT", tick_size=0.0001, step_size=1.0, min_notional=5.0)


def make(*, balance: float = 10_000.0, latency: float = 0.0, faults: list[FaultSpec] | None = None
         ) -> SimExchange:
    return SimExchange({"BTCUSDT": BTC, "FORMUSDT": FORM}, {"BTCUSDT": 50_000.0, "FORMUSDT": 0.8},
                       balance_usdt=balance, latency=latency, faults=FaultPlan(faults or []))


def entry(side: OrderSide, qty: float, pid: int = 1, symbol: str = "FORMUSDT") -> OrderRequest:
    return OrderRequest(symbol, side, OrderKind.ENTRY, qty, ids.entry_id(pid))


def stop(side: OrderSide, qty: float, price: float, pid: int = 1, seq: int = 1,
         symbol: str = "FORMUSDT") -> OrderRequest:
    return OrderRequest(symbol, side, OrderKind.STOP, qty, ids.stop_id(pid, seq), price)


def close(side: OrderSide, qty: float, pid: int = 1, symbol: str = "FORMUSDT") -> OrderRequest:
    return OrderRequest(symbol, side, OrderKind.CLOSE, qty, ids.close_id(pid))


# --- construction ---

async def test_from_spec_fills_in_market_defaults(autojump_clock: trio.abc.Clock) -> None:
    spec = ExchangeSpec(balance_usdt=500.0, latency=0.2, markets=(
        MarketSpec("FORMUSDT", 0.8132), MarketSpec("BTCUSDT", 50_000.0, tick_size=0.1, min_notional=100.0)))
    ex = SimExchange.from_spec(spec)
    markets = await ex.load_markets()
    form, btc = markets["FORMUSDT"], markets["BTCUSDT"]
    assert (form.tick_size, form.step_size, form.min_notional, form.max_leverage) == (0.0001, 1.0, 5.0, 125)
    assert (btc.tick_size, btc.step_size, btc.min_notional) == (0.1, 0.0001, 100.0)
    assert ex.price("BTCUSDT") == 50_000.0
    assert (await ex.fetch_balance()).total == 500.0


def test_markets_without_a_price_are_refused() -> None:
    with pytest.raises(ValueError, match="BTCUSDT"):
        SimExchange({"BTCUSDT": BTC}, {})


# --- market orders ---

async def test_market_entry_fills_at_current_price_and_opens_a_position() -> None:
    ex = make()
    state = await ex.place_order(entry(OrderSide.BUY, 250))
    assert state.status is OrderStatus.FILLED
    assert (state.filled_quantity, state.average_price, state.reduce_only) == (250, 0.8, False)
    [pos] = await ex.fetch_positions()
    assert (pos.symbol, pos.side, pos.quantity, pos.entry_price) == ("FORMUSDT", Side.LONG, 250, 0.8)
    assert await ex.fetch_order("FORMUSDT", ids.entry_id(1)) == state
    balance = await ex.fetch_balance()
    assert balance.total == 10_000.0
    assert balance.free == pytest.approx(10_000.0 - 200.0)


async def test_second_entry_averages_the_entry_price() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.SELL, 100, pid=1))
    ex.set_price("FORMUSDT", 1.0)
    await ex.place_order(entry(OrderSide.SELL, 100, pid=2))
    [pos] = ex.positions_snapshot()
    assert (pos.side, pos.quantity) == (Side.SHORT, 200)
    assert pos.entry_price == pytest.approx(0.9)


async def test_quantity_is_floored_to_the_step() -> None:
    ex = make()
    state = await ex.place_order(entry(OrderSide.BUY, 0.0019, symbol="BTCUSDT"))
    assert state.quantity == state.filled_quantity == 0.001


async def test_quantity_flooring_to_zero_is_rejected() -> None:
    ex = make()
    with pytest.raises(PermanentError, match="-4003"):
        await ex.place_order(entry(OrderSide.BUY, 0.0009, symbol="BTCUSDT"))
    assert await ex.fetch_order("BTCUSDT", ids.entry_id(1)) is None


async def test_entry_below_min_notional_is_rejected_and_not_stored() -> None:
    ex = make()
    with pytest.raises(PermanentError, match="notional"):
        await ex.place_order(entry(OrderSide.BUY, 6))  # 4.8 USDT
    assert await ex.fetch_order("FORMUSDT", ids.entry_id(1)) is None
    assert ex.positions_snapshot() == []
    # A refused order never existed: its client id is free to use.
    assert (await ex.place_order(entry(OrderSide.BUY, 7))).status is OrderStatus.FILLED


async def test_entry_needing_more_margin_than_free_is_rejected() -> None:
    ex = make(balance=100.0)
    await ex.place_order(entry(OrderSide.BUY, 100, pid=1))  # 80 USDT of margin
    with pytest.raises(PermanentError, match="Margin is insufficient"):
        await ex.place_order(entry(OrderSide.BUY, 30, pid=2))  # 24 > 20 free
    ex.set_leverage("FORMUSDT", 2)  # margin used halves to 40
    assert (await ex.place_order(entry(OrderSide.BUY, 30, pid=3))).status is OrderStatus.FILLED


def test_leverage_above_the_market_maximum_is_rejected() -> None:
    with pytest.raises(PermanentError, match="Leverage"):
        make().set_leverage("FORMUSDT", 126)


async def test_duplicate_client_order_id_is_rejected_whatever_its_status() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.BUY, 100))
    with pytest.raises(DuplicateOrderError, match="-4116"):
        await ex.place_order(entry(OrderSide.BUY, 100))
    await ex.place_order(stop(OrderSide.SELL, 100, 0.7))
    await ex.cancel_order("FORMUSDT", ids.stop_id(1, 1))
    with pytest.raises(DuplicateOrderError):
        await ex.place_order(stop(OrderSide.SELL, 100, 0.7))
    [pos] = ex.positions_snapshot()
    assert pos.quantity == 100


async def test_unknown_order_lookup_is_none() -> None:
    ex = make()
    assert await ex.fetch_order("FORMUSDT", "tb-9-entry") is None
    await ex.place_order(entry(OrderSide.BUY, 100))
    assert await ex.fetch_order("BTCUSDT", ids.entry_id(1)) is None  # right id, wrong symbol


async def test_unknown_symbol_is_rejected() -> None:
    with pytest.raises(PermanentError, match="-1121"):
        await make().place_order(entry(OrderSide.BUY, 1, symbol="NOPEUSDT"))


# --- reduce-only closes ---

async def test_close_is_clipped_to_the_position_and_realizes_pnl() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.BUY, 100))
    ex.set_price("FORMUSDT", 0.9)
    state = await ex.place_order(close(OrderSide.SELL, 150))
    assert state.status is OrderStatus.FILLED
    assert (state.quantity, state.filled_quantity, state.average_price) == (150, 100, 0.9)
    assert state.reduce_only
    assert ex.positions_snapshot() == []
    assert (await ex.fetch_balance()).total == pytest.approx(10_010.0)


async def test_close_with_no_position_is_rejected() -> None:
    ex = make()
    with pytest.raises(PermanentError, match="ReduceOnly Order is rejected"):
        await ex.place_order(close(OrderSide.SELL, 100))


async def test_close_on_the_wrong_side_never_increases_the_position() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.BUY, 100))
    with pytest.raises(PermanentError, match="-2022"):
        await ex.place_order(close(OrderSide.BUY, 100))
    assert ex.positions_snapshot()[0].quantity == 100


# --- stops ---

async def test_stop_rests_and_is_rounded_to_the_tick() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.BUY, 100))
    state = await ex.place_order(stop(OrderSide.SELL, 100, 0.78404))
    assert state.status is OrderStatus.NEW
    assert state.stop_price == 0.784
    assert state.reduce_only
    assert await ex.fetch_open_orders() == [state]
    assert await ex.fetch_open_orders("BTCUSDT") == []
    assert ex.open_orders_snapshot() == [state]


async def test_long_stop_triggers_on_crossing_and_realizes_the_loss() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.BUY, 100))
    await ex.place_order(stop(OrderSide.SELL, 100, 0.78))
    ex.set_price("FORMUSDT", 0.79)  # above the stop: nothing happens
    assert (await ex.fetch_order("FORMUSDT", ids.stop_id(1, 1))).status is OrderStatus.NEW  # type: ignore[union-attr]
    ex.set_price("FORMUSDT", 0.77)  # gapped through: fills at the tick price
    state = await ex.fetch_order("FORMUSDT", ids.stop_id(1, 1))
    assert state is not None
    assert (state.status, state.filled_quantity, state.average_price) == (OrderStatus.FILLED, 100, 0.77)
    assert ex.positions_snapshot() == []
    assert ex.open_orders_snapshot() == []
    assert (await ex.fetch_balance()).total == pytest.approx(10_000.0 - 3.0)


async def test_short_stop_triggers_when_price_rises_to_it() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.SELL, 0.01, symbol="BTCUSDT"))
    await ex.place_order(stop(OrderSide.BUY, 0.004, 51_000.0, symbol="BTCUSDT"))
    ex.set_price("BTCUSDT", 50_999.9)
    assert ex.open_orders_snapshot() != []
    ex.set_price("BTCUSDT", 51_000.0)
    [pos] = ex.positions_snapshot()
    assert (pos.side, pos.quantity) == (Side.SHORT, 0.006)  # reduced, on the step grid
    assert (await ex.fetch_balance()).total == pytest.approx(10_000.0 - 4.0)
    [fill] = [f for f in ex.fills if f.kind is OrderKind.STOP]
    assert (fill.side, fill.quantity, fill.price, fill.reduce_only) == (OrderSide.BUY, 0.004, 51_000.0, True)


async def test_stop_with_nothing_left_to_reduce_expires_instead_of_opening() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.BUY, 100))
    await ex.place_order(stop(OrderSide.SELL, 100, 0.7))
    await ex.place_order(close(OrderSide.SELL, 100))
    assert ex.open_orders_snapshot() != []  # the engine must cancel it; the exchange leaves it
    ex.set_price("FORMUSDT", 0.6)
    assert (await ex.fetch_order("FORMUSDT", ids.stop_id(1, 1))).status is OrderStatus.CANCELED  # type: ignore[union-attr]
    assert ex.positions_snapshot() == []


async def test_stop_that_would_trigger_immediately_is_rejected() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.BUY, 100))
    with pytest.raises(PermanentError, match="immediately trigger"):
        await ex.place_order(stop(OrderSide.SELL, 100, 0.8))
    with pytest.raises(PermanentError, match="-2021"):
        await ex.place_order(stop(OrderSide.BUY, 100, 0.79, seq=2))
    with pytest.raises(PermanentError, match="stopPrice"):
        await ex.place_order(OrderRequest("FORMUSDT", OrderSide.SELL, OrderKind.STOP, 100, "s3"))


async def test_cancel_resting_stop_then_cancel_again_is_unknown() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.BUY, 100))
    await ex.place_order(stop(OrderSide.SELL, 100, 0.7))
    state = await ex.cancel_order("FORMUSDT", ids.stop_id(1, 1))
    assert state.status is OrderStatus.CANCELED
    assert ex.open_orders_snapshot() == []
    with pytest.raises(PermanentError, match="Unknown order sent"):
        await ex.cancel_order("FORMUSDT", ids.stop_id(1, 1))
    with pytest.raises(PermanentError, match="-2011"):
        await ex.cancel_order("FORMUSDT", "never-sent")
    with pytest.raises(PermanentError, match="-2011"):
        await ex.cancel_order("FORMUSDT", ids.entry_id(1))  # filled: not cancellable


async def test_a_tick_fires_only_its_symbols_stops_in_placement_order() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.BUY, 100))
    await ex.place_order(entry(OrderSide.BUY, 0.01, pid=2, symbol="BTCUSDT"))
    await ex.place_order(stop(OrderSide.SELL, 60, 0.75))
    await ex.place_order(stop(OrderSide.SELL, 0.01, 49_000.0, pid=2, symbol="BTCUSDT"))
    await ex.place_order(stop(OrderSide.SELL, 60, 0.78, seq=2))
    ex.set_price("FORMUSDT", 0.7)  # through both FORMUSDT stops: the first placed fills first
    assert [(f.client_order_id, f.quantity) for f in ex.fills if f.kind is OrderKind.STOP] == [
        (ids.stop_id(1, 1), 60), (ids.stop_id(1, 2), 40)]  # the second is clipped to what is left
    assert [o.symbol for o in ex.open_orders_snapshot()] == ["BTCUSDT"]  # untouched
    ex.set_price("BTCUSDT", 48_000.0)
    assert ex.open_orders_snapshot() == [] and ex.positions_snapshot() == []


async def test_imported_resting_stops_still_fire() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.BUY, 100))
    await ex.place_order(stop(OrderSide.SELL, 100, 0.75))
    await ex.place_order(stop(OrderSide.SELL, 100, 0.7, seq=2))
    await ex.cancel_order("FORMUSDT", ids.stop_id(1, 2))
    restored = make()
    restored.import_state(ex.export_state())
    assert restored.open_orders_snapshot() == ex.open_orders_snapshot()
    restored.set_price("FORMUSDT", 0.74)
    state = await restored.fetch_order("FORMUSDT", ids.stop_id(1, 1))
    assert state is not None and state.status is OrderStatus.FILLED
    assert restored.positions_snapshot() == [] and restored.open_orders_snapshot() == []


# --- report helpers ---

async def test_unprotected_positions() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.BUY, 100))
    assert ex.unprotected_positions() == ["FORMUSDT"]
    await ex.place_order(stop(OrderSide.SELL, 60, 0.7))
    assert ex.unprotected_positions() == ["FORMUSDT"]  # partly covered
    await ex.place_order(stop(OrderSide.SELL, 40, 0.7, seq=2))
    assert ex.unprotected_positions() == []
    await ex.cancel_order("FORMUSDT", ids.stop_id(1, 2))
    await ex.place_order(stop(OrderSide.BUY, 100, 0.9, seq=3))  # wrong side protects nothing
    assert ex.unprotected_positions() == ["FORMUSDT"]


async def test_entry_fill_counts_by_position() -> None:
    ex = make()
    await ex.place_order(entry(OrderSide.BUY, 100, pid=1))
    await ex.place_order(entry(OrderSide.BUY, 0.001, pid=2, symbol="BTCUSDT"))
    await ex.place_order(OrderRequest("FORMUSDT", OrderSide.BUY, OrderKind.ENTRY, 10, "tb-1-entry-again"))
    await ex.place_order(close(OrderSide.SELL, 50, pid=1))
    assert ex.entry_fill_counts() == {1: 1, 2: 1}  # closes and foreign ids are not entries


async def test_subscribe_sees_prices_and_drops_when_full() -> None:
    ex = make()
    feed = ex.subscribe(buffer=2)
    for price in (0.81, 0.82, 0.83):
        ex.set_price("FORMUSDT", price)
    assert [feed.receive_nowait(), feed.receive_nowait()] == [("FORMUSDT", 0.81), ("FORMUSDT", 0.82)]
    with pytest.raises(trio.WouldBlock):
        feed.receive_nowait()
    await feed.aclose()
    ex.set_price("FORMUSDT", 0.84)  # a closed subscriber is forgotten, not an error


# --- Trio time: latency and faults ---

async def test_latency_advances_virtual_time(autojump_clock: trio.abc.Clock) -> None:
    ex = make(latency=0.05)
    start = trio.current_time()
    await ex.place_order(entry(OrderSide.BUY, 100))
    await ex.fetch_positions()
    # Each call takes the latency plus a spread under 10 µs fixed by what the call is.
    assert trio.current_time() - start == pytest.approx(0.1, abs=2e-5)
    assert ex.fills[0].at == pytest.approx(start + 0.05, abs=1e-5)


async def test_calls_leaving_together_arrive_in_an_order_set_by_their_content(
        autojump_clock: trio.abc.Clock) -> None:
    """Not by which task Trio happened to run first: the same requests, the same fills."""
    arrivals = []
    for reverse in (False, True):
        ex = make(latency=0.05)
        start = trio.current_time()
        requests = [entry(OrderSide.BUY, 10, pid=i) for i in range(1, 6)]
        async with trio.open_nursery() as nursery:
            for request in reversed(requests) if reverse else requests:
                nursery.start_soon(ex.place_order, request)
        arrivals.append([(f.client_order_id, round(f.at - start, 9)) for f in ex.fills])
    assert arrivals[0] == arrivals[1]
    assert len({at for _, at in arrivals[0]}) == 5  # five distinct instants


async def test_error_fault_is_transient_and_nothing_happens(autojump_clock: trio.abc.Clock) -> None:
    ex = make(faults=[FaultSpec("exchange.entry_order", "error", message="502 Bad Gateway", times=1)])
    with pytest.raises(TransientError, match="502"):
        await ex.place_order(entry(OrderSide.BUY, 100))
    assert ex.positions_snapshot() == []
    assert (await ex.place_order(entry(OrderSide.BUY, 100))).status is OrderStatus.FILLED


async def test_reject_fault_is_permanent(autojump_clock: trio.abc.Clock) -> None:
    ex = make(faults=[FaultSpec("exchange.stop_order", "reject")])
    await ex.place_order(entry(OrderSide.BUY, 100))
    with pytest.raises(PermanentError):
        await ex.place_order(stop(OrderSide.SELL, 100, 0.7))
    assert ex.open_orders_snapshot() == []


async def test_hang_fault_never_returns_and_changes_nothing(autojump_clock: trio.abc.Clock) -> None:
    ex = make(faults=[FaultSpec("exchange.entry_order", "hang")])
    with trio.move_on_after(3600) as scope:
        await ex.place_order(entry(OrderSide.BUY, 100))
    assert scope.cancelled_caught
    assert ex.positions_snapshot() == []
    assert await ex.fetch_order("FORMUSDT", ids.entry_id(1)) is None


async def test_delay_fault_returns_after_its_seconds(autojump_clock: trio.abc.Clock) -> None:
    ex = make(latency=0.05, faults=[FaultSpec("exchange.query", "delay", seconds=5.0)])
    start = trio.current_time()
    assert await ex.fetch_prices(["FORMUSDT", "NOPEUSDT"]) == {"FORMUSDT": 0.8}
    assert trio.current_time() - start == pytest.approx(5.05, abs=1e-5)


async def test_lost_response_takes_effect_but_never_returns(autojump_clock: trio.abc.Clock) -> None:
    ex = make(faults=[FaultSpec("exchange.entry_order", "lost_response", times=1)])
    with trio.move_on_after(60) as scope:
        await ex.place_order(entry(OrderSide.BUY, 100))
    assert scope.cancelled_caught
    found = await ex.fetch_order("FORMUSDT", ids.entry_id(1))
    assert found is not None and found.status is OrderStatus.FILLED
    assert ex.positions_snapshot()[0].quantity == 100
    with pytest.raises(DuplicateOrderError):  # the retry a naive engine would send
        await ex.place_order(entry(OrderSide.BUY, 100))


async def test_lost_cancel_still_cancels(autojump_clock: trio.abc.Clock) -> None:
    ex = make(faults=[FaultSpec("exchange.cancel_order", "lost_response")])
    await ex.place_order(entry(OrderSide.BUY, 100))
    await ex.place_order(stop(OrderSide.SELL, 100, 0.7))
    with trio.move_on_after(60):
        await ex.cancel_order("FORMUSDT", ids.stop_id(1, 1))
    assert ex.open_orders_snapshot() == []


async def test_faults_match_on_position_side_and_symbol(autojump_clock: trio.abc.Clock) -> None:
    ex = make(faults=[
        FaultSpec("exchange.stop_order", "reject", match={"side": "short"}),
        FaultSpec("exchange.query", "error", match={"symbol": "BTCUSDT"}),
    ])
    await ex.place_order(entry(OrderSide.BUY, 100))
    # A sell stop protects a long: the "short" fault does not apply to it.
    assert (await ex.place_order(stop(OrderSide.SELL, 100, 0.7))).status is OrderStatus.NEW
    await ex.place_order(entry(OrderSide.SELL, 0.001, pid=2, symbol="BTCUSDT"))
    with pytest.raises(PermanentError):
        await ex.place_order(stop(OrderSide.BUY, 0.001, 60_000.0, pid=2, symbol="BTCUSDT"))
    with pytest.raises(TransientError):
        await ex.fetch_order("BTCUSDT", ids.entry_id(2))
    assert await ex.fetch_order("FORMUSDT", ids.entry_id(1)) is not None

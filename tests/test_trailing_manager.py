"""Trailing stops on the exchange, in virtual time: follow, ratchet, exit, survive faults and restarts."""

from contextlib import asynccontextmanager

import pytest
import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.faults import FaultPlan
from adapters.sim.faulty_storage import FaultyStorage
from adapters.sim.scenario import ExchangeSpec, FaultSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.model import ExitReason, PositionStatus
from tests.conftest import assert_invariants, run, scenario
from trio_bot import Engine

SPEC = ExchangeSpec(latency=0.05, markets=(MarketSpec("FORMUSDT", 0.8132), MarketSpec("NEOUSDT", 5.62)))
CONFIG = EngineConfig(max_positions_per_wave=1, sweep_interval=0)


@asynccontextmanager
async def trading(*, side="long", config=CONFIG, faults=None, store=None, exchange=None, open_signal=True):
    faults = faults or FaultPlan()
    exchange = exchange or SimExchange.from_spec(SPEC, faults=faults)
    own_store = store is None
    inner = store or await SQLiteStore.open(":memory:")
    async with Engine.open(config, exchange, FaultyStorage(inner, faults)) as engine:
        if open_signal:
            record = await engine.process_wave([{"id": "1", "symbol": "FORMUSDT", "side": side, "score": 1}])
            assert record.counts.opened == 1
        yield engine, exchange, inner
    if own_store:
        await inner.aclose()


async def tick(exchange, price, symbol="FORMUSDT", wait=2.0):
    exchange.set_price(symbol, price)
    await trio.sleep(wait)  # virtual: the follower reacts, min_interval passes


def live_stops(exchange, symbol="FORMUSDT"):
    return [o.stop_price for o in exchange.open_orders_snapshot() if o.symbol == symbol]


async def test_long_activation_ratchet_and_trailing_exit(autojump_clock):
    async with trading() as (engine, exchange, store):
        await tick(exchange, 0.8200)
        assert live_stops(exchange) == [0.7969]  # not active yet (+0.84% < 1.5%)
        await tick(exchange, 0.8260)
        assert live_stops(exchange) == [0.8218]  # active: floor(0.8260 * 0.995)
        await tick(exchange, 0.8500)
        assert live_stops(exchange) == [0.8457]
        await tick(exchange, 0.8470)
        assert live_stops(exchange) == [0.8457]  # never loosens
        await tick(exchange, 0.8450)  # through the stop: the exchange fills it
        (position,) = engine.positions(include_closed=True)
        assert position.status is PositionStatus.CLOSED and position.exit_reason is ExitReason.TRAILING_STOP
        assert position.exit_price == 0.8450
        assert position.realized_pnl == pytest.approx((0.8450 - 0.8132) * 245)
        assert exchange.positions_snapshot() == [] and exchange.open_orders_snapshot() == []
        await engine.flush()
        stored = await store.positions(include_closed=True)
        assert stored[0].status is PositionStatus.CLOSED and stored[0].exit_reason is ExitReason.TRAILING_STOP


async def test_short_mirrors(autojump_clock):
    async with trading(side="short") as (engine, exchange, _):
        assert live_stops(exchange) == [0.8295]
        await tick(exchange, 0.8000)  # -1.6%: active
        assert live_stops(exchange) == [0.8040]  # ceil(0.8000 * 1.005)
        await tick(exchange, 0.7900)
        assert live_stops(exchange) == [0.7940]
        await tick(exchange, 0.7950)
        (position,) = engine.positions(include_closed=True)
        assert position.exit_reason is ExitReason.TRAILING_STOP and position.realized_pnl > 0


async def test_stop_loss_before_activation(autojump_clock):
    async with trading() as (engine, exchange, _):
        await tick(exchange, 0.8150)
        await tick(exchange, 0.7900)
        (position,) = engine.positions(include_closed=True)
        assert (position.status, position.exit_reason, position.exit_price) == (
            PositionStatus.CLOSED, ExitReason.STOP_LOSS, 0.7900)
        assert position.realized_pnl < 0


@pytest.mark.parametrize("point", ["exchange.stop_order", "exchange.cancel_order"])
@pytest.mark.parametrize("effect", ["error", "reject", "hang", "lost_response"])
async def test_moves_under_faults_never_leave_the_position_without_a_stop(autojump_clock, point, effect):
    faults = FaultPlan()
    async with trading(faults=faults) as (engine, exchange, _):
        faults.add(FaultSpec(point, effect, times=2))
        for price in [0.8260, 0.8300, 0.8350, 0.8400, 0.8450, 0.8500, 0.8550, 0.8600]:
            exchange.set_price("FORMUSDT", price)
            for _ in range(40):  # check all along, not just between ticks
                assert exchange.unprotected_positions() == []
                await trio.sleep(0.5)
        stops = live_stops(exchange)
        # Eventually the stop follows the price; a failed cancel may leave an older, looser stop too.
        assert max(stops) == 0.8557
        (position,) = engine.positions()
        assert position.stop_price == 0.8557


async def test_hanging_trailing_save_never_delays_following(autojump_clock):
    faults = FaultPlan([FaultSpec("storage.trailing", "hang")])
    async with trading(faults=faults) as (engine, exchange, _):
        await tick(exchange, 0.8260)
        await tick(exchange, 0.8600)
        assert live_stops(exchange) == [0.8557]
        assert engine.positions()[0].trailing.value == "pending"


async def test_restart_resumes_from_the_stored_best_price(autojump_clock, tmp_path):
    db = str(tmp_path / "bot.db")
    exchange = SimExchange.from_spec(SPEC)
    store = await SQLiteStore.open(db)
    async with trading(exchange=exchange, store=store) as (engine, _, _):
        await tick(exchange, 0.8260)
        await tick(exchange, 0.8500)
        assert live_stops(exchange) == [0.8457]
    await store.aclose()
    # While no engine runs the price dips, though not through the stop.
    exchange.set_price("FORMUSDT", 0.8470)

    store = await SQLiteStore.open(db)
    async with trading(exchange=exchange, store=store, open_signal=False) as (engine, _, _):
        follower = next(iter(engine.trailing.snapshot().values()))
        assert follower.best_price == 0.8500 and follower.live_stop == 0.8457
        await tick(exchange, 0.8480)
        assert live_stops(exchange) == [0.8457]  # not loosened to 0.8480 * 0.995
        await tick(exchange, 0.8600)
        assert live_stops(exchange) == [0.8557]
        (position,) = engine.positions()
        assert position.stop_client_id == "tb-1-stop4"  # stop1 -> 0.8218 -> 0.8457 -> 0.8557
    await store.aclose()


async def test_flood_of_ticks_keeps_memory_flat_and_applies_the_latest(autojump_clock):
    import tracemalloc

    symbols = [f"S{i:03d}USDT" for i in range(100)]
    spec = ExchangeSpec(balance_usdt=1_000_000.0, latency=0.0, markets=tuple(MarketSpec(s, 100.0) for s in symbols))
    exchange = SimExchange.from_spec(spec)
    store = await SQLiteStore.open(":memory:")
    config = EngineConfig(max_positions_per_wave=100, max_concurrent_signals=100, sweep_interval=0,
                          order_rate_per_second=1000.0, order_burst=200)
    async with Engine.open(config, exchange, store) as engine:
        wave = [{"id": str(i), "symbol": s, "side": "long", "score": 1} for i, s in enumerate(symbols)]
        assert (await engine.process_wave(wave)).counts.opened == 100
        await trio.sleep(1)
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        last = {}
        for step in range(5_000):  # 10 ticks per virtual millisecond = 10,000 ticks/s, for 5 seconds
            for k in range(10):
                symbol = symbols[(step * 10 + k) % 100]
                price = 100.0 + (step % 300) * 0.01
                exchange.set_price(symbol, price)
                last[symbol] = price
            await trio.sleep(0.001)
        grown = tracemalloc.get_traced_memory()[0] - baseline
        tracemalloc.stop()
        await trio.sleep(2)
        assert engine.trailing.ticks >= 50_000
        assert grown < 2_000_000, f"memory grew by {grown} bytes"
        for follower in engine.trailing.snapshot().values():
            assert follower.best_price == max(100.0 + (s % 300) * 0.01 for s in range(5_000))


def test_scenario_ticks_close_positions_and_report_the_exit():
    data = scenario(ticks=[{"at": 60.0, "symbol": "FORMUSDT", "price": 0.8300},
                           {"at": 120.0, "symbol": "FORMUSDT", "price": 0.8500},
                           {"at": 180.0, "symbol": "FORMUSDT", "price": 0.8400},
                           {"at": 60.0, "symbol": "ALICEUSDT", "price": 0.3500}])
    report = run(data)
    assert_invariants(report)
    by_symbol = {p["symbol"]: p for p in report["positions"]}
    form = by_symbol["FORMUSDT"]
    assert (form["status"], form["exit_reason"], form["exit_price"]) == ("closed", "trailing_stop", 0.84)
    alice = by_symbol["ALICEUSDT"]  # a short: the price rose through its stop
    assert (alice["status"], alice["exit_reason"]) == ("closed", "stop_loss")
    assert {p["symbol"] for p in report["exchange"]["positions"]} == {"BNBUSDT", "NEOUSDT", "ALGOUSDT"}
    assert by_symbol["NEOUSDT"]["stop_price"] == 5.508 and by_symbol["NEOUSDT"]["status"] == "open"


async def test_a_refused_move_is_retried_after_a_backoff_not_hammered(autojump_clock):
    config = EngineConfig(max_positions_per_wave=1, sweep_interval=0, trailing_min_interval=0.0)
    async with trading(config=config) as (engine, exchange, _):
        (follower,) = engine.trailing.snapshot().values()
        engine.trailing.on_price("FORMUSDT", 0.8600)  # the feed runs ahead of the exchange (still 0.8132)
        await trio.sleep(10.0)
        # Each attempt is refused ("would immediately trigger"); the old stop stays live.
        assert live_stops(exchange) == [0.7969]
        assert engine.trailing.view(follower.position_id).moves == 0
        kinds = [e.kind for e in await engine.ctx.storage.events(position_id=follower.position_id)]
        assert 5 <= kinds.count("stop_move_failed") <= 25  # about one per retry_backoff, not thousands
        await tick(exchange, 0.8600)
        assert live_stops(exchange) == [0.8557]


async def test_protective_orders_go_ahead_of_entries_in_the_rate_limiter(autojump_clock):
    config = EngineConfig(max_positions_per_wave=3, max_concurrent_signals=3, order_rate_per_second=1.0,
                          order_burst=1, sweep_interval=0, call_timeout=20.0, signal_timeout=60.0)
    spec = ExchangeSpec(latency=0.05, markets=(MarketSpec("FORMUSDT", 0.8132), MarketSpec("NEOUSDT", 5.62),
                                               MarketSpec("FILUSDT", 1.9)))
    exchange = SimExchange.from_spec(spec)
    store = await SQLiteStore.open(":memory:")
    async with Engine.open(config, exchange, store) as engine:
        record = await engine.process_wave([{"id": str(i), "symbol": s, "side": "long", "score": 3 - i}
                                            for i, s in enumerate(["FORMUSDT", "NEOUSDT", "FILUSDT"])])
        assert record.counts.opened == 3
    placed = [cid.split("-")[-1] for cid in exchange._orders]  # placement order, as the exchange saw it
    # One token a second: each filled entry's stop-loss jumps the queue of waiting entries.
    assert placed == ["entry", "stop1", "entry", "stop1", "entry", "stop1"]
    await store.aclose()


async def test_shutdown_at_any_moment_of_a_wave_leaves_every_exposure_stopped_and_raises_nothing(autojump_clock):
    """Cancelled mid-wave (SIGINT, a test's teardown), a child's shielded cleanup may protect its
    fill after the trailing service has already stopped: the position keeps its stop and is left
    for the restart to follow; handing it to the stopped service must not crash the wave."""
    for step in range(40):
        exchange = SimExchange.from_spec(SPEC)
        store = await SQLiteStore.open(":memory:")
        with trio.move_on_after(0.02 + step * 0.01):
            async with Engine.open(CONFIG, exchange, store) as engine:
                await engine.process_wave([{"id": "1", "symbol": "FORMUSDT", "side": "long", "score": 1}])
                await trio.sleep_forever()
        held = {p.symbol for p in await exchange.fetch_positions() if p.quantity}
        assert held <= {o.symbol for o in exchange.open_orders_snapshot() if o.reduce_only}, step
        await store.aclose()


class ThinBookStops(SimExchange):
    """A triggered stop's market order finds only 100 contracts inside its price band: the rest
    expires (Binance: FINISHED with an executed quantity below the stop's)."""

    def _trigger(self, order, price):
        import attrs

        if self._ledger.reducible(order.symbol, order.side) == 0:
            return super()._trigger(order, price)
        part = self._ledger.fill(attrs.evolve(order, quantity=min(100.0, order.quantity)), price)
        self._book.store(attrs.evolve(part, quantity=order.quantity))


async def test_a_stop_that_fills_only_in_part_shrinks_the_position_and_protects_the_rest(autojump_clock):
    exchange = ThinBookStops.from_spec(SPEC)
    async with trading(exchange=exchange) as (engine, exchange, store):
        (before,) = engine.positions()
        assert before.quantity == 245
        await tick(exchange, 0.7800)  # through the stop-loss: 100 of 245 fill, the rest expires
        (position,) = engine.positions(include_closed=True)
        assert position.status is PositionStatus.OPEN and position.quantity == 145
        (held,) = exchange.positions_snapshot()
        (stop,) = exchange.open_orders_snapshot()
        assert held.quantity == 145 and stop.quantity == 145 and stop.stop_price < 0.7800
        await engine.flush()
        changed = [e.detail for e in await store.events(position_id=position.id) if e.kind == "size_changed"]
        assert changed and changed[0].startswith("245 -> 145 (stop tb-1-stop1 filled 100")


class ThinBookCloses(SimExchange):
    """A reduce-only market close finds only 100 contracts inside its price band; the rest expires
    (Binance: EXPIRED with an executed quantity below the order's)."""

    def _place(self, request):
        import attrs

        from engine.model import OrderKind, OrderStatus

        if request.kind is OrderKind.CLOSE and request.quantity > 100:
            part = super()._place(attrs.evolve(request, quantity=100.0))
            return self._book.store(attrs.evolve(part, quantity=request.quantity, status=OrderStatus.CANCELED))
        return super()._place(request)


async def test_an_operator_close_that_fills_only_in_part_leaves_the_rest_open_and_protected(autojump_clock):
    exchange = ThinBookCloses.from_spec(SPEC)
    async with trading(exchange=exchange) as (engine, exchange, _):
        (position,) = engine.positions()
        request = await engine.trailing.close(position.id)
        assert not request.closed and request.error.startswith("closed only 100 of 245")
        (after,) = engine.positions()
        assert after.quantity == 145
        (held,) = exchange.positions_snapshot()
        (stop,) = exchange.open_orders_snapshot()
        assert held.quantity == 145 and stop.quantity == 145  # the stop now covers exactly what is held


async def test_an_emergency_close_that_fills_only_in_part_is_never_recorded_closed(autojump_clock):
    faults = FaultPlan([FaultSpec("exchange.stop_order", "reject", times=1)])
    exchange = ThinBookCloses.from_spec(SPEC, faults=faults)
    config = EngineConfig(max_positions_per_wave=1, sweep_interval=1.0)
    async with trading(exchange=exchange, faults=faults, open_signal=False, config=config) as (engine, exchange,
                                                                                                store):
        record = await engine.process_wave([{"id": "1", "symbol": "FORMUSDT", "side": "long", "score": 1}])
        (outcome,) = record.outcomes
        assert outcome.reason.startswith("UNPROTECTED") and "the close filled only 100 of 245" in outcome.reason
        await trio.sleep(5)  # the next sweep finds 145 held: the position shrinks to it and gets a stop
        (position,) = engine.positions(include_closed=True)
        assert position.status is PositionStatus.OPEN and position.quantity == 145
        (held,) = exchange.positions_snapshot()
        (stop,) = exchange.open_orders_snapshot()
        assert held.quantity == 145 and stop.quantity == 145
        await engine.flush()
        details = [e.detail for e in await store.events(position_id=position.id) if e.kind == "size_changed"]
        assert "emergency close filled 100 of 245; the rest expired" in details

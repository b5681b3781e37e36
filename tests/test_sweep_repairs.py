"""The sweep is the last line of defence: it repairs every exposure it can see, whatever state
the store has it in, and never acts on a position whose orders its follower is changing."""

import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.faults import FaultPlan
from adapters.sim.scenario import ExchangeSpec, FaultSpec, MarketSpec
from engine import EngineConfig
from engine.model import ExitReason, OrderKind, OrderSide, PositionStatus
from tests.conftest import assert_invariants, run, scenario, wave_signals
from tests.test_sweep import manual
from tests.test_trailing_manager import CONFIG, live_stops, tick, trading

TWO = EngineConfig(max_positions_per_wave=2, sweep_interval=0, protect_attempts=2)


def outage(times):
    return [FaultSpec("exchange.stop_order", "error", {"symbol": "FORMUSDT"}, times=times),
            FaultSpec("exchange.close_order", "error", {"symbol": "FORMUSDT"}, times=times)]


async def test_unprotected_position_is_protected_when_the_exchange_answers_and_others_are_repaired_too(
        autojump_clock):
    faults = FaultPlan(outage(2))  # the open's two stop attempts and two closes all fail
    async with trading(config=TWO, faults=faults, open_signal=False) as (engine, exchange, _):
        record = await engine.process_wave(wave_signals(4)[::3])  # FORMUSDT and NEOUSDT
        assert [o.outcome for o in record.outcomes] == ["failed", "opened"]
        assert record.outcomes[0].reason.startswith("UNPROTECTED")
        neo = next(p for p in engine.positions() if p.symbol == "NEOUSDT")
        await exchange.cancel_order("NEOUSDT", neo.stop_client_id)
        assert sorted(exchange.unprotected_positions()) == ["FORMUSDT", "NEOUSDT"]
        repairs = await engine.sweep.sweep_once()  # once crashed on the stop-less position
        assert repairs == {"missing_stop": 2}
        await trio.sleep(2)
        assert exchange.unprotected_positions() == []
        form = next(p for p in engine.positions() if p.symbol == "FORMUSDT")
        assert form.status is PositionStatus.OPEN and form.stop_price == 0.7969
        assert await engine.sweep.sweep_once() == {}


def test_an_outage_of_stops_and_closes_that_recovers_is_repaired_by_later_sweeps():
    faults = [{"point": point, "effect": "error", "times": 12}
              for point in ("exchange.stop_order", "exchange.close_order")]
    report = run(scenario(engine={"max_positions_per_wave": 1, "max_concurrent_signals": 1,
                                  "sweep_interval": 30.0},
                          faults=faults, waves=[{"at": 0.0, "signals": wave_signals(1)}], until=400.0))
    (signal,) = report["waves"][0]["signals"]
    assert signal["outcome"] == "failed" and signal["reason"].startswith("UNPROTECTED")
    assert report["repairs"]["missing_stop"] >= 2  # retried round after round until it worked
    assert_invariants(report)


def stops_by_owner(exchange, symbol="FORMUSDT"):
    return sorted((o.client_order_id, o.quantity, o.stop_price) for o in exchange.open_orders_snapshot()
                  if o.symbol == symbol)


async def test_more_on_the_exchange_than_stored_is_adopted_as_its_own_position_with_its_own_stop(autojump_clock):
    async with trading() as (engine, exchange, store):
        await exchange.place_order(manual("FORMUSDT", OrderSide.BUY, OrderKind.ENTRY, 100.0, "by-hand-9"))
        assert exchange.unprotected_positions() == ["FORMUSDT"]
        assert await engine.sweep.sweep_once() == {"size_mismatch": 1, "adopted": 1}
        assert exchange.unprotected_positions() == []
        first, excess = engine.positions()
        assert (first.id, first.quantity, first.signal_id) == (1, 245.0, "1")  # the stored position is untouched
        assert (excess.id, excess.quantity, excess.signal_id, excess.wave_id) == (2, 100.0, "adopted-FORMUSDT", "sweep")
        assert excess.entry_price == 0.8132  # the exchange's average entry minus what position 1 paid
        assert stops_by_owner(exchange) == [("tb-1-stop1", 245.0, 0.7969), ("tb-2-stop1", 100.0, 0.7969)]
        assert await engine.sweep.sweep_once() == {}
        # Both are followed: the price rises, each stop trails for its own size.
        await tick(exchange, 0.8260)
        assert stops_by_owner(exchange) == [("tb-1-stop2", 245.0, 0.8218), ("tb-2-stop2", 100.0, 0.8218)]
        await tick(exchange, 0.8210)  # through both: each reduce-only stop closes its own part
        assert exchange.positions_snapshot() == [] and exchange.open_orders_snapshot() == []
        assert [(p.status, p.exit_reason) for p in engine.positions(include_closed=True)] == \
            [(PositionStatus.CLOSED, ExitReason.TRAILING_STOP)] * 2
        await engine.flush()
        (mismatch,) = [e for e in await store.events(position_id=1) if e.kind == "sweep_size_mismatch"]
        assert "the exchange holds long 345, the store 245: the excess 100 is adopted as position 2" in mismatch.detail
        assert [e.kind for e in await store.events(position_id=2)][:1] == ["sweep_adopted"]


async def test_less_on_the_exchange_than_stored_shrinks_the_position_and_its_stop(autojump_clock):
    async with trading() as (engine, exchange, store):
        await exchange.place_order(manual("FORMUSDT", OrderSide.SELL, OrderKind.CLOSE, 100.0, "by-hand-10"))
        assert await engine.sweep.sweep_once() == {"size_mismatch": 1}
        await trio.sleep(2)
        (position,) = engine.positions()
        assert (position.status, position.quantity) == (PositionStatus.OPEN, 145.0)
        assert stops_by_owner(exchange) == [("tb-1-stop2", 145.0, 0.7969)]  # new stop first, the old one gone
        assert await engine.sweep.sweep_once() == {}
        await engine.flush()
        kinds = [e.kind for e in await store.events(position_id=1)]
        assert "sweep_size_mismatch" in kinds and "size_changed" in kinds
        assert (await store.positions())[0].quantity == 145.0


async def test_a_position_reversed_outside_trio_bot_is_closed_and_the_other_side_adopted(autojump_clock):
    async with trading() as (engine, exchange, _):
        await exchange.place_order(manual("FORMUSDT", OrderSide.SELL, OrderKind.ENTRY, 295.0, "by-hand-11"))
        assert [(p.side.value, p.quantity) for p in exchange.positions_snapshot()] == [("short", 50.0)]
        assert await engine.sweep.sweep_once() == {"position_gone": 1}  # the adoption waits for the follower
        await trio.sleep(2)
        assert await engine.sweep.sweep_once() == {"adopted": 1}
        first, adopted = engine.positions(include_closed=True)
        assert (first.status, first.exit_reason) == (PositionStatus.CLOSED, ExitReason.MANUAL)
        assert (adopted.status, adopted.side.value, adopted.quantity) == (PositionStatus.OPEN, "short", 50.0)
        assert exchange.unprotected_positions() == []
        assert stops_by_owner(exchange) == [("tb-2-stop1", 50.0, 0.8295)]
        assert await engine.sweep.sweep_once() == {}


async def test_the_sweep_leaves_a_stop_move_in_flight_alone(autojump_clock):
    faults = FaultPlan()
    async with trading(faults=faults) as (engine, exchange, store):
        # A move: the new stop is placed, the old one's cancel is slow. A sweep reading the
        # exchange now sees two stops; the older one is the follower's to cancel, not the sweep's.
        faults.add(FaultSpec("exchange.cancel_order", "delay", seconds=2.5, times=1))
        await tick(exchange, 0.8260, wait=2.0)
        assert sorted(live_stops(exchange)) == [0.7969, 0.8218]
        assert await engine.sweep.sweep_once() == {}
        await trio.sleep(5)
        assert live_stops(exchange) == [0.8218]
        await engine.flush()
        kinds = [e.kind for e in await store.events(position_id=1)]
        assert "cancel_attempt_failed" not in kinds and kinds.count("order_cancelled") == 1


async def test_a_closed_position_clears_only_its_own_orders(autojump_clock):
    async with trading(config=CONFIG) as (engine, exchange, _):
        # Another position's stop on the same symbol (e.g. opened by the next wave meanwhile).
        await exchange.place_order(manual("FORMUSDT", OrderSide.SELL, OrderKind.STOP, 10.0, "tb-99-stop1", 0.70))
        await tick(exchange, 0.79)
        (position,) = engine.positions(include_closed=True)
        assert position.status is PositionStatus.CLOSED
        assert [o.client_order_id for o in exchange.open_orders_snapshot()] == ["tb-99-stop1"]


async def test_a_stop_that_triggers_and_expires_is_replaced_at_once(autojump_clock):
    async with trading() as (engine, exchange, _):
        held: list[str] = []
        exchange.trigger_gate = lambda order, price: bool(held) or held.append(order.client_order_id) is not None
        exchange.set_price("FORMUSDT", 0.7960)  # through the stop (0.7969): the exchange holds it ...
        exchange.release_stop(held[0], execute=False)  # ... and ends it without a fill (EXPIRED)
        await trio.sleep(2)
        (position,) = engine.positions(include_closed=True)
        assert position.status is PositionStatus.OPEN  # still held: not recorded as an exit
        assert [p.symbol for p in exchange.positions_snapshot()] == ["FORMUSDT"]
        assert exchange.unprotected_positions() == []  # a new stop, placed without waiting for a sweep
        assert position.stop_client_id == "tb-1-stop2" and live_stops(exchange) == [0.7801]  # 2% under 0.7960


async def test_sweeps_interleaved_with_stop_moves_never_cancel_the_newest_stop(autojump_clock):
    """The race of a sweep against a follower's place-then-cancel, at every phase of the move.

    Placing a stop and cancelling one each take 0.3 s; after each price step a sweep starts
    at every 0.1 s offset, so sweeps read the exchange before the new stop exists, while both
    are live before the follower knows the new one's answer, during the old one's cancel,
    and after. Every cancel is checked at the moment it is sent: it must never name the stop
    the follower holds as current.
    """
    faults = FaultPlan([FaultSpec("exchange.stop_order", "delay", seconds=0.3),
                        FaultSpec("exchange.cancel_order", "delay", seconds=0.3)])
    config = EngineConfig(max_positions_per_wave=1, sweep_interval=0, trailing_min_interval=0.0)
    async with trading(config=config, faults=faults) as (engine, exchange, store):
        cancels = []
        send_cancel = exchange.cancel_order

        async def watched_cancel(symbol, client_order_id):
            view = engine.trailing.view(1)
            cancels.append((client_order_id, view.stop_client_id if view else None))
            return await send_cancel(symbol, client_order_id)

        exchange.cancel_order = watched_cancel
        price, unprotected_seen = 0.8132, []
        for _ in range(12):
            price = round(price * 1.004, 4)
            exchange.set_price("FORMUSDT", price)
            async with trio.open_nursery() as nursery:
                for offset in range(11):
                    async def sweep_at(delay=offset / 10):
                        await trio.sleep(delay)
                        await engine.sweep.sweep_once()
                        unprotected_seen.extend(exchange.unprotected_positions())
                    nursery.start_soon(sweep_at)
        await trio.sleep(2)
        (position,) = engine.positions()
        moves = engine.trailing.view(1).moves
        assert moves >= 8  # the stop really moved, over and over, while sweeps ran
        assert all(cid != current for cid, current in cancels)  # never the newest stop
        assert len(cancels) == moves  # each older stop cancelled once, by its follower (no second cancel, no -2011)
        assert engine.sweep.deferred > 0  # sweeps saw moves in flight and left them alone
        assert sum(engine.sweep.repairs.values()) == 0 and unprotected_seen == []
        assert stops_by_owner(exchange) == [(position.stop_client_id, 245.0, position.stop_price)]
        await engine.flush()
        kinds = [e.kind for e in await store.events(position_id=1)]
        assert "cancel_attempt_failed" not in kinds and "stale_stop" not in kinds


async def test_a_symbol_whose_repair_fails_never_stops_the_others_and_is_repaired_next_round(autojump_clock):
    faults = FaultPlan()
    spec = ExchangeSpec(latency=0.05, markets=(MarketSpec("ADAUSDT", 0.5), MarketSpec("FORMUSDT", 0.8132)))
    exchange = SimExchange.from_spec(spec, faults=faults)
    async with trading(faults=faults, exchange=exchange) as (engine, exchange, store):
        (form,) = engine.positions()
        await exchange.cancel_order("FORMUSDT", form.stop_client_id)
        await exchange.place_order(manual("ADAUSDT", OrderSide.BUY, OrderKind.ENTRY, 40.0, "by-hand-12"))
        # ADAUSDT comes first and its adoption fails (its orders can't be read): FORMUSDT is still repaired.
        faults.add(FaultSpec("exchange.query", "error", {"symbol": "ADAUSDT"}, times=3))  # every attempt
        assert await engine.sweep.sweep_once() == {"missing_stop": 1}
        await trio.sleep(1)
        assert exchange.unprotected_positions() == ["ADAUSDT"]
        assert await engine.sweep.sweep_once() == {"adopted": 1}  # the next round does it
        assert exchange.unprotected_positions() == []
        await engine.flush()
        failed = [e.detail for e in await store.events() if e.kind == "sweep_failed"]
        assert len(failed) == 1 and failed[0].startswith("ADAUSDT")


async def test_an_outage_of_stops_and_closes_for_minutes_is_repaired_within_a_round_of_recovery(autojump_clock):
    faults = FaultPlan([FaultSpec("exchange.stop_order", "error"), FaultSpec("exchange.close_order", "error")])
    config = EngineConfig(max_positions_per_wave=1, sweep_interval=30.0, protect_attempts=2)
    start = trio.current_time()  # rounds at start + 30, + 60, ...
    async with trading(config=config, faults=faults, open_signal=False) as (engine, exchange, _):
        record = await engine.process_wave(wave_signals(1))
        assert record.outcomes[0].reason.startswith("UNPROTECTED")
        # Over three minutes of outage every round tries again and none can succeed. The
        # exchange recovers between two rounds (not in the middle of a repair, which would
        # close the position at once: its stop attempt failed, its close would not).
        await trio.sleep_until(start + 195)
        assert exchange.unprotected_positions() == ["FORMUSDT"]
        assert engine.sweep.repairs["missing_stop"] >= 5
        faults.armed = False  # the exchange answers again
        await trio.sleep(14)  # to just before the next round (start + 210): nobody repairs in between
        assert exchange.unprotected_positions() == ["FORMUSDT"]
        await trio.sleep(6)  # the round due at start + 210 (plus the rounds' own few tenths) repairs it
        assert exchange.unprotected_positions() == []
        (position,) = engine.positions()
        assert position.status is PositionStatus.OPEN and position.stop_client_id in {
            o.client_order_id for o in exchange.open_orders_snapshot()}


async def test_the_sweep_leaves_an_operator_close_and_an_open_in_flight_alone(autojump_clock):
    faults = FaultPlan([FaultSpec("exchange.close_order", "delay", seconds=3.0, times=1),
                        FaultSpec("exchange.stop_order", "delay", {"symbol": "NEOUSDT"}, seconds=3.0, times=1)])
    async with trading(faults=faults) as (engine, exchange, _):
        results = []
        async with trio.open_nursery() as nursery:
            async def close_form():
                results.append(await engine.trailing.close(1))

            async def open_neo():
                results.append(await engine.process_wave(
                    [{"id": "2", "symbol": "NEOUSDT", "side": "long", "score": 1}]))

            nursery.start_soon(close_form)
            nursery.start_soon(open_neo)
            await trio.sleep(1.5)
            # FORMUSDT's close is on its way and NEOUSDT's entry filled without its stop yet:
            # a sweep reading now would see a position closing and one unprotected and unknown.
            assert sorted(exchange.unprotected_positions()) == ["NEOUSDT"]
            assert await engine.sweep.sweep_once() == {}
        assert engine.sweep.deferred >= 1
        close, wave = results if hasattr(results[0], "closed") else results[::-1]
        assert close.closed and wave.counts.opened == 1
        assert exchange.unprotected_positions() == [] and [p.symbol for p in exchange.positions_snapshot()] == [
            "NEOUSDT"]
        assert [p.symbol for p in engine.positions()] == ["NEOUSDT"]  # nothing adopted, nothing closed twice
        assert await engine.sweep.sweep_once() == {}

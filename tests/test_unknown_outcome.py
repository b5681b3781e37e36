"""An entry whose answer was lost may still execute. The wave reports it `timed_out`
("being resolved") without waiting; the resolver keeps looking it up for
`unknown_outcome_window` seconds, protects a late fill within about a second of it
showing on the exchange, and updates the signal's stored outcome with the time.
Shutdown waits for it (bounded, and says so); a crash in the meantime is resolved
by the next start-up."""

from __future__ import annotations

import logging

import pytest
import trio

from adapters.sim.exchange import SimExchange
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.errors import TransientError
from engine.model import OrderKind, OrderRequest, OrderSide, OrderState, PositionStatus
from engine.nursery.clocks import SIMULATION_EPOCH
from engine.report import wave_json
from tests.test_restart import SPEC
from trio_bot import Engine

UNKNOWN = "503 Unknown error, please check your request or try again later."
FORM = {"id": "1", "symbol": "FORMUSDT", "side": "long", "score": 2}
NEO = {"id": "2", "symbol": "NEOUSDT", "side": "long", "score": 1}


class _Clock:
    """Wall time that follows the (virtual) Trio clock: records, restarts and windows agree."""

    def now(self) -> float:
        return SIMULATION_EPOCH + trio.current_time()


CLOCK = _Clock()


class Crash(BaseException):
    """The process dying in the middle of a look-up (kill -9, as far as the engine can tell)."""


class LateExchange(SimExchange):
    """Answers an entry with Binance's 503 "unknown" and executes it `late` seconds afterwards
    (never, with `late=None`). Records when each entry filled and each stop was placed."""

    nursery: trio.Nursery
    late: float | None = 0.15
    hang_entries = False  # the entry call hangs instead of answering 503 (cancelled in flight)
    unreachable = False  # every look-up fails
    crash = False  # the next look-up kills the engine

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.filled_at: dict[str, float] = {}
        self.stop_at: dict[str, float] = {}
        self.lookups = 0
        self.entry_seen = trio.Event()

    async def place_order(self, request: OrderRequest) -> OrderState:
        if request.kind is OrderKind.ENTRY and request.symbol == "FORMUSDT":
            self.entry_seen.set()
            if self.late is not None:
                self.nursery.start_soon(self._execute_late, request)
            if self.hang_entries:
                await trio.sleep_forever()
            raise TransientError(UNKNOWN)
        state = await super().place_order(request)
        if request.kind is OrderKind.STOP:
            self.stop_at.setdefault(request.symbol, trio.current_time())
        return state

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        self.lookups += 1
        if self.crash:
            raise Crash()
        if self.unreachable:
            raise TransientError("502 Bad Gateway")
        return await super().fetch_order(symbol, client_order_id)

    async def _execute_late(self, request: OrderRequest) -> None:
        assert self.late is not None
        await trio.sleep(self.late)
        await SimExchange.place_order(self, request)
        self.filled_at[request.symbol] = trio.current_time()


def exchange_for(nursery: trio.Nursery, late: float | None) -> LateExchange:
    exchange = LateExchange.from_spec(SPEC)
    exchange.nursery, exchange.late = nursery, late
    return exchange


def only(record, signal_id="1"):
    return next(o for o in record.outcomes if o.signal_id == signal_id)


async def stored_wave(store):
    (wave,) = await store.waves()
    positions = {p.id: p for p in await store.positions(include_closed=True)}
    return wave, wave_json(wave, positions)


async def test_a_late_fill_after_the_wave_returned_is_protected_within_a_second_and_its_outcome_updated(
        autojump_clock):
    store = await SQLiteStore.open(":memory:")
    async with trio.open_nursery() as nursery:
        exchange = exchange_for(nursery, late=20.0)
        async with Engine.open(EngineConfig(sweep_interval=0), exchange, store, clock=CLOCK) as engine:
            record = await engine.process_wave([FORM])
            # The wave did not wait for the entry: reported honestly, resolution pending.
            assert record.duration < 5.0
            assert only(record).outcome == "timed_out"
            assert only(record).reason == f"entry order outcome unknown ({UNKNOWN}); being resolved"
            assert engine.positions()[0].status is PositionStatus.OPENING
            await engine.flush()
            wave, shown = await stored_wave(store)
            assert shown["signals"][0]["outcome"] == "timed_out" and shown["signals"][0]["resolved_at"] is None

            await trio.sleep(25.0)  # the entry executes at t≈20
            assert exchange.stop_at["FORMUSDT"] - exchange.filled_at["FORMUSDT"] <= 1.0
            assert exchange.unprotected_positions() == []
            (position,) = engine.positions()
            assert position.status is PositionStatus.OPEN and position.stop_price is not None
            assert engine.trailing.view(position.id) is not None  # followed from now on
            await engine.flush()
            wave, shown = await stored_wave(store)
    await store.aclose()
    (signal,) = shown["signals"]
    assert signal["outcome"] == "opened" and signal["position_id"] == position.id
    assert signal["reason"].startswith("the entry filled after its answer was lost")
    assert signal["resolved_at"] is not None and signal["resolved_at"] > wave.started_at + 19
    # Counts equal what the exchange holds.
    assert shown["counts"]["opened"] == len(exchange.positions_snapshot()) == 1


async def test_an_entry_never_executed_is_resolved_failed_when_its_window_ends(autojump_clock):
    store = await SQLiteStore.open(":memory:")
    async with trio.open_nursery() as nursery:
        exchange = exchange_for(nursery, late=None)
        config = EngineConfig(sweep_interval=0, unknown_outcome_window=60.0)
        async with Engine.open(config, exchange, store, clock=CLOCK) as engine:
            record = await engine.process_wave([FORM])
            assert only(record).outcome == "timed_out"
            await trio.sleep(30.0)  # inside the window: not yet believed
            await engine.flush()
            wave, shown = await stored_wave(store)
            assert shown["signals"][0]["outcome"] == "timed_out"
            assert engine.positions()[0].status is PositionStatus.OPENING
            looked_up = exchange.lookups
            await trio.sleep(35.0)
            assert exchange.lookups > looked_up + 30  # about twice a second through the window
            await engine.flush()
            wave, shown = await stored_wave(store)
        positions = await store.positions(include_closed=True)
    await store.aclose()
    (signal,) = shown["signals"]
    assert signal["outcome"] == "failed"
    assert signal["reason"] == (f"the entry was never executed: its answer was lost ({UNKNOWN}) and the exchange "
                                "had no such order after 60s")
    assert signal["resolved_at"] == pytest.approx(wave.started_at + 60, abs=3)
    assert [p.status for p in positions] == [PositionStatus.CLOSED]
    assert exchange.positions_snapshot() == []


async def test_the_wave_is_not_blocked_and_counts_a_pending_entry_towards_its_target(autojump_clock):
    store = await SQLiteStore.open(":memory:")
    async with trio.open_nursery() as nursery:
        exchange = exchange_for(nursery, late=None)
        config = EngineConfig(sweep_interval=0, max_positions_per_wave=1, max_concurrent_signals=1)
        async with Engine.open(config, exchange, store, clock=CLOCK) as engine:
            record = await engine.process_wave([FORM, NEO])
            # Far inside the 60 s window the wave is over; the pending entry may still fill, so
            # the next candidate is not opened beyond the wave's target of one.
            assert record.duration < 5.0
            assert only(record, "1").outcome == "timed_out"
            assert only(record, "2").outcome == "skipped"
            assert only(record, "2").reason == ("the wave's target of 1 positions was reached, counting 1 entry "
                                                "whose outcome is being resolved")
            assert record.counts.consistent
    await store.aclose()


async def test_a_resolution_during_the_wave_goes_into_the_wave_record_and_frees_its_place(autojump_clock):
    """The entry is found never executed while the wave still runs: the wave's own record says
    so (with the time), and the next candidate takes its place."""

    class SlowNeo(LateExchange):
        async def place_order(self, request: OrderRequest) -> OrderState:
            if request.kind is OrderKind.ENTRY and request.symbol == "NEOUSDT":
                await trio.sleep(8.0)  # a slow answer keeps the wave running past the resolution
            return await super().place_order(request)

    store = await SQLiteStore.open(":memory:")
    async with trio.open_nursery() as nursery:
        exchange = SlowNeo.from_spec(SPEC)
        exchange.nursery, exchange.late = nursery, None
        config = EngineConfig(sweep_interval=0, max_positions_per_wave=2, max_concurrent_signals=2,
                              unknown_outcome_window=3.0, call_timeout=10.0, entry_timeout=10.0)
        async with Engine.open(config, exchange, store, clock=CLOCK) as engine:
            record = await engine.process_wave([FORM, NEO, {"id": "3", "symbol": "ALGOUSDT", "side": "long",
                                                            "score": 0}])
    await store.aclose()
    first = only(record, "1")
    assert first.outcome == "failed" and first.resolved_at is not None
    assert only(record, "2").outcome == "opened"
    assert only(record, "3").outcome == "opened"  # started once the first was found never executed
    assert record.counts.opened == 2 == len(exchange.positions_snapshot())


async def test_an_entry_cancelled_in_flight_by_a_shutdown_is_resolved_before_exit(autojump_clock, caplog):
    """The trial that lost two positions: SIGINT while entries were in flight, the exchange
    applying them 0.15 s later. The process must not leave them unknown and unprotected."""
    caplog.set_level(logging.WARNING, logger="trio_bot")
    store = await SQLiteStore.open(":memory:")
    async with trio.open_nursery() as nursery:
        exchange = exchange_for(nursery, late=0.15)
        exchange.hang_entries = True  # no answer at all: the call is cancelled in flight
        async with Engine.open(EngineConfig(sweep_interval=0), exchange, store, clock=CLOCK) as engine:
            async def sigint() -> None:
                await exchange.entry_seen.wait()
                await trio.sleep(0.05)  # the entry is in flight; the exchange applies it at 0.15
                engine.stop_current_wave("the engine is shutting down")

            nursery.start_soon(sigint)
            record = await engine.process_wave([FORM])
            assert record.interrupted and only(record).outcome == "timed_out"
            left_wave = trio.current_time()
        exited = trio.current_time()
        positions = await store.positions()
        (wave,) = await store.waves()
    await store.aclose()
    assert exchange.unprotected_positions() == [] and len(exchange.positions_snapshot()) == 1
    assert [p.status for p in positions] == [PositionStatus.OPEN]
    assert wave.outcomes[0].outcome == "opened" and wave.outcomes[0].resolved_at is not None
    assert exited - left_wave < 2.0  # it waited for the answer, not for the whole window
    assert "shutdown: waiting up to" in caplog.text and "position 1 (FORMUSDT, signal 1" in caplog.text


async def test_shutdown_waits_for_a_pending_resolution_only_until_its_window_ends(autojump_clock, caplog):
    caplog.set_level(logging.WARNING, logger="trio_bot")
    store = await SQLiteStore.open(":memory:")
    async with trio.open_nursery() as nursery:
        exchange = exchange_for(nursery, late=None)
        exchange.unreachable = True  # the exchange cannot even be asked: no proof either way
        config = EngineConfig(sweep_interval=0, unknown_outcome_window=20.0, cleanup_timeout=30.0)
        async with Engine.open(config, exchange, store, clock=CLOCK) as engine:
            await engine.process_wave([FORM])
            left_wave = trio.current_time()
        exited = trio.current_time()
        positions = await store.positions()
    await store.aclose()
    assert 15.0 < exited - left_wave <= 20.0 + 30.0  # the window, bounded (never forever)
    # Still unknown: the store keeps it `opening`, so the next start-up reconciles it.
    assert [p.status for p in positions] == [PositionStatus.OPENING]
    assert "for 1 entry of unknown outcome" in caplog.text


async def test_a_crash_mid_window_is_resolved_at_restart(autojump_clock, tmp_path):
    db = str(tmp_path / "bot.db")
    store = await SQLiteStore.open(db)
    async with trio.open_nursery() as nursery:
        exchange = exchange_for(nursery, late=30.0)
        with pytest.RaisesGroup(Crash, flatten_subgroups=True) if hasattr(pytest, "RaisesGroup") \
                else pytest.raises(BaseExceptionGroup):
            async with Engine.open(EngineConfig(sweep_interval=0), exchange, store, clock=CLOCK) as engine:
                record = await engine.process_wave([FORM])
                assert only(record).outcome == "timed_out"
                await trio.sleep(5.0)
                exchange.crash = True
                await trio.sleep(5.0)
        await store.aclose()
        store = await SQLiteStore.open(db)
        (crashed,) = await store.positions()
        assert crashed.status is PositionStatus.OPENING  # the pending resolution survived the crash
        assert (await store.waves())[0].outcomes[0].outcome == "timed_out"

        exchange.crash = False
        async with Engine.open(EngineConfig(sweep_interval=0), exchange, store, clock=CLOCK) as engine:
            # Restarted inside the window: not found yet, so still being resolved.
            assert engine.positions()[0].status is PositionStatus.OPENING
            await trio.sleep(25.0)  # the entry executes at t≈30
            assert exchange.stop_at["FORMUSDT"] - exchange.filled_at["FORMUSDT"] <= 1.0
            assert engine.positions()[0].status is PositionStatus.OPEN
        (wave,) = await store.waves()
    await store.aclose()
    assert exchange.unprotected_positions() == []
    assert wave.outcomes[0].outcome == "opened" and wave.outcomes[0].resolved_at is not None


async def test_a_restart_after_the_window_believes_not_found_at_once(autojump_clock, tmp_path):
    db = str(tmp_path / "bot.db")
    store = await SQLiteStore.open(db)
    async with trio.open_nursery() as nursery:
        exchange = exchange_for(nursery, late=None)
        with pytest.raises(BaseExceptionGroup):
            async with Engine.open(EngineConfig(sweep_interval=0), exchange, store, clock=CLOCK) as engine:
                await engine.process_wave([FORM])
                exchange.crash = True
                await trio.sleep(5.0)
        exchange.crash = False
        await trio.sleep(120.0)  # down for longer than the window
        async with Engine.open(EngineConfig(sweep_interval=0), exchange, store, clock=CLOCK) as engine:
            (position,) = engine.positions(include_closed=True)
            assert position.status is PositionStatus.CLOSED  # decided by start-up's own look-up
            assert not engine.resolver.pending()
    await store.aclose()


async def test_without_a_window_the_late_fill_would_be_left_unprotected(autojump_clock):
    store = await SQLiteStore.open(":memory:")
    async with trio.open_nursery() as nursery:
        exchange = exchange_for(nursery, late=0.15)
        config = EngineConfig(sweep_interval=0, unknown_outcome_window=0)
        async with Engine.open(config, exchange, store, clock=CLOCK) as engine:
            record = await engine.process_wave([FORM])
        await trio.sleep(1.0)
    await store.aclose()
    assert only(record).outcome == "failed"
    assert exchange.unprotected_positions() == ["FORMUSDT"]  # what the window exists to prevent


async def test_the_metrics_count_the_resolvers_decision_apart_from_the_reported_outcome(autojump_clock):
    # Prometheus counters never go back: the wave counted the signal `timed_out`, and the operator
    # must still see that it ended `opened`, and while it was being resolved, that it was.
    from trio_bot.api.metrics import Metrics

    def value(text: str, name: str) -> str | None:
        found = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(name + " ")]
        return found[0] if found else None

    store = await SQLiteStore.open(":memory:")
    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        exchange = exchange_for(nursery, late=20.0)
        async with Engine.open(EngineConfig(sweep_interval=0), exchange, store, clock=CLOCK) as engine:
            metrics.attach(engine)
            record = await engine.process_wave([FORM])
            metrics.on_outcome(only(record))  # as `run` reports each outcome
            during = metrics.render()[0].decode()
            await trio.sleep(25.0)  # the entry executes at t≈20 and is found
            after = metrics.render()[0].decode()
    await store.aclose()
    assert value(during, 'triobot_signal_outcomes_total{outcome="timed_out"}') == "1.0"
    assert value(during, "triobot_entries_being_resolved") == "1.0"
    assert value(during, 'triobot_signal_outcomes_resolved_total{outcome="opened"}') is None
    assert value(after, 'triobot_signal_outcomes_resolved_total{outcome="opened"}') == "1.0"
    assert value(after, "triobot_entries_being_resolved") == "0.0"


async def test_a_second_ctrl_c_stops_the_shutdowns_wait_and_leaves_the_entry_to_the_next_start(autojump_clock,
                                                                                                tmp_path):
    # The operator's call: a minute of look-ups for an entry that may never have reached the
    # exchange is too long for them. Nothing is decided: the next start looks it up again, and
    # a fill it finds then is protected.
    db = str(tmp_path / "bot.db")
    store = await SQLiteStore.open(db)
    said: list[str | None] = []
    async with trio.open_nursery() as nursery:
        exchange = exchange_for(nursery, late=None)
        config = EngineConfig(sweep_interval=0, unknown_outcome_window=60.0)
        async with Engine.open(config, exchange, store, clock=CLOCK) as engine:
            await engine.process_wave([FORM])
            left_wave = trio.current_time()

            async def second_ctrl_c() -> None:
                await trio.sleep(5.0)  # the shutdown is waiting for the resolver by now
                said.append(engine.resolver.abandon_for_shutdown())

            nursery.start_soon(second_ctrl_c)
        exited = trio.current_time()
        positions = await store.positions()
        events = [e.kind for e in await store.events()]
        await store.aclose()
        assert exited - left_wave < 7.0  # not the minute of the window
        assert said == ["not waiting any longer for position 1 (FORMUSDT): left `opening` for the next start "
                        "to look up; a fill meanwhile has no stop until then"]
        assert [p.status for p in positions] == [PositionStatus.OPENING]  # nothing decided
        assert "resolver_abandoned" in events and "entry_resolved" not in events

        # It filled after all, while nothing ran: the next start finds it and protects it.
        await SimExchange.place_order(exchange, OrderRequest("FORMUSDT", OrderSide.BUY, OrderKind.ENTRY,
                                                             positions[0].quantity, positions[0].entry_client_id))
        store = await SQLiteStore.open(db)
        async with Engine.open(config, exchange, store, clock=CLOCK) as engine:
            assert [p.status for p in engine.positions()] == [PositionStatus.OPEN]
        await store.aclose()
    assert exchange.unprotected_positions() == []

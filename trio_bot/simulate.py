"""`trio-bot simulate`: replay a scenario in virtual time and check the invariants.

The whole run is under `MockClock(autojump_threshold=0)`: the simulated
exchange and SQLite run in-process on the Trio thread, so the clock only
jumps when every task is genuinely waiting on a virtual deadline.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import trio
import trio.testing

from adapters.sim.exchange import SimExchange
from adapters.sim.faults import FaultPlan
from adapters.sim.faulty_storage import FaultyStorage
from adapters.sim.price_paths import timeline
from adapters.sim.scenario import Scenario
from adapters.sqlite_store import SQLiteStore
from engine.model import Position, PositionStatus, WaveRecord
from engine.nursery.clocks import VirtualWallClock
from engine.nursery.engine import Engine
from engine.report import position_json, reportable_positions, wave_json

log = logging.getLogger("trio_bot.simulate")


def simulate(scenario: Scenario) -> dict[str, Any]:
    """Run `scenario` to completion and return the report (SCENARIOS.md)."""
    return trio.run(run_scenario, scenario, clock=trio.testing.MockClock(autojump_threshold=0))


async def run_scenario(scenario: Scenario) -> dict[str, Any]:
    faults = FaultPlan(scenario.faults)
    faults.armed = False
    exchange = SimExchange.from_spec(scenario.exchange, faults=faults)
    inner = await SQLiteStore.open(":memory:", call_timeout=scenario.engine.call_timeout)
    storage = FaultyStorage(inner, faults)
    start = trio.current_time()
    records: list[WaveRecord] = []
    not_there = [0]
    ticks = [0]
    async with Engine.open(scenario.engine, exchange, storage, clock=VirtualWallClock()) as engine:
        faults.armed = True

        async def drive_ticks() -> None:
            await play_prices(scenario, exchange, start, ticks)

        async def drive_waves() -> None:
            for wave in sorted(scenario.waves, key=lambda w: w.at):
                await trio.sleep_until(start + wave.at)
                record = await engine.process_wave(list(wave.signals))
                records.append(record)
                not_there[0] += opened_not_on_exchange(record, exchange)

        # Prices stop by themselves after `[run] until` (ticks at `until` itself are applied,
        # whichever task Trio runs first at that instant); waves still running finish.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drive_ticks)
            nursery.start_soon(drive_waves)
            await trio.sleep_until(start + scenario.until)
        elapsed = trio.current_time() - start
        faults.armed = False  # let the final flush through: the report reads the store
        await engine.flush()
        repairs = dict(sorted(engine.sweep.repairs.items()))
    stored = {p.id: p for p in await inner.positions(include_closed=True)}
    waves = await inner.waves()
    final = {w.id: w for w in waves}
    # Prefer the stored wave (what an operator would read back); fall back to memory if a
    # write never landed, so the report still covers every wave.
    shown = [final.get(r.id, r) if len(final.get(r.id, r).outcomes) == len(r.outcomes) else r
             for r in records]
    await inner.aclose()
    return {
        "scenario": scenario.name,
        "virtual_seconds": round(elapsed, 6),
        "waves": [wave_json(w, stored) for w in shown],
        "positions": [position_json(p) for p in reportable_positions(stored.values())],
        "exchange": {
            "positions": [{"symbol": p.symbol, "side": p.side.value, "quantity": p.quantity,
                           "entry_price": p.entry_price}
                          for p in exchange.positions_snapshot()],
            "open_orders": [{"symbol": o.symbol, "kind": o.kind.value, "client_order_id": o.client_order_id,
                             "stop_price": o.stop_price, "quantity": o.quantity,
                             "reduce_only": o.reduce_only}
                            for o in exchange.open_orders_snapshot()],
        },
        "repairs": repairs,
        "ticks": ticks[0],
        "invariants": {**invariants(records, stored, exchange), "opened_not_on_exchange": not_there[0]},
    }


async def play_prices(scenario: Scenario, exchange: SimExchange, start: float, count: list[int]) -> None:
    """Apply the scenario's price paths (price_paths.py) with one sleep per distinct instant.

    The ticks of an instant are applied once every task due at that instant has run and
    blocked again: a fill, a price read or a stop placed at the very instant of a tick sees
    the price from before it, whichever order Trio happens to run tasks in. Nothing after
    `[run] until` is applied; `count[0]` counts the ticks applied so far.
    """
    set_prices = exchange.set_prices
    until = scenario.until
    for at, instant in timeline(scenario):
        if at > until:
            return
        await trio.sleep_until(start + at)
        await trio.testing.wait_all_tasks_blocked()
        for source in instant:
            set_prices(source.moves, relative=source.relative)
            count[0] += len(source.moves)


def opened_not_on_exchange(record: WaveRecord, exchange: SimExchange) -> int:
    """Signals reported `opened` whose position is not on the exchange, protected, as the wave ends."""
    held = {p.symbol for p in exchange.positions_snapshot()}
    unprotected = set(exchange.unprotected_positions())
    return sum(1 for o in record.outcomes
               if o.outcome == "opened" and (o.symbol not in held or o.symbol in unprotected))


def invariants(records: list[WaveRecord], stored: dict[int, Position], exchange: SimExchange) -> dict[str, Any]:
    """Checked against the simulated exchange itself, not against what the engine believes."""
    fills_by_signal: Counter[str] = Counter()
    for position_id, fills in exchange.entry_fill_counts().items():
        position = stored.get(position_id)
        fills_by_signal[position.signal_id if position else f"#{position_id}"] += fills
    # Symbol by symbol: one exchange position may be several stored ones (an adopted excess).
    on_exchange = {p.symbol: p.side.sign * p.quantity for p in exchange.positions_snapshot()}
    in_store: dict[str, float] = {}
    for p in stored.values():
        if p.status is PositionStatus.OPEN:
            in_store[p.symbol] = in_store.get(p.symbol, 0.0) + p.side.sign * p.quantity
    mismatches = sum(1 for symbol in on_exchange.keys() | in_store.keys()
                     if abs(on_exchange.get(symbol, 0.0) - in_store.get(symbol, 0.0)) > 1e-9)
    return {
        "counts_consistent": all(r.counts.consistent for r in records),
        "unprotected_positions": len(exchange.unprotected_positions()),
        "duplicate_entries": sum(1 for n in fills_by_signal.values() if n > 1),
        "store_exchange_mismatches": mismatches,
    }


def invariants_hold(report: dict[str, Any]) -> bool:
    inv = report["invariants"]
    return bool(inv["counts_consistent"]) and not (
        inv["unprotected_positions"] or inv["duplicate_entries"] or inv["store_exchange_mismatches"]
        or inv.get("opened_not_on_exchange"))

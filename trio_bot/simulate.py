"""`trio-bot simulate`: replay a scenario in virtual time and check the invariants.

The whole run is under `MockClock(autojump_threshold=0)`: the simulated
exchange and SQLite run in-process on the Trio thread, so the clock only
jumps when every task is genuinely waiting on a virtual deadline.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
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
from engine.nursery.ratelimit import RateLimiter
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
    instants = Instants()
    # Orders asked for at one instant get their tokens in a fixed order (by client id), once
    # every task due then has asked (ratelimit.py): whichever Trio runs first cannot matter.
    limiter = RateLimiter(scenario.engine.order_rate_per_second, scenario.engine.order_burst,
                          settle=instants.settle)
    async with Engine.open(scenario.engine, exchange, storage, clock=VirtualWallClock(),
                           limiter=limiter) as engine:
        faults.armed = True

        async def drive_ticks() -> None:
            await play_prices(scenario, exchange, start, ticks, instants)

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
        "waves": [wave_json(w, stored, virtual=True) for w in shown],
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


class Instants:
    """Settling a virtual instant: waiting until every task due at it has run and blocked again.

    It also counts who is settling, which tells the price player whether anyone else may
    still run at the current instant (see `quiet_until`).
    """

    def __init__(self) -> None:
        self.settling = 0
        self._probe = run_loop_probe()

    async def settle(self) -> None:
        self.settling += 1
        try:
            await trio.testing.wait_all_tasks_blocked()
        finally:
            self.settling -= 1

    def quiet_until(self, deadline: float) -> float | None:
        """The jump to `deadline` (seconds), if nothing but the caller can run until then.

        That is when no task is runnable or still settling (a task woken with the caller is
        not on the run queue yet, but a settling one is counted), no callback is queued,
        and every other deadline is later than where the jump lands: the autojump clock
        would make the same jump and wake only the caller. None otherwise.
        """
        if self.settling:
            return None
        now = trio.current_time()
        step = max(0.0, deadline - now)  # the autojump's step; the clock lands on now + step
        runnable, next_deadline, callbacks = self._probe()
        return step if not runnable and not callbacks and next_deadline > now + step else None


def run_loop_probe() -> Callable[[], tuple[int, float, int]]:
    """(runnable tasks, the next deadline, queued callbacks) of the running Trio loop.

    `trio.lowlevel.current_statistics()` tells the same but costs about 10 µs (it builds
    I/O statistics too), asked once per simulated instant: most of a second per simulated
    day. The runner's own fields cost a tenth of that; where this Trio lacks them, the
    public call is used.
    """
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT

        runner = GLOBAL_RUN_CONTEXT.runner
        runq, deadlines, entry_queue = runner.runq, runner.deadlines, runner.entry_queue
        probe = (len(runq), deadlines.next_deadline(), entry_queue.size())
        if isinstance(probe[0], int) and isinstance(probe[1], float) and isinstance(probe[2], int):
            return lambda: (len(runq), deadlines.next_deadline(), entry_queue.size())
    except Exception:  # another Trio: the public statistics
        pass

    def public() -> tuple[int, float, int]:
        stats = trio.lowlevel.current_statistics()
        return (stats.tasks_runnable, trio.current_time() + stats.seconds_to_next_deadline,
                stats.run_sync_soon_queue_size)

    return public


async def play_prices(scenario: Scenario, exchange: SimExchange, start: float, count: list[int],
                      instants: Instants | None = None) -> None:
    """Apply the scenario's price paths (price_paths.py), one instant at a time.

    The ticks of an instant are applied once every task due at that instant has run and
    blocked again: a fill, a price read or a stop placed at the very instant of a tick sees
    the price from before it, whichever order Trio happens to run tasks in. Nothing after
    `[run] until` is applied; `count[0]` counts the ticks applied so far.

    Between most instants of a long day nobody else is due: under the autojump clock the
    player then lets whatever is running finish at the current instant and moves the clock
    itself, as the autojump would, instead of a sleep and a settle that cost four passes of
    Trio's run loop (a day is 86,400 instants).
    """
    instants = instants or Instants()
    clock = trio.lowlevel.current_clock()
    jump = clock.jump if isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold == 0 else None
    set_prices = exchange.set_prices
    until = scenario.until
    await instants.settle()  # from here on, whoever runs beside the player is settling too
    for at, instant in timeline(scenario):
        if at > until:
            return
        deadline = start + at
        step = instants.quiet_until(deadline) if jump is not None else None
        if jump is not None and step is None:
            await instants.settle()  # what runs now finishes now (a store write, a stop move)
            step = instants.quiet_until(deadline)
        if jump is not None and step is not None:
            jump(step)
        else:
            await trio.sleep_until(deadline)
            await instants.settle()
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

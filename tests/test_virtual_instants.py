"""The simulator's clock jumps: a day's quiet instants skip Trio's sleep without changing anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
import trio.testing

from adapters.sim.scenario import load_scenario, parse_scenario
from tests.test_determinism import rate_limited, tie_heavy
from trio_bot import simulate as sim

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_run_loop_probe_agrees_with_trios_public_statistics():
    async def main() -> list[tuple[Any, Any]]:
        seen = []
        probe = sim.run_loop_probe()

        def public() -> tuple[int, float, int]:
            stats = trio.lowlevel.current_statistics()
            return (stats.tasks_runnable, trio.current_time() + stats.seconds_to_next_deadline,
                    stats.run_sync_soon_queue_size)

        seen.append((probe(), public()))  # nothing else: no deadline at all
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 5.0)
            nursery.start_soon(trio.sleep, 3.0)
            await trio.testing.wait_all_tasks_blocked()
            seen.append((probe(), public()))  # two sleepers
            event = trio.Event()
            nursery.start_soon(event.wait)
            await trio.testing.wait_all_tasks_blocked()
            event.set()
            seen.append((probe(), public()))  # one runnable
        return seen

    seen = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [fast for fast, _ in seen] == [public for _, public in seen]
    assert [fast[0] for fast, _ in seen] == [0, 0, 1]
    assert seen[0][0][1] == float("inf") and seen[1][0][1] == 3.0


def reports(monkeypatch: Any, jumps: bool) -> list[str]:
    if not jumps:
        monkeypatch.setattr(sim.Instants, "quiet_until", lambda self, deadline: None)
    loads = [lambda: load_scenario(EXAMPLES / "incident-2025-10-19.toml"),
             lambda: load_scenario(EXAMPLES / "recorded-prices.toml"),
             lambda: parse_scenario(tie_heavy()), lambda: parse_scenario(rate_limited())]
    result = [json.dumps(sim.simulate(load()), sort_keys=True) for load in loads]
    monkeypatch.undo()
    return result


def test_jumping_the_clock_between_quiet_instants_changes_no_report(monkeypatch):
    assert reports(monkeypatch, jumps=True) == reports(monkeypatch, jumps=False)


def test_most_instants_of_a_walk_are_jumped(monkeypatch):
    """The walk ticks every second for 180 s; only the instants something happens at are slept."""
    slept = []
    real_sleep_until = trio.sleep_until

    async def counting(deadline: float) -> None:
        slept.append(deadline)
        await real_sleep_until(deadline)

    monkeypatch.setattr(sim.trio, "sleep_until", counting)
    sim.simulate(parse_scenario(tie_heavy()))
    monkeypatch.undo()
    assert 0 < len(slept) < 180

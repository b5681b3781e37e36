"""`trio-bot fake-exchange --scenario` plays every kind of price path, as the simulator does.

The server listens on real sockets but nothing here talks to it, so the mock clock can run
its price player: minutes of a scenario in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from adapters.sim.fake_binance import FakeBinance
from adapters.sim.fake_binance.price_player import play_paths
from adapters.sim.klines import kline_ticks
from adapters.sim.price_paths import timeline
from adapters.sim.scenario import load_scenario, parse_scenario

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MARKETS = {"FORMUSDT": {"price": 0.8132}, "NEOUSDT": {"price": 5.62}, "FILUSDT": {"price": 1.903}}


def scenario_with(**tables: Any) -> Any:
    return parse_scenario({"seed": 3, "exchange": {"markets": MARKETS}, "run": {"until": 60.0}, **tables})


def expected_prices(scenario: Any, until: float) -> dict[str, float]:
    """Where the simulator's timeline puts every price by `until`."""
    prices = {m.symbol: m.price for m in scenario.exchange.markets}
    for at, instant in timeline(scenario):
        if at > until:
            break
        for source in instant:
            for symbol, value in source.moves:
                prices[symbol] = prices[symbol] * value if source.relative else value
    return prices


async def serve_for(fake: FakeBinance, seconds: float) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()


async def test_walks_move_the_servers_prices_as_the_simulator_would(autojump_clock):
    scenario = scenario_with(walks=[{"symbols": ["NEOUSDT", "FILUSDT"], "every": 2.0, "step_percent": 0.5}],
                             ticks=[{"at": 3.0, "symbol": "NEOUSDT", "price": 6.0}])
    fake = FakeBinance(scenario)
    await serve_for(fake, 11.5)  # walk ticks at 2, 4, …, 10; the tick at 3 in between
    expected = expected_prices(scenario, 11.5)
    assert expected["NEOUSDT"] != 6.0 and expected["FILUSDT"] != 1.903
    assert {s: fake.exchange.price(s) for s in expected} == expected
    assert fake.exchange.price("FORMUSDT") == 0.8132  # not walked


async def test_the_walk_reaches_every_account(autojump_clock):
    fake = FakeBinance(scenario_with(walks=[{"every": 1.0, "step_percent": 1.0}]), accounts=2)
    await serve_for(fake, 3.5)
    second = fake.accounts["test-key-2"].exchange
    assert [second.price(s) for s in MARKETS] == [fake.exchange.price(s) for s in MARKETS] != [
        m["price"] for m in MARKETS.values()]


async def test_recorded_prices_are_replayed_kline_by_kline(autojump_clock):
    scenario = load_scenario(EXAMPLES / "recorded-prices.toml")
    fake = FakeBinance(scenario)
    await serve_for(fake, 100.0)
    played = [price for at, price in kline_ticks(scenario.prices[0].file, 0.0) if at <= 100.0]
    assert len(played) > 4
    assert fake.exchange.price("FORMUSDT") == played[-1]
    assert fake.exchange.price("FORMUSDT") == expected_prices(scenario, 100.0)["FORMUSDT"]


async def test_a_ticks_mark_is_played_and_released_by_the_next_tick(autojump_clock):
    fake = FakeBinance(scenario_with(ticks=[{"at": 1.0, "symbol": "FORMUSDT", "price": 0.80, "mark": 0.81},
                                            {"at": 1.0, "symbol": "NEOUSDT", "price": 5.5},
                                            {"at": 2.0, "symbol": "FORMUSDT", "price": 0.79}]))
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        await trio.sleep(1.5)
        assert (fake.exchange.price("FORMUSDT"), fake.mark_price("FORMUSDT")) == (0.80, 0.81)
        assert fake.mark_price("NEOUSDT") == fake.exchange.price("NEOUSDT") == 5.5
        await trio.sleep(1.0)
        assert fake.mark_price("FORMUSDT") == fake.exchange.price("FORMUSDT") == 0.79
        nursery.cancel_scope.cancel()


async def test_each_instant_is_played_at_its_time_in_the_documented_order(autojump_clock):
    scenario = parse_scenario({"seed": 1, "exchange": {"markets": MARKETS}, "run": {"until": 86_400.0},
                               "ticks": [{"at": 2.0, "symbol": "FILUSDT", "price": 2.0}],
                               "walks": [{"symbols": ["NEOUSDT", "FORMUSDT"], "every": 1.0, "step_percent": 0.1}]})
    applied: list[tuple[float, str]] = []
    with trio.move_on_after(3.5):
        await play_paths(scenario, lambda symbol, price, mark: applied.append((trio.current_time(), symbol)),
                         lambda symbol: 1.0)
    assert applied == [(1.0, "NEOUSDT"), (1.0, "FORMUSDT"), (2.0, "FILUSDT"), (2.0, "NEOUSDT"), (2.0, "FORMUSDT"),
                       (3.0, "NEOUSDT"), (3.0, "FORMUSDT")]


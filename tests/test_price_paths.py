"""Generated (`[[walks]]`) and recorded (`[[prices]]`) price paths, as a scenario author sees them."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.klines import kline_ticks
from adapters.sim.price_paths import timeline
from adapters.sim.scenario import ScenarioError, load_scenario, parse_scenario
from tests.conftest import PRICES, assert_invariants, run, scenario, wave_signals
from trio_bot.simulate import invariants_hold, simulate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLE = EXAMPLES / "prices" / "FORMUSDT-1m-2025-10-19.csv"
HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
          "taker_buy_quote_volume,ignore")


def kline(open_time: int, o: float, h: float, low: float, c: float, interval: int = 60_000) -> str:
    return f"{open_time},{o},{h},{low},{c},1000.0,{open_time + interval - 1},800.0,42,500.0,400.0,0"


def with_walks(*walks: dict[str, Any], until: float = 60.0, **kw: Any) -> dict[str, Any]:
    data = scenario(until=until, waves=[], **kw)
    data["walks"] = list(walks)
    return data


def moves(data: dict[str, Any]) -> list[tuple[float, str, float, bool]]:
    sc = parse_scenario(data)
    return [(at, s, v, m.relative) for at, instant in timeline(sc) for m in instant for s, v in m.moves]


# --- [[walks]] ---

def test_a_walk_ticks_every_market_every_interval_within_its_step():
    flat = moves(with_walks({"every": 2.0, "step_percent": 0.5}, until=20.0))
    assert len(flat) == len(PRICES) * 10  # at 2, 4, ..., 20
    assert [at for at, *_ in flat[::len(PRICES)]] == [2.0 * k for k in range(1, 11)]
    assert [s for _, s, _, _ in flat[:len(PRICES)]] == list(PRICES)  # the markets' order
    assert all(relative and 0.995 <= f <= 1.005 for _, _, f, relative in flat)
    assert len({f for _, _, f, _ in flat}) == len(flat)  # really random


def test_a_walk_is_a_function_of_its_seed():
    one = moves(with_walks({"every": 1.0, "step_percent": 1.0, "symbols": ["NEOUSDT"], "seed": 5}))
    again = moves(with_walks({"every": 1.0, "step_percent": 1.0, "symbols": ["NEOUSDT"], "seed": 5}))
    other = moves(with_walks({"every": 1.0, "step_percent": 1.0, "symbols": ["NEOUSDT"], "seed": 6}))
    assert one == again != other
    # Two walks left to the scenario's seed do not repeat each other.
    two = moves(with_walks({"every": 1.0, "step_percent": 1.0, "symbols": ["NEOUSDT"]},
                           {"every": 1.0, "step_percent": 1.0, "symbols": ["FILUSDT"]}))
    assert [f for _, s, f, _ in two if s == "NEOUSDT"] != [f for _, s, f, _ in two if s == "FILUSDT"]


def test_walk_window_and_order_within_an_instant():
    data = with_walks({"every": 10.0, "step_percent": 1.0, "symbols": ["FILUSDT", "NEOUSDT"], "from": 20.0,
                       "until": 50.0},
                      until=100.0, ticks=[{"at": 30.0, "symbol": "NEOUSDT", "price": 6.0}])
    flat = moves(data)
    assert [(at, s, rel) for at, s, _, rel in flat] == [
        (30.0, "NEOUSDT", False),  # [[ticks]] first within an instant
        (30.0, "FILUSDT", True), (30.0, "NEOUSDT", True),
        (40.0, "FILUSDT", True), (40.0, "NEOUSDT", True),
        (50.0, "FILUSDT", True), (50.0, "NEOUSDT", True),
    ]


def test_a_walk_continues_from_a_tick_and_stops_at_run_until():
    data = with_walks({"every": 1.0, "step_percent": 0.1, "symbols": ["NEOUSDT"]}, until=120.0,
                      ticks=[{"at": 60.0, "symbol": "NEOUSDT", "price": 2.0}])
    report = run(data)
    assert report["ticks"] == 121  # 120 walk ticks and the crash; nothing after `until`
    assert report["virtual_seconds"] == 120.0
    # The crash to 2.0 is followed by small moves around 2.0, not a jump back to ~5.6.
    data["waves"] = [{"at": 90.0, "signals": [{"id": "1", "symbol": "NEOUSDT", "side": "long", "score": 1}]}]
    report = run(data)
    (position,) = report["positions"]
    assert 1.9 < position["entry_price"] < 2.1


def test_positions_follow_a_walk_to_their_stops():
    data = with_walks({"every": 2.0, "step_percent": 0.4}, until=1200.0)
    data["waves"] = [{"at": 0.0, "signals": wave_signals()}, {"at": 600.0, "signals": wave_signals(6, 10)}]
    report = run(data)
    assert report["ticks"] == 600 * len(PRICES)
    assert sum(p["status"] == "closed" for p in report["positions"]) >= 3
    assert {p["exit_reason"] for p in report["positions"]} & {"stop_loss", "trailing_stop"}
    assert_invariants(report)


@pytest.mark.parametrize(("walk", "key", "expected"), [
    ({"step_percent": 1.0}, "walks[0].every", "seconds between ticks, a number in [1, 86400]"),
    ({"every": 0, "step_percent": 1.0}, "walks[0].every", "a number in [1, 86400]"),
    ({"every": 0.001, "step_percent": 1.0}, "walks[0].every", "a number in [1, 86400]"),
    ({"every": 1.0}, "walks[0].step_percent", "percentage"),
    ({"every": 1.0, "step_percent": 100}, "walks[0].step_percent", "a number in (0, 100)"),
    ({"every": 1.0, "step_percent": 1.0, "symbols": ["NOPEUSDT"]}, "walks[0].symbols[0]", "[exchange.markets]"),
    ({"every": 1.0, "step_percent": 1.0, "symbols": ["NEOUSDT", "NEOUSDT"]}, "walks[0].symbols", "at most once"),
    ({"every": 1.0, "step_percent": 1.0, "symbols": "NEOUSDT"}, "walks[0].symbols", "an array"),
    ({"every": 1.0, "step_percent": 1.0, "from": 30.0, "until": 10.0}, "walks[0].until", ">= from"),
    ({"every": 1.0, "step_percent": 1.0, "seed": 1.5}, "walks[0].seed", "an integer"),
    ({"every": 1.0, "step_percent": 1.0, "speed": 3}, "walks[0].speed", "one of"),
])
def test_bad_walks_name_the_key(walk: dict[str, Any], key: str, expected: str):
    with pytest.raises(ScenarioError) as err:
        parse_scenario(with_walks(walk))
    assert err.value.key == key
    assert expected in str(err.value)


# --- [[prices]]: Binance kline CSV ---

def write(tmp_path: Path, name: str, *lines: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_each_kline_is_open_nearer_extreme_other_extreme_close_over_its_interval(tmp_path: Path):
    path = write(tmp_path, "k.csv",
                 kline(1_700_000_000_000, 10.0, 10.5, 9.9, 10.2),  # low nearer the open
                 kline(1_700_000_060_000, 10.2, 10.3, 9.0, 9.5))  # high nearer the open
    assert list(kline_ticks(path, 100.0)) == [
        (100.0, 10.0), (115.0, 9.9), (130.0, 10.5), (145.0, 10.2),
        (160.0, 10.2), (175.0, 10.3), (190.0, 9.0), (205.0, 9.5),
    ]


def test_headered_files_and_microsecond_times_read_the_same(tmp_path: Path):
    plain = write(tmp_path, "a.csv", kline(1_700_000_000_000, 10.0, 10.5, 9.9, 10.2))
    headered = write(tmp_path, "b.csv", HEADER, kline(1_700_000_000_000, 10.0, 10.5, 9.9, 10.2))
    micro = write(tmp_path, "c.csv", kline(1_700_000_000_000_000, 10.0, 10.5, 9.9, 10.2, 60_000_000))
    assert list(kline_ticks(plain, 0.0)) == list(kline_ticks(headered, 0.0)) == list(kline_ticks(micro, 0.0))


@pytest.mark.parametrize(("lines", "line", "problem"), [
    ([kline(1_000, 1.0, 1.1, 0.9, 1.0), "1060000,1.0,1.1"], 2, "3 fields"),
    ([kline(1_000, 1.0, 1.1, 0.9, 1.0), kline(61_000, 1.0, 0.95, 0.9, 1.0)], 2, "high 0.95"),
    ([kline(1_000, 1.0, 1.1, 1.05, 1.0)], 1, "low 1.05"),
    ([kline(1_000, 1.0, 1.1, 0.9, -1.0)], 1, "close '-1.0'"),
    ([kline(1_000, 1.0, 1.1, 0.9, 1.0).replace("1.1", "abc")], 1, "high 'abc' is not a number"),
    ([kline(61_000, 1.0, 1.1, 0.9, 1.0), kline(1_000, 1.0, 1.1, 0.9, 1.0)], 2, "time order"),
    (["time,price", kline(1_000, 1.0, 1.1, 0.9, 1.0)], 1, "header lacks open_time"),
    ([HEADER], 1, "no klines"),
])
def test_a_bad_kline_file_is_refused_naming_file_and_line(tmp_path: Path, lines: list[str], line: int,
                                                          problem: str):
    path = write(tmp_path, "bad.csv", *lines)
    (tmp_path / "s.toml").write_text(
        '[exchange.markets.NEOUSDT]\nprice = 5.0\n[[prices]]\nfile = "bad.csv"\nsymbol = "NEOUSDT"\n')
    with pytest.raises(ScenarioError) as err:
        load_scenario(tmp_path / "s.toml")
    assert err.value.key == "prices[0].file"
    assert err.value.value == f"{path} line {line}"
    assert problem in str(err.value)


def test_missing_and_non_utf8_kline_files_are_refused(tmp_path: Path):
    (tmp_path / "bin.csv").write_bytes(kline(1_000, 1.0, 1.1, 0.9, 1.0).encode() + b"\n\xff\xfe,1\n")
    for name, problem in (("gone.csv", "cannot be read"), ("bin.csv", "not UTF-8")):
        data = scenario()
        data["prices"] = [{"file": name, "symbol": "NEOUSDT"}]
        with pytest.raises(ScenarioError) as err:
            parse_scenario(data, base=tmp_path)
        assert problem in str(err.value) and name in str(err.value)


def test_prices_table_keys_are_checked(tmp_path: Path):
    write(tmp_path, "k.csv", kline(1_000, 1.0, 1.1, 0.9, 1.0))
    for table, key in (({"file": "k.csv", "symbol": "NOPEUSDT"}, "prices[0].symbol"),
                       ({"symbol": "NEOUSDT"}, "prices[0].file"),
                       ({"file": "k.csv", "symbol": "NEOUSDT", "from": -1}, "prices[0].from"),
                       ({"file": "k.csv", "symbol": "NEOUSDT", "speed": 2}, "prices[0].speed")):
        data = scenario()
        data["prices"] = [table]
        with pytest.raises(ScenarioError) as err:
            parse_scenario(data, base=tmp_path)
        assert err.value.key == key


def test_the_shipped_sample_replays_as_a_scenario():
    ticks = list(kline_ticks(SAMPLE, 0.0))
    assert len(ticks) == 4 * 120 and ticks[0] == (0.0, 0.8132) and ticks[-1][0] == 7185.0
    report = simulate(load_scenario(EXAMPLES / "recorded-prices.toml"))
    assert invariants_hold(report)
    form = [p for p in report["positions"] if p["symbol"] == "FORMUSDT"]
    assert form and form[0]["entry_price"] == 0.8132  # the recorded open
    assert {p["exit_reason"] for p in form} >= {"stop_loss", "trailing_stop"}
    # Each recorded exit happened at a price the file holds (stops fill at the tick price).
    recorded = {price for _, price in ticks}
    assert all(p["exit_price"] in recorded for p in form if p["exit_reason"] == "stop_loss")


def test_timeline_is_lazy():
    data = with_walks({"every": 1.0, "step_percent": 0.1}, until=86_400.0)
    instants = timeline(parse_scenario(data))
    assert iter(instants) is instants  # an iterator: the day's 518,400 ticks are never built up front
    first = list(itertools.islice(instants, 3))
    assert [at for at, _ in first] == [1.0, 2.0, 3.0]

"""Scenario files (see SCENARIOS.md): parsed and checked before anything runs.

Only the *file* is validated here. Signals stay raw mappings: a malformed
signal is the engine's to reject, exactly as if a signal service had sent it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from adapters.textfile import read_text
from engine.call_points import FAULT_POINTS, CallPoint
from engine.checks import GRID_STEP, PRICE, SECONDS, SYMBOL_ALPHABET, Range, identifier_problem, integer
from engine.config import EngineConfig
from engine.errors import ConfigError

EFFECTS = ("error", "reject", "hang", "delay", "lost_response", "unknown", "stall", "unfilled", "expire")
_ORDER_POINTS = (CallPoint.ENTRY_ORDER, CallPoint.STOP_ORDER, CallPoint.CLOSE_ORDER)
# What each point can do. `unknown` (an order answered 503 / -1007 that executes later) only
# makes sense for new orders; a stop's trigger has its own outcomes on Binance's algo service.
_EFFECTS_AT: dict[str, tuple[str, ...]] = {
    CallPoint.STOP_TRIGGER: ("hang", "delay", "stall", "unfilled", "reject", "expire"),
    **{point: ("error", "reject", "hang", "delay", "lost_response", "unknown") for point in _ORDER_POINTS},
}
_PLAIN_EFFECTS = ("error", "reject", "hang", "delay", "lost_response")


def effects_at(point: str) -> tuple[str, ...]:
    """The effects a fault at `point` may have."""
    return _EFFECTS_AT.get(point, _PLAIN_EFFECTS)

# Accepted ranges (README, "Scenarios"). Virtual time is bounded so a replay always answers:
# a day of virtual time (2,880 sweeps at the default interval) runs in about a second; 1e12
# seconds would run for years.
SIM_TIME = Range(0.0, 86_400.0)
BALANCE = Range(0.0, 1e12)
LATENCY = Range(0.0, 60.0)
MIN_NOTIONAL = Range(0.0, 1e9)
LEVERAGE = integer(1, 125)
FAULT_TIMES = integer(1, 1_000_000)
SEED = integer(0, 2**63 - 1)
# A walk ticks every market it moves once per `every`: at least a second keeps a day's replay
# to 86,400 ticks per market.
WALK_EVERY = Range(1.0, 86_400.0)
WALK_STEP = Range(0.0, 100.0, low_open=True, high_open=True)


class ScenarioError(ConfigError):
    """A malformed scenario file (exit status 2)."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        super().__init__(key, value, expected, where="scenario")


@attrs.frozen
class MarketSpec:
    symbol: str
    price: float
    tick_size: float | None = None
    step_size: float | None = None
    min_notional: float | None = None
    max_leverage: int | None = None


@attrs.frozen
class ExchangeSpec:
    balance_usdt: float = 10_000.0
    latency: float = 0.05
    markets: tuple[MarketSpec, ...] = ()


@attrs.frozen
class FaultSpec:
    point: CallPoint = attrs.field(converter=CallPoint)
    effect: str
    match: Mapping[str, str] = attrs.field(factory=dict)
    message: str = ""
    times: int | None = None
    seconds: float = 0.0


@attrs.frozen
class WaveSpec:
    at: float
    signals: tuple[Mapping[str, Any], ...]


@attrs.frozen
class TickSpec:
    at: float
    symbol: str
    price: float
    # The mark price at this tick when it differs from the last price (a wick), for the fake
    # exchange server's MARK_PRICE stops; None: the mark follows the last price.
    mark: float | None = None


@attrs.frozen
class WalkSpec:
    """A generated price path: every `every` seconds each symbol moves by a uniform random
    fraction within ±`step_percent` of its current price (see SCENARIOS.md)."""

    symbols: tuple[str, ...]
    every: float
    step_percent: float
    start: float  # `from` in the file
    until: float
    seed: int


@attrs.frozen
class PricesSpec:
    """A recorded price path: a Binance kline CSV replayed on one symbol from `start` on."""

    file: Path
    symbol: str
    start: float  # `from` in the file


@attrs.frozen
class Scenario:
    name: str
    seed: int
    engine: EngineConfig
    exchange: ExchangeSpec
    faults: tuple[FaultSpec, ...]
    waves: tuple[WaveSpec, ...]
    ticks: tuple[TickSpec, ...]
    until: float
    walks: tuple[WalkSpec, ...] = ()
    prices: tuple[PricesSpec, ...] = ()


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; `[[prices]]` files are resolved next to it and checked too."""
    text = read_text(path, key="file", where="scenario")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError("file", str(path), f"valid TOML ({exc})") from None
    return parse_scenario(data, base=Path(path).parent)


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise ScenarioError(f"{where}{key}", value, f"one of: {', '.join(sorted(allowed))}")


def _number(value: Any, key: str, allowed: Range) -> float:
    if not allowed.contains(value):
        raise ScenarioError(key, value, allowed.describe())
    return float(value)


def _int(value: Any, key: str, allowed: Range) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool)) or not allowed.contains(value):
        raise ScenarioError(key, value, allowed.describe())
    return value


def _symbol(value: Any, key: str) -> str:
    symbol = _string(value, key)
    problem = identifier_problem(symbol, what="symbol")
    if problem is not None:
        raise ScenarioError(key, symbol, f"a market symbol of {SYMBOL_ALPHABET} (this one {problem})")
    return symbol


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(key, value, "a table")
    return value


def _array(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise ScenarioError(key, value, "an array")
    return value


def _string(value: Any, key: str, limit: int = 200) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ScenarioError(key, value, f"a non-empty string of at most {limit} characters")
    return value


def parse_scenario(data: Mapping[str, Any], base: Path | None = None) -> Scenario:
    """Check a parsed scenario; `base` is the directory `[[prices]]` files are relative to."""
    _only(data, {"name", "seed", "engine", "exchange", "faults", "waves", "ticks", "walks", "prices", "run"}, "")
    name = _string(data.get("name", "scenario"), "name")
    seed = _int(data.get("seed", 0), "seed", SEED)
    try:
        engine = EngineConfig.from_mapping(_table(data.get("engine", {}), "engine"))
    except ScenarioError:
        raise
    except ConfigError as exc:
        raise ScenarioError(f"engine.{exc.key}", exc.value, exc.expected) from None
    exchange = parse_exchange(_table(data.get("exchange", {}), "exchange"))
    faults = tuple(
        _parse_fault(_table(f, f"faults[{i}]"), i)
        for i, f in enumerate(_array(data.get("faults", []), "faults"))
    )
    waves = tuple(
        _parse_wave(_table(w, f"waves[{i}]"), i)
        for i, w in enumerate(_array(data.get("waves", []), "waves"))
    )
    known = {m.symbol for m in exchange.markets}
    ticks = tuple(
        _parse_tick(_table(t, f"ticks[{i}]"), i, known)
        for i, t in enumerate(_array(data.get("ticks", []), "ticks"))
    )
    run = _table(data.get("run", {}), "run")
    _only(run, {"until"}, "run.")
    last = max([w.at for w in waves] + [t.at for t in ticks] + [0.0])
    until = _number(run.get("until", min(last + 300.0, SIM_TIME.high)), "run.until", SIM_TIME)
    markets = tuple(m.symbol for m in exchange.markets)
    walks = tuple(
        _parse_walk(_table(w, f"walks[{i}]"), i, markets, seed, until)
        for i, w in enumerate(_array(data.get("walks", []), "walks"))
    )
    prices = tuple(
        _parse_prices(_table(p, f"prices[{i}]"), i, known, base)
        for i, p in enumerate(_array(data.get("prices", []), "prices"))
    )
    return Scenario(name, seed, engine, exchange, faults, waves, ticks, until, walks, prices)


def parse_exchange(table: Mapping[str, Any], where: str = "exchange") -> ExchangeSpec:
    """An `[exchange]`-shaped table (also the paper exchange of `trio-bot run`)."""
    _only(table, {"balance_usdt", "latency", "markets"}, f"{where}.")
    markets = []
    top = where
    for symbol, spec in _table(table.get("markets", {}), f"{top}.markets").items():
        where = f"{top}.markets.{symbol}"
        _symbol(symbol, where)
        spec = _table(spec, where)
        _only(spec, {"price", "tick_size", "step_size", "min_notional", "max_leverage"}, f"{where}.")
        if "price" not in spec:
            raise ScenarioError(f"{where}.price", None, "a price > 0")
        lev = spec.get("max_leverage")
        if lev is not None:
            _int(lev, f"{where}.max_leverage", LEVERAGE)
        optional = {
            k: _number(spec[k], f"{where}.{k}", GRID_STEP if k != "min_notional" else MIN_NOTIONAL)
            for k in ("tick_size", "step_size", "min_notional") if k in spec
        }
        markets.append(MarketSpec(
            symbol=symbol,
            price=_number(spec["price"], f"{where}.price", PRICE),
            max_leverage=lev,
            **optional,
        ))
    return ExchangeSpec(
        balance_usdt=_number(table.get("balance_usdt", 10_000.0), f"{top}.balance_usdt", BALANCE),
        latency=_number(table.get("latency", 0.05), f"{top}.latency", LATENCY),
        markets=tuple(markets),
    )


def _parse_fault(table: Mapping[str, Any], i: int) -> FaultSpec:
    where = f"faults[{i}]."
    _only(table, {"point", "match", "effect", "message", "times", "seconds"}, where)
    point = table.get("point")
    if point not in FAULT_POINTS:
        raise ScenarioError(f"{where}point", point, f"one of: {', '.join(FAULT_POINTS)}")
    effect = table.get("effect")
    allowed = effects_at(point)
    if not isinstance(effect, str) or effect not in allowed:
        raise ScenarioError(f"{where}effect", effect, f"at {point} one of: {', '.join(allowed)}")
    match = _table(table.get("match", {}), f"{where}match")
    _only(match, {"symbol", "side"}, f"{where}match.")
    for key, value in match.items():
        _string(value, f"{where}match.{key}", 32)
    times = table.get("times")
    if times is not None:
        _int(times, f"{where}times", FAULT_TIMES)
    message = table.get("message", "")
    if not isinstance(message, str) or len(message) > 1000:
        raise ScenarioError(f"{where}message", message, "a string of at most 1000 characters")
    seconds = _number(table.get("seconds", 0.0), f"{where}seconds", SECONDS)
    if effect == "delay" and "seconds" not in table:
        raise ScenarioError(f"{where}seconds", None, "a number of seconds for effect 'delay'")
    return FaultSpec(point, effect, dict(match), message, times, seconds)


def _parse_wave(table: Mapping[str, Any], i: int) -> WaveSpec:
    where = f"waves[{i}]."
    _only(table, {"at", "signals"}, where)
    at = _number(table.get("at", 0.0), f"{where}at", SIM_TIME)
    signals = _array(table.get("signals", []), f"{where}signals")
    for j, signal in enumerate(signals):
        _table(signal, f"{where}signals[{j}]")
    return WaveSpec(at, tuple(signals))


def _parse_tick(table: Mapping[str, Any], i: int, known: set[str]) -> TickSpec:
    where = f"ticks[{i}]."
    _only(table, {"at", "symbol", "price", "mark"}, where)
    symbol = _string(table.get("symbol"), f"{where}symbol", 32)
    if symbol not in known:
        raise ScenarioError(f"{where}symbol", symbol, "a market listed under [exchange.markets]")
    return TickSpec(
        at=_number(table.get("at", 0.0), f"{where}at", SIM_TIME),
        symbol=symbol,
        price=_number(table.get("price"), f"{where}price", PRICE),
        mark=_number(table["mark"], f"{where}mark", PRICE) if "mark" in table else None,
    )


def _known_symbol(value: Any, key: str, known: set[str] | tuple[str, ...]) -> str:
    symbol = _string(value, key)
    if symbol not in known:
        raise ScenarioError(key, symbol, "a market listed under [exchange.markets]")
    return symbol


def _parse_walk(table: Mapping[str, Any], i: int, markets: tuple[str, ...], seed: int,
                until: float) -> WalkSpec:
    where = f"walks[{i}]."
    _only(table, {"symbols", "every", "step_percent", "from", "until", "seed"}, where)
    if "symbols" in table:
        listed = _array(table["symbols"], f"{where}symbols")
        symbols = tuple(_known_symbol(s, f"{where}symbols[{j}]", markets) for j, s in enumerate(listed))
        if len(set(symbols)) != len(symbols):
            raise ScenarioError(f"{where}symbols", listed, "each symbol at most once")
    else:
        symbols = markets
    if "every" not in table:
        raise ScenarioError(f"{where}every", None, f"seconds between ticks, {WALK_EVERY.describe()}")
    every = _number(table["every"], f"{where}every", WALK_EVERY)
    if "step_percent" not in table:
        raise ScenarioError(f"{where}step_percent", None, f"a percentage, {WALK_STEP.describe()}")
    step = _number(table["step_percent"], f"{where}step_percent", WALK_STEP)
    start = _number(table.get("from", 0.0), f"{where}from", SIM_TIME)
    end = _number(table.get("until", until), f"{where}until", SIM_TIME)
    if end < start:
        raise ScenarioError(f"{where}until", table.get("until"), f"a time >= from ({start:g})")
    walk_seed = _int(table.get("seed", min(seed + i, SEED.high)), f"{where}seed", SEED)
    return WalkSpec(symbols, every, step, start, end, walk_seed)


def _parse_prices(table: Mapping[str, Any], i: int, known: set[str], base: Path | None) -> PricesSpec:
    # Imported here: reading klines is price-path code; this module only checks the tables.
    from adapters.sim.klines import check_klines

    where = f"prices[{i}]."
    _only(table, {"file", "symbol", "from"}, where)
    name = _string(table.get("file"), f"{where}file")
    symbol = _known_symbol(table.get("symbol"), f"{where}symbol", known)
    path = Path(name) if base is None or Path(name).is_absolute() else base / name
    check_klines(path, f"{where}file")
    return PricesSpec(path, symbol, _number(table.get("from", 0.0), f"{where}from", SIM_TIME))

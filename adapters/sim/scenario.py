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
from engine.checks import GRID_STEP, PRICE, SECONDS, SYMBOL_ALPHABET, Range, identifier_problem, integer
from engine.config import EngineConfig
from engine.errors import ConfigError

FAULT_POINTS = (
    "exchange.entry_order",
    "exchange.stop_order",
    "exchange.close_order",
    "exchange.cancel_order",
    "exchange.query",
    "storage.write",
    "storage.read",
    "storage.trailing",
)
EFFECTS = ("error", "reject", "hang", "delay", "lost_response")

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
    point: str
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


def load_scenario(path: str | Path) -> Scenario:
    text = read_text(path, key="file", where="scenario")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError("file", str(path), f"valid TOML ({exc})") from None
    return parse_scenario(data)


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise ScenarioError(f"{where}{key}", value, f"one of: {', '.join(sorted(allowed))}")


def _number(value: Any, key: str, allowed: Range) -> float:
    return allowed.check(key, value, where="scenario")


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


def parse_scenario(data: Mapping[str, Any]) -> Scenario:
    _only(data, {"name", "seed", "engine", "exchange", "faults", "waves", "ticks", "run"}, "")
    name = _string(data.get("name", "scenario"), "name")
    seed = SEED.check_int("seed", data.get("seed", 0), where="scenario")
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
    return Scenario(name, seed, engine, exchange, faults, waves, ticks, until)


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
            LEVERAGE.check_int(f"{where}.max_leverage", lev, where="scenario")
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
    if effect not in EFFECTS:
        raise ScenarioError(f"{where}effect", effect, f"one of: {', '.join(EFFECTS)}")
    match = _table(table.get("match", {}), f"{where}match")
    _only(match, {"symbol", "side"}, f"{where}match.")
    for key, value in match.items():
        _string(value, f"{where}match.{key}", 32)
    times = table.get("times")
    if times is not None:
        FAULT_TIMES.check_int(f"{where}times", times, where="scenario")
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
    _only(table, {"at", "symbol", "price"}, where)
    symbol = _string(table.get("symbol"), f"{where}symbol", 32)
    if symbol not in known:
        raise ScenarioError(f"{where}symbol", symbol, "a market listed under [exchange.markets]")
    return TickSpec(
        at=_number(table.get("at", 0.0), f"{where}at", SIM_TIME),
        symbol=symbol,
        price=_number(table.get("price"), f"{where}price", PRICE),
    )

"""Fuzzing the edges: config tables, scenario files and signal lines, as a careless operator or an
attacker would write them.

Everything goes through the entry points `trio-bot` itself uses (`main()`, `load_run_config`,
`load_scenario`, `JsonlSignalSource.parse`, `Engine.process_wave`), in-process: a subprocess per
example would cost more than the example. Each input must end in exit 0, 1 or 2 with at most one
error line, never a traceback, within a time bound; a signal, however malformed, must end as one
outcome of its wave.

A few hundred examples run with the suite. `make fuzz` runs the same properties with many more
(`TRIO_BOT_FUZZ=1`, the `fuzz` marker selects them).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import string
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.signals import JsonlSignalSource
from adapters.sim.exchange import SimExchange, market_from_spec
from adapters.sim.scenario import ExchangeSpec, MarketSpec, load_scenario
from adapters.sqlite_store import SQLiteStore
from engine.config import EngineConfig
from engine.errors import ConfigError
from engine.nursery.clocks import VirtualWallClock
from engine.nursery.engine import Engine
from engine.validation import screen_wave
from trio_bot.cli import main
from trio_bot.run import load_run_config

pytestmark = pytest.mark.fuzz

DEEP = bool(os.environ.get("TRIO_BOT_FUZZ"))


def examples(quick: int, deep: int = 2000) -> settings:
    """`quick` examples with the suite (deterministic, so CI is repeatable), `deep` under make fuzz."""
    return settings(max_examples=deep if DEEP else quick, deadline=None, derandomize=not DEEP,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large], database=None)


# --- values a TOML or JSON document can carry, with the nasty ones well represented ---

NASTY_TEXT = st.sampled_from(["", " ", "\x1b]0;pwned\x07\x1b[2J", "BTC\u2028USDT", "\u202e", "x" * 5000,
                              "BTCUSDT", "long", "SHORT", "buy", "nan", "1e308", "\x00", "é✓", "a\nb"])
NASTY_FLOAT = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 5e-324, 1e-300, 1e308, -1e308, math.inf,
                                                      -math.inf, math.nan, 1e15, 1e12, 0.1, 1.0, 30.0]))
NASTY_INT = st.one_of(st.integers(-10, 1000), st.integers(), st.sampled_from([2**63, -(2**63) - 1, 10**30]))
SCALAR = st.one_of(NASTY_FLOAT, NASTY_INT, st.booleans(), NASTY_TEXT, st.text(max_size=20))


def nested(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=6),
                                                     inner, max_size=4)), max_leaves=12)


ANY_VALUE = nested(SCALAR)


# --- a small TOML writer (the standard library only reads TOML) ---

def toml_key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "_-" for c in key) and key.isascii() else json.dumps(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() < 64 else json.dumps(str(value))  # TOML ints are 64-bit
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_document(tables: dict[str, Any]) -> str:
    lines = []
    for name, body in tables.items():
        if isinstance(body, dict):
            lines.append(f"[{toml_key(name)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in body.items()]
        elif isinstance(body, list) and body and all(isinstance(b, dict) for b in body):
            for item in body:
                lines.append(f"[[{toml_key(name)}]]")
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in item.items()]
        else:
            lines.insert(0, f"{toml_key(name)} = {toml_value(body)}")
    return "\n".join(lines) + "\n"


# --- strategies for the three kinds of input ---

ENGINE_KEYS = st.sampled_from([*EngineConfig.keys(), "stop_los_percent", "bogus"])
ENGINE_TABLE = st.dictionaries(ENGINE_KEYS, st.one_of(SCALAR, ANY_VALUE), max_size=5)
SYMBOLS = st.one_of(st.sampled_from(["BTCUSDT", "ETHUSDT", "FORMUSDT"]), NASTY_TEXT)
PRICE = st.one_of(st.floats(0.001, 100_000.0), NASTY_FLOAT, NASTY_INT, NASTY_TEXT)
MARKETS = st.dictionaries(SYMBOLS, st.fixed_dictionaries({"price": PRICE}, optional={
    "tick_size": PRICE, "step_size": PRICE, "min_notional": PRICE, "max_leverage": NASTY_INT,
    "bogus": SCALAR}), max_size=3)
SIGNAL = st.one_of(
    st.fixed_dictionaries({"id": st.one_of(st.integers(0, 99).map(str), NASTY_INT, NASTY_TEXT, ANY_VALUE),
                           "symbol": SYMBOLS, "side": st.one_of(NASTY_TEXT, st.sampled_from(["long", "sell"])),
                           "score": st.one_of(NASTY_FLOAT, NASTY_INT, NASTY_TEXT)}),
    st.dictionaries(st.sampled_from(["id", "symbol", "side", "score", "extra"]), ANY_VALUE, max_size=5),
    ANY_VALUE)
WAVE = st.lists(SIGNAL, max_size=6)
# Valid times stay short so a valid scenario replays in milliseconds; the hostile ones are the point.
TIME = st.one_of(st.floats(0.0, 120.0), NASTY_FLOAT, NASTY_INT, NASTY_TEXT)
SCENARIO = st.fixed_dictionaries({}, optional={
    "name": st.one_of(NASTY_TEXT, NASTY_INT),
    "seed": NASTY_INT,
    "engine": ENGINE_TABLE,
    "exchange": st.fixed_dictionaries({}, optional={"balance_usdt": PRICE, "latency": st.one_of(
        st.floats(0, 0.1), NASTY_FLOAT), "markets": MARKETS}),
    "waves": st.lists(st.fixed_dictionaries({"at": TIME, "signals": st.lists(
        st.dictionaries(st.sampled_from(["id", "symbol", "side", "score"]), SCALAR, max_size=4), max_size=4)}),
        max_size=3),
    "ticks": st.lists(st.fixed_dictionaries({"at": TIME, "symbol": SYMBOLS, "price": PRICE}), max_size=3),
    "faults": st.lists(st.fixed_dictionaries({"point": st.sampled_from(["exchange.stop_order", "storage.write",
                                                                         "nope"]),
                                              "effect": st.sampled_from(["error", "hang", "delay", "boom"])},
                                             optional={"seconds": TIME, "times": NASTY_INT}), max_size=2),
    "run": st.fixed_dictionaries({}, optional={"until": TIME}),
    "bogus": SCALAR,
})
JSON_LINE = st.one_of(
    WAVE.map(json.dumps),
    WAVE.map(lambda w: json.dumps({"signals": w})),
    ANY_VALUE.map(lambda v: json.dumps(v, allow_nan=True)),
    st.text(max_size=60),
    st.sampled_from([3, 1_500, 100_000]).map(lambda n: "[" * n + "]" * n),
    st.sampled_from(['[{"id": "1", "symbol": "BTC\u2028USDT", "side": "long", "score": 1}]', "{not json",
                     "[" + "1," * 20_000 + "1]", '{"signals": 5}', "\ufeff[]", "[]\r"]),
)
SIGNALS_FILE = st.lists(JSON_LINE, max_size=5).map(lambda lines: "\n".join(lines) + "\n")


# --- the checks ---

class Hang(Exception):
    """An example ran past its time bound."""


@contextlib.contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Fail an example that runs longer than `seconds` (a hang), instead of hanging the suite."""
    def expired(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_main(*args: str, bound: float = 30.0) -> tuple[int, str]:
    """`trio-bot ARGS` in-process: its exit status and stderr, checked for the one-line contract."""
    out, err = io.StringIO(), io.StringIO()
    with time_bound(bound), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # --help and the like
            code = int(exc.code or 0)
    text = err.getvalue()
    assert code in (0, 1, 2), (code, text)
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("trio-bot: error:")]
    assert len(errors) <= 1 and (not errors or text.count("\n") == 1), text
    assert all(line.isprintable() for line in text.splitlines()), text
    assert len(text) < 5000
    return code, text


def one_line_error(exc: ConfigError) -> None:
    message = str(exc)
    assert "\n" not in message and message.isprintable() and len(message) < 5000, message


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="trio-bot-fuzz-") as name:
        yield Path(name)


def write(workdir: Path, name: str, content: str | bytes) -> str:
    path = workdir / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    return str(path)


@given(engine=ENGINE_TABLE, extra=st.dictionaries(st.sampled_from(["paper", "exchange", "nope"]),
                                                  st.dictionaries(st.text(max_size=8), SCALAR, max_size=3),
                                                  max_size=2))
@examples(80)
def test_config_files_load_or_name_the_problem(workdir, engine, extra):
    path = write(workdir, "config.toml", toml_document({"engine": engine, **extra}))
    try:
        settings_ = load_run_config(path)
    except ConfigError as exc:
        one_line_error(exc)
        return
    assert isinstance(settings_.engine, EngineConfig)


@given(engine=ENGINE_TABLE)
@examples(12, 200)
def test_run_with_any_config_exits_cleanly(workdir, engine):
    config = write(workdir, "run.toml", toml_document({"engine": engine}))
    empty = write(workdir, "none.jsonl", "")
    run_main("run", "--config", config, "--signals", empty, "--db", "sqlite:///:memory:")


@given(data=SCENARIO)
@examples(40, 1000)
def test_scenario_files_simulate_or_exit_2(workdir, data):
    try:
        text = toml_document(data)
    except TypeError:
        return
    path = write(workdir, "scenario.toml", text)
    try:
        load_scenario(path)
    except ConfigError as exc:
        one_line_error(exc)
        code, err = run_main("simulate", path)
        assert code == 2 and err.startswith("trio-bot: error: scenario")
        return
    code, _ = run_main("simulate", path, "--json")
    assert code in (0, 1)


@given(raw=st.binary(max_size=200))
@examples(25, 500)
def test_arbitrary_bytes_as_any_file(workdir, raw):
    path = write(workdir, "bytes.bin", raw)
    for args in (["simulate", path], ["run", "--config", path, "--waves", "1", "--db", "sqlite:///:memory:"]):
        code, _ = run_main(*args)
        assert code in (0, 1, 2)


@given(content=SIGNALS_FILE)
@examples(100)
def test_signal_files_parse_or_name_the_line_and_every_signal_gets_an_outcome(workdir, content):
    path = write(workdir, "signals.jsonl", content)
    try:
        waves = JsonlSignalSource.parse(path)
    except ConfigError as exc:
        one_line_error(exc)
        assert f"{path}:" in str(exc) or "--signals" in str(exc)
        return
    for wave in waves:
        screened = screen_wave(wave, MARKET_MAP, set())
        assert len(screened.candidates) + len(screened.rejected) == len(wave)
        for outcome in screened.rejected:
            assert outcome.reason and outcome.reason.isprintable() and len(outcome.reason) < 600
            assert len(outcome.signal_id) <= 64 and len(outcome.symbol) <= 32


PAPER = ExchangeSpec(latency=0.01, markets=(MarketSpec("BTCUSDT", 60_000.0), MarketSpec("ETHUSDT", 2_500.0),
                                            MarketSpec("FORMUSDT", 0.8132)))


MARKET_MAP = {spec.symbol: market_from_spec(spec) for spec in PAPER.markets}


@given(waves=st.lists(WAVE, min_size=1, max_size=3))
@examples(15, 400)
def test_the_engine_survives_any_wave_and_answers_for_every_signal(waves):
    async def body() -> list[Any]:
        exchange = SimExchange.from_spec(PAPER)
        store = await SQLiteStore.open(":memory:")
        records = []
        try:
            async with Engine.open(EngineConfig(sweep_interval=0), exchange, store,
                                   clock=VirtualWallClock()) as engine:
                for wave in waves:
                    records.append(await engine.process_wave(wave))
        finally:
            await store.aclose()
        return records

    with time_bound(30.0):
        records = trio.run(body, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(records) == len(waves)
    for wave, record in zip(waves, records, strict=True):
        assert len(record.outcomes) == len(wave)
        assert record.counts.consistent
        assert all(o.reason is None or o.reason.isprintable() for o in record.outcomes)


if sys.platform == "win32":  # pragma: no cover
    pytest.skip("SIGALRM bounds need POSIX", allow_module_level=True)

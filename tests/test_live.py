"""Live mode: the engine over ccxt and real HTTP, config and secrets, proven against the local server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import trio

from adapters.ccxt_exchange import CcxtExchange
from adapters.sim.fake_binance import FakeBinance
from adapters.sim.faults import FaultPlan
from adapters.sim.faulty_storage import FaultyStorage
from adapters.sim.scenario import load_scenario
from adapters.sqlite_store import SQLiteStore
from engine.errors import ConfigError
from trio_bot import Engine
from trio_bot.aio import asyncio_loop
from trio_bot.exchange_config import ExchangeSettings, account_name, load_credentials, parse_exchange_settings
from trio_bot.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
INCIDENT = ROOT / "examples" / "incident-2025-10-19.toml"
SECRET = "s3cr3t-Zq8HxLw2pV0mN4bT7yR1cK5j"
KEY = "key-Lm3Pq9Ws2Xe7"


def test_live_trading_must_be_asked_for():
    with pytest.raises(ConfigError, match=r"exchange.live = False: expected true to trade on binanceusdm"):
        parse_exchange_settings({"name": "binanceusdm"}, "c.toml")
    with pytest.raises(ConfigError, match=r"exchange\.name = 'ftx'"):
        parse_exchange_settings({"name": "ftx", "live": True}, "c.toml")
    with pytest.raises(ConfigError, match=r"exchange\.apikey"):
        parse_exchange_settings({"apikey": "x"}, "c.toml")
    assert parse_exchange_settings({}, "c.toml").is_paper


def test_credentials_come_from_the_environment_or_a_file_and_errors_never_show_them(tmp_path):
    settings = ExchangeSettings(name="binanceusdm", live=True, api_key_env="K", api_secret_env="S")
    with pytest.raises(ConfigError) as info:
        load_credentials(settings, {"K": KEY})
    assert "exchange.api_secret_env = 'S'" in str(info.value) and KEY not in str(info.value)
    creds = load_credentials(settings, {"K": KEY, "S": SECRET})
    assert SECRET not in repr(creds) and KEY not in repr(creds)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    from_file = load_credentials(attrs.evolve(settings, api_secret_file=str(secret_file)), {"K": KEY})
    assert from_file.api_secret == SECRET
    name = account_name(settings, creds)
    assert name.startswith("binanceusdm:") and KEY not in name


@pytest.fixture
def simulated():
    return simulate(load_scenario(INCIDENT))["waves"][0]["signals"]


async def test_the_seed_incident_through_ccxt_and_http_matches_the_simulation(simulated):
    scenario = load_scenario(INCIDENT)
    storage_faults = FaultPlan([f for f in scenario.faults if f.point.startswith("storage.")])
    fake = FakeBinance(scenario, api_key=KEY, api_secret=SECRET)  # serves the exchange faults on the wire
    config = attrs.evolve(scenario.engine, shutdown_timeout=1.0, sweep_interval=0.0)
    async with asyncio_loop(), trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url=fake.base_url)
        store = await SQLiteStore.open(":memory:")
        try:
            with trio.fail_after(60):
                async with Engine.open(config, exchange, FaultyStorage(store, storage_faults)) as engine:
                    record = await engine.process_wave(list(scenario.waves[0].signals))
                    over_http = {o.signal_id: (o.outcome.value, o.reason) for o in record.outcomes}
                    assert len(fake.exchange.positions_snapshot()) == 5
                    assert fake.exchange.unprotected_positions() == []
        finally:
            await exchange.aclose()
            await store.aclose()
            nursery.cancel_scope.cancel()
    assert over_http == {s["id"]: (s["outcome"], s["reason"]) for s in simulated}
    # The 502 on FORMUSDT's first stop-loss really went over the wire, and was retried.
    assert ("POST", "/fapi/v1/algoOrder", 502) in fake.hits


@pytest.fixture
def fake_server(tmp_path):
    env = {**os.environ, "TRIO_BOT_API_KEY": KEY, "TRIO_BOT_API_SECRET": SECRET}
    # Port 0: the server takes a free port itself and says which (no window for another process
    # to take a port picked here first).
    proc = subprocess.Popen([sys.executable, "-m", "trio_bot.cli", "fake-exchange", "--port", "0", "--walk"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    banner = proc.stdout.readline()
    assert "fake Binance" in banner, banner + proc.stderr.read()
    port = int(banner.split("http://127.0.0.1:")[1].split(",")[0])
    config = tmp_path / "live.toml"
    config.write_text((ROOT / "examples" / "binance-local.toml").read_text()
                      .replace("http://127.0.0.1:8765", f"http://127.0.0.1:{port}"))
    yield config
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=10)


def run_cli(tmp_path, *args, secret=SECRET):
    env = {**os.environ, "TRIO_BOT_API_KEY": KEY, "TRIO_BOT_API_SECRET": secret}
    return subprocess.run([sys.executable, "-m", "trio_bot.cli", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=90)


def test_live_run_never_shows_the_secret_anywhere(fake_server, tmp_path):
    db = f"sqlite:///{tmp_path / 'live.db'}"
    outputs = [run_cli(tmp_path, "-v", "run", "--config", str(fake_server), "--db", db, "--waves", "2",
                       "--wave-interval", "1")]
    assert outputs[0].returncode == 0, outputs[0].stderr
    assert "LIVE binanceusdm" in outputs[0].stdout and "opened" in outputs[0].stdout
    outputs.append(run_cli(tmp_path, "waves", "--db", db, "--json"))
    outputs.append(run_cli(tmp_path, "positions", "--db", db, "--all", "--json"))
    assert json.loads(outputs[1].stdout)["waves"][0]["counts"]["opened"] == 3
    everything = "".join(o.stdout + o.stderr for o in outputs)
    assert "state writer" in everything or "signal_started" in everything  # -v really logged
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name.startswith("live.db"))
    for secret in (SECRET, KEY):
        assert secret not in everything
        assert secret.encode() not in stored


def test_a_wrong_secret_stops_start_up_with_a_clear_message(fake_server, tmp_path):
    result = run_cli(tmp_path, "run", "--config", str(fake_server), "--db", f"sqlite:///{tmp_path / 'x.db'}",
                     "--waves", "1", secret="wrong-secret-123456")
    assert result.returncode == 1
    assert "trio-bot: error:" in result.stderr and "wrong-secret-123456" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert "opened" not in result.stdout


async def test_the_rate_limiter_follows_the_exchanges_published_limits():
    from adapters.sim.scenario import ExchangeSpec, MarketSpec
    from engine.config import EngineConfig
    from trio_bot.run import RunSettings, TradingAccount, engine_config_for

    fake = FakeBinance(ExchangeSpec(markets=(MarketSpec("BTCUSDT", 60_000.0),)), api_key=KEY, api_secret=SECRET)
    async with asyncio_loop(), trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url=fake.base_url)
        try:
            assert await exchange.published_order_limits() == [(1200, 60.0), (300, 10.0)]
            settings = RunSettings(EngineConfig(), ExchangeSpec(), ExchangeSettings("binanceusdm", live=True))
            config = await engine_config_for(settings, TradingAccount(exchange, "live", ["BTCUSDT"]))
            assert (config.order_rate_per_second, config.order_burst) == (15.0, 150)
            mine = attrs.evolve(settings, engine_keys=frozenset({"order_burst"}))
            assert await engine_config_for(mine, TradingAccount(exchange, "live", [])) is mine.engine
        finally:
            await exchange.aclose()
            nursery.cancel_scope.cancel()

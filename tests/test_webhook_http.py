"""The signal webhook over real HTTP: `trio-bot run` with `[signals] source = "webhook"`, mounted at
POST /api/v1/signals on the operator's server, trading what it accepts on the paper exchange."""

from __future__ import annotations

import io
import json
import re

import attrs
import httpx
import pytest
import trio

from adapters.sqlite_store import SQLiteStore
from engine.errors import ConfigError
from tests.signalutil import eventually
from trio_bot.aio import asyncio_loop
from trio_bot.api.settings import ApiSettings
from trio_bot.run import load_run_config, run
from trio_bot.signals_config import SignalSettings

SECRET = "hook-Qm4Zr8Tn1"
API_TOKEN = "api-token-5e6f7a8b9c0d"


def settings(**api: object):
    return attrs.evolve(load_run_config(None),
                        signals=SignalSettings(source="webhook", secret_env="HOOK_SECRET", wave_window=0.2,
                                               rate_limit=5, burst=10),
                        api=ApiSettings(port=0, listen_given=True, token_env="API_TOKEN", **api))


async def test_webhook_over_http_secret_duplicates_stale_oversize_and_flood(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("API_TOKEN", API_TOKEN)
    out = io.StringIO()
    db = tmp_path / "bot.db"
    async with asyncio_loop(), trio.open_nursery() as nursery:
        async def bot() -> None:
            await run(settings=settings(), db_url=f"sqlite:///{db}", signals_file=None, wave_interval=1,
                      waves=None, seed=1, out=out)
        nursery.start_soon(bot)
        await eventually(lambda: "dashboard http" in out.getvalue(), within=20)
        base = re.search(r"dashboard (http://[0-9.:]+)", out.getvalue()).group(1)  # type: ignore[union-attr]
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            hook = "/api/v1/signals"
            wave = {"wave": "TV1", "signals": [
                {"id": "tv-1", "ticker": "BINANCE:BTCUSDT.P", "action": "buy", "score": 2},
                {"id": "tv-2", "ticker": "BINANCE:ETHUSDT.P", "action": "sell", "score": 1}]}
            # No secret, a wrong one: 401, nothing echoed. The operator's token is no webhook secret.
            assert (await client.post(hook, json=wave)).status_code == 401
            wrong = await client.post(hook, json=wave | {"secret": "guess-123"})
            assert wrong.status_code == 401 and "guess-123" not in wrong.text
            as_api = await client.post(hook, json=wave, headers={"authorization": f"Bearer {API_TOKEN}"})
            assert as_api.status_code == 401
            assert (await client.post(hook, content=b"{nope", headers={"content-type": "application/json"}
                                      )).status_code == 400
            big = json.dumps({"secret": SECRET, "signals": [{"pad": "x" * 1000}] * 70}).encode()
            assert (await client.post(hook, content=big)).status_code == 413
            # The secret in the body, as TradingView sends it: accepted at once, traded after the answer.
            ok = await client.post(hook, json=wave | {"secret": SECRET})
            assert ok.status_code == 202
            assert ok.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
            # TradingView re-sends what timed out: a duplicate, never traded twice; a stale alert is refused.
            again = await client.post(hook, json=wave, headers={"authorization": f"Bearer {SECRET}"})
            assert again.json() == {"accepted": 0, "duplicates": 2, "rejected": []}
            stale = await client.post(hook, json={"secret": SECRET, "id": "tv-3", "ticker": "SOLUSDT",
                                                  "action": "buy", "timestamp": "2020-01-01T00:00:00Z"})
            assert stale.json()["accepted"] == 0
            assert stale.json()["rejected"][0]["reason"].startswith("stale: sent")
            # A single alert, gathered for wave_window and traded as the second wave.
            single = await client.post(hook, json={"secret": SECRET, "id": "tv-4", "ticker": "BINANCE:SOLUSDT.P",
                                                   "action": "buy"})
            assert single.json()["accepted"] == 1
            await eventually(lambda: out.getvalue().count("from webhook") == 2, within=20)
            # Flooded: more than the rate allows is refused with Retry-After, never queued blindly.
            answers: list[httpx.Response] = []

            async def flood(i: int) -> None:
                answers.append(await client.post(hook, json={"secret": SECRET, "id": f"f{i}", "symbol": "XRPUSDT",
                                                             "side": "long"}))

            async with trio.open_nursery() as senders:
                for i in range(60):
                    senders.start_soon(flood, i)
            refused = [a for a in answers if a.status_code == 429]
            assert refused and "retry-after" in refused[0].headers
        nursery.cancel_scope.cancel()
    store = await SQLiteStore.open(str(db))
    try:
        outcomes = {o.signal_id: o.outcome.value for w in await store.waves() for o in w.outcomes}
    finally:
        await store.aclose()
    assert {k: v for k, v in outcomes.items() if k.startswith("tv-")} == \
        {"tv-1": "opened", "tv-2": "opened", "tv-4": "opened"}


async def test_the_webhook_needs_the_operator_server(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    with pytest.raises(ConfigError, match=r"signals\.source = 'webhook': expected the operator's HTTP server"):
        await run(settings=settings(enabled=False), db_url=f"sqlite:///{tmp_path / 'x.db'}", signals_file=None,
                  wave_interval=1, waves=1, seed=1, out=io.StringIO())

"""`trio-bot run` fed over the websocket: the [signals] table, end to end on the paper exchange."""

from __future__ import annotations

import io
from functools import partial

import attrs
import pytest
import trio

from adapters.sim.signal_server import SignalServer
from adapters.sqlite_store import SQLiteStore
from engine.errors import ConfigError
from tests.signalutil import eventually
from trio_bot.aio import asyncio_loop
from trio_bot.run import load_run_config, run
from trio_bot.signals_config import SignalSettings, parse_signal_settings


def wave(prefix: str, symbols: list[str]) -> list[dict[str, object]]:
    return [{"id": f"{prefix}-{i}", "symbol": s, "side": "long", "score": 9 - i} for i, s in enumerate(symbols)]


@pytest.mark.parametrize(("table", "message"), [
    ({"source": "kafka"}, "signals.source = 'kafka': expected one of: demo, file, websocket"),
    ({"source": "websocket"}, "signals.url = None: expected a ws:// or wss:// URL"),
    ({"source": "websocket", "url": "http://x/ws"}, "signals.url = 'http://x/ws'"),
    ({"source": "websocket", "url": "ws://x/ws", "path": "a.jsonl"},
     "signals.path = 'a.jsonl': expected a key of the websocket source: connect_timeout, heartbeat"),
    ({"source": "websocket", "url": "ws://x/ws", "heartbeat": 10, "idle_timeout": 5},
     "signals.idle_timeout = 5: expected more than heartbeat (10)"),
    ({"source": "websocket", "url": "ws://x/ws", "wave_window": -1}, "signals.wave_window = -1"),
    ({"source": "file"}, "signals.path = None: expected the JSON Lines file of waves"),
    ({"source": "demo", "url": "ws://x"}, "signals.url = 'ws://x': expected a key of the demo source: source"),
])
def test_a_bad_signals_table_names_the_key_and_what_was_expected(table, message):
    with pytest.raises(ConfigError) as info:
        parse_signal_settings(table, "run.toml")
    assert message in str(info.value)


def test_the_signals_table_is_read_from_the_run_config(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[signals]\nsource = "websocket"\nurl = "ws://127.0.0.1:9/ws"\nwave_window = 0.5\n')
    signals = load_run_config(str(config)).signals
    assert (signals.source, signals.url, signals.wave_window, signals.heartbeat) == \
        ("websocket", "ws://127.0.0.1:9/ws", 0.5, 10.0)


async def test_a_missing_token_variable_stops_run_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    settings = attrs.evolve(load_run_config(None), signals=SignalSettings(
        source="websocket", url="ws://127.0.0.1:9/ws", token_env="NO_SUCH_TOKEN_VAR"))
    with pytest.raises(ConfigError, match=r"signals\.token_env = 'NO_SUCH_TOKEN_VAR'"):
        await run(settings=settings, db_url=f"sqlite:///{tmp_path / 'x.db'}", signals_file=None,
                  wave_interval=1, waves=1, seed=1, out=io.StringIO())
    assert not (tmp_path / "x.db").exists()


async def test_run_trades_websocket_waves_and_after_a_restart_never_trades_a_resent_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the paper account file lives next to the store
    monkeypatch.setenv("SIGNALS_TOKEN", "t0k-Qw8s")
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    server = SignalServer(token="t0k-Qw8s", resend=10)
    base = load_run_config(None)

    async def one_run(waves: int, publish: list[tuple[str, list[dict[str, object]]]]) -> str:
        out = io.StringIO()
        settings = attrs.evolve(base, signals=SignalSettings(
            source="websocket", url=server.url, token_env="SIGNALS_TOKEN", wave_window=0.2,
            reconnect_min=0.05, reconnect_max=0.2))
        async with trio.open_nursery() as nursery:
            async def publisher() -> None:
                await eventually(lambda: server.clients >= 1, within=20)
                for key, signals in publish:
                    await server.publish(key, signals)
            nursery.start_soon(publisher)
            with trio.fail_after(30):
                assert await run(settings=settings, db_url=db, signals_file=None, wave_interval=1, waves=waves,
                                 seed=1, out=out) == 0
        return out.getvalue()

    async with asyncio_loop(), trio.open_nursery() as nursery:
        await nursery.start(partial(server.serve, "127.0.0.1", 0))
        first = await one_run(1, [("W1", wave("w1", ["BTCUSDT", "ETHUSDT"]))])
        assert "from websocket (wave W1)" in first
        # Restarted, the bot is sent W1 again on subscribing: its ids were handled, so it is rejected.
        second = await one_run(2, [("W2", wave("w2", ["SOLUSDT", "XRPUSDT"]))])
        assert "from websocket (wave W1)" in second and "from websocket (wave W2)" in second
        nursery.cancel_scope.cancel()

    store = await SQLiteStore.open(str(tmp_path / "bot.db"))
    try:
        waves = await store.waves()
        positions = await store.positions()
    finally:
        await store.aclose()
    outcomes = [[(o.signal_id, o.outcome.value, o.reason) for o in w.outcomes] for w in waves]
    assert outcomes[0] == [("w1-0", "opened", None), ("w1-1", "opened", None)]
    assert [(i, o) for i, o, _ in outcomes[1]] == [("w1-0", "rejected"), ("w1-1", "rejected")]
    assert all("already handled in wave w1" in (reason or "") for *_, reason in outcomes[1])
    assert [(i, o) for i, o, _ in outcomes[2]] == [("w2-0", "opened"), ("w2-1", "opened")]
    assert sorted(p.signal_id for p in positions) == ["w1-0", "w1-1", "w2-0", "w2-1"]

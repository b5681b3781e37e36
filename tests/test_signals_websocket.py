"""The websocket signal source against the reference signal server, over real loopback sockets."""

from __future__ import annotations

import json
import re
from functools import partial

import pytest
import trio

from adapters.signals.errors import SignalSourceError
from adapters.signals.websocket import WebsocketSource
from adapters.sim.signal_server import SignalServer
from tests.signalutil import FreezingProxy, eventually, feeding

TOKEN = "tok-9f2Kq7LmX3"


def wave(prefix: str, n: int = 3) -> list[dict[str, object]]:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT"]
    return [{"id": f"{prefix}-{i}", "symbol": symbols[i], "side": "long", "score": 9 - i} for i in range(n)]


def only_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        assert len(exc.exceptions) == 1, exc
        exc = exc.exceptions[0]
    return exc


def ids(arrival) -> list[str]:
    return [s["id"] for s in arrival.signals]


def source(url: str, **kw) -> WebsocketSource:
    kw = {"heartbeat": 0.5, "idle_timeout": 2.0, "wave_window": 0.3, "reconnect_min": 0.05,
          "reconnect_max": 0.2, "connect_timeout": 2.0} | kw
    return WebsocketSource(url, **kw)


async def subscribed(server: SignalServer, count: int = 1) -> None:
    await eventually(lambda: server.subscriptions >= count and server.clients >= 1)


async def test_whole_waves_and_streamed_signals_arrive_as_waves():
    server = SignalServer(token=TOKEN)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        ws = source(server.url, token=TOKEN)
        async with feeding(ws) as arrivals:
            await subscribed(server)
            await server.publish("A", wave("a"))
            with trio.fail_after(5):
                first = await arrivals.receive()
            assert (first.key, ids(first), first.source) == ("A", ["a-0", "a-1", "a-2"], "websocket")
            # One signal at a time: gathered for wave_window after the first, delivered as one wave.
            server.signal_gap = 0.05
            await server.publish("B", wave("b"))
            with trio.fail_after(5):
                second = await arrivals.receive()
            assert (second.key, ids(second)) == ("B", ["b-0", "b-1", "b-2"])
        nursery.cancel_scope.cancel()


async def test_server_killed_mid_wave_and_restarted_every_signal_arrives_once():
    first = SignalServer(resend=10)
    life = trio.CancelScope()

    async def serve_first(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with life:
            await first.serve("127.0.0.1", 0, task_status=task_status)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_first)
        ws = source(f"ws://127.0.0.1:{port}/ws", wave_window=1.0)
        streamed = wave("w3", 4)
        got: list[str] = []
        async with feeding(ws) as arrivals:
            await subscribed(first)
            await first.publish("W1", wave("w1"))
            await first.publish("W2", wave("w2"))
            with trio.fail_after(5):
                for _ in range(2):
                    got += ids(await arrivals.receive())
                first.signal_gap = 0.01
                await first.publish("W3", streamed[:2])  # the first half of streamed wave 3 ...
                await trio.sleep(0.1)
            life.cancel()  # ... then the server dies: its sockets close under the client
            # It comes back on the same port and, like real services, re-sends its recent waves.
            second = SignalServer(resend=10, signal_gap=0.01)
            second.recent.extend(first.recent)
            await nursery.start(partial(second.serve, "127.0.0.1", port))
            await subscribed(second)
            await second.publish("W3", streamed[2:])  # ... and finishes wave 3
            with trio.fail_after(5):
                while len(got) < 10:
                    got += ids(await arrivals.receive())
            assert ws.connections == 2
        assert sorted(got) == sorted(f"w{w}-{i}" for w, n in ((1, 3), (2, 3), (3, 4)) for i in range(n))
        assert ws.duplicates == 8  # W1, W2 and the first half of W3, re-sent and dropped
        nursery.cancel_scope.cancel()


async def test_a_wrong_token_stops_the_source_with_a_message_that_hides_it():
    server = SignalServer(token=TOKEN)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        for token in ("wrong-token-123", None):
            send, _ = trio.open_memory_channel(1)
            with pytest.raises(BaseExceptionGroup) as info, trio.fail_after(5):
                await source(server.url, token=token).feed(send)
            error = only_leaf(info.value)
            assert isinstance(error, SignalSourceError)
            assert "HTTP 401" in str(error) and "token_env" in str(error)
            assert "wrong-token-123" not in str(error)
        assert server.subscriptions == 0
        nursery.cancel_scope.cancel()


async def test_malformed_frames_are_skipped_and_bad_signals_passed_on_for_the_engine_to_reject():
    server = SignalServer()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        ws = source(server.url)
        async with feeding(ws) as arrivals:
            await subscribed(server)
            for junk in ("not json {", "42", json.dumps({"type": "signal", "signal": {"id": "x"}}),
                         json.dumps({"type": "wave", "signals": "nope"})):
                server.broadcast_raw(junk)
            await server.publish("M", [{"id": "ok-1", "symbol": "BTCUSDT", "side": "long", "score": 5},
                                       {"symbol": "ETHUSDT", "side": "sideways"}])
            with trio.fail_after(5):
                arrival = await arrivals.receive()
            assert arrival.key == "M" and len(arrival.signals) == 2  # validation is the engine's job
            assert ws.malformed == 4
        nursery.cancel_scope.cancel()


async def test_a_silent_server_is_detected_by_the_heartbeat_and_left_for_a_new_connection():
    server = SignalServer(heartbeat=60.0)
    proxy = FreezingProxy(0)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        proxy.target_port = server.port
        await nursery.start(proxy.serve)
        ws = source(proxy.url, heartbeat=0.1, idle_timeout=1.0)
        async with feeding(ws) as arrivals:
            await subscribed(server)
            proxy.freeze()  # the connection stays open, nothing comes through: a half-open socket
            # Without the heartbeat, the frozen connection would be kept forever.
            await eventually(lambda: proxy.connections >= 2)
            # At least the frozen one (a loaded machine can delay a pong past the timeout too).
            assert ws.idle_reconnects >= 1
            await subscribed(server, 2)
            await server.publish("after", wave("z", 1))
            with trio.fail_after(5):
                arrival = await arrivals.receive()
            assert ids(arrival) == ["z-0"]
        nursery.cancel_scope.cancel()


async def test_the_signal_server_command_serves_a_file_to_a_token_holder_and_stops_on_sigterm(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    waves = tmp_path / "waves.jsonl"
    waves.write_text(json.dumps(wave("cli", 2)) + "\n")
    env = {**os.environ, "SIG_TOKEN": TOKEN}
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_bot.cli", "signal-server", "--port", "0", "--signals", str(waves),
         "--interval", "60", "--token-env", "SIG_TOKEN"], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        banner = b""
        with trio.fail_after(30):
            while b"/ws" not in banner:
                banner += await proc.stdout.receive_some()
        url = re.search(rb"(ws://[0-9.:]+/ws)", banner).group(1).decode()  # type: ignore[union-attr]
        async with feeding(source(url, token=TOKEN)) as arrivals:
            with trio.fail_after(10):
                arrival = await arrivals.receive()  # re-sent on subscribing: it was published at start
        assert ids(arrival) == ["cli-0", "cli-1"] and arrival.key == "file-1"
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_wave_published_while_a_subscriber_is_being_sent_the_recent_ones_reaches_it():
    # The reference server found racing its own test: a subscriber was registered for new waves
    # only after the recent ones had been re-sent, so a wave published in between went to
    # neither and was lost for it.
    server = SignalServer(resend=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        for n in range(10):
            await server.publish(f"old-{n}", wave(f"o{n}", 1))
        ws = source(server.url)
        async with feeding(ws) as arrivals:
            while server.subscriptions == 0:  # published the moment the subscription is taken
                await trio.lowlevel.checkpoint()
            await server.publish("new", wave("n", 1))
            keys = []
            with trio.fail_after(5):
                while "new" not in keys:
                    keys.append((await arrivals.receive()).key)
        assert keys == [f"old-{n}" for n in range(10)] + ["new"]
        nursery.cancel_scope.cancel()

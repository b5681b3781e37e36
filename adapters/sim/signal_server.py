"""`SignalServer`: the reference signal service for docs/SIGNALS.md, at ws://HOST:PORT/ws.

The demo and test partner of the websocket source. It behaves the way real
signal services do where it matters to a client: a bearer token on the
handshake, a subscription before anything is sent, heartbeat frames, and on
every (re)subscription the recent waves again — so a client that reconnects
sees repeats and must not trade them twice. Waves go out whole, or one signal
frame at a time (`signal_gap`), as services that stream signals do.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from adapters.signals.frames import signal_frame, wave_frame

log = logging.getLogger("trio_bot.signal_server")

SUBSCRIBE_TIMEOUT = 10.0
CLIENT_QUEUE = 256


@attrs.define
class _Wave:
    key: str
    signals: list[Mapping[str, Any]]  # as sent so far (a streamed wave grows)
    streamed: bool

    def frames(self) -> list[str]:
        if self.streamed:
            return [signal_frame(self.key, s) for s in self.signals]
        return [wave_frame(self.key, self.signals)]


class SignalServer:
    def __init__(self, *, token: str | None = None, resend: int = 10, heartbeat: float = 5.0,
                 signal_gap: float | None = None) -> None:
        self._token = token
        self.heartbeat = heartbeat
        self.signal_gap = signal_gap
        self.recent: deque[_Wave] = deque(maxlen=resend)
        self._clients: set[trio.MemorySendChannel[str]] = set()
        self.port = 0
        self.published = 0
        self.subscriptions = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def serve(self, host: str = "127.0.0.1", port: int = 0, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, self._handle, host, port, None)
            self.port = server.port
            nursery.start_soon(self._heartbeats)
            task_status.started(self.port)

    async def publish(self, key: str, signals: Sequence[Mapping[str, Any]]) -> None:
        """Send one wave to every subscriber (whole, or one frame per signal `signal_gap` apart)."""
        self.published += 1
        if self.signal_gap is None:
            wave = _Wave(key, list(signals), streamed=False)
            self.recent.append(wave)
            self._broadcast(wave.frames()[0])
            return
        wave = _Wave(key, [], streamed=True)
        self.recent.append(wave)
        for i, signal in enumerate(signals):
            if i:
                await trio.sleep(self.signal_gap)
            wave.signals.append(signal)
            self._broadcast(signal_frame(key, signal))

    async def publish_all(self, waves: AsyncIterator[Sequence[Mapping[str, Any]]], prefix: str,
                          announce: Callable[[str], None] = log.info) -> None:
        number = 0
        async for signals in waves:
            number += 1
            key = f"{prefix}-{number}"
            announce(f"wave {key}: {len(signals)} signals to {self.clients} subscribers")
            await self.publish(key, signals)

    def broadcast_raw(self, frame: str) -> None:
        """Send any text frame to every subscriber as is (how tests send a malformed one)."""
        self._broadcast(frame)

    def _broadcast(self, frame: str) -> None:
        for channel in list(self._clients):
            try:
                channel.send_nowait(frame)
            except trio.WouldBlock:  # a client that cannot keep up is dropped, not waited for
                self._clients.discard(channel)
                channel.close()

    async def _heartbeats(self) -> None:
        beat = json.dumps({"type": "heartbeat"})
        while True:
            await trio.sleep(self.heartbeat)
            self._broadcast(beat)

    def _authorized(self, request: WebSocketRequest) -> bool:
        if self._token is None:
            return True
        sent = dict((k.lower(), v) for k, v in request.headers).get(b"authorization", b"")
        return hmac.compare_digest(sent, f"Bearer {self._token}".encode())

    async def _handle(self, request: WebSocketRequest) -> None:
        if request.path.split("?")[0] != "/ws":
            await request.reject(404, body=b"not found: the signal feed is at /ws")
            return
        if not self._authorized(request):
            await request.reject(401, body=b"missing or wrong bearer token")
            return
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):
            await self._subscriber(ws)

    async def _subscriber(self, ws: WebSocketConnection) -> None:
        with trio.move_on_after(SUBSCRIBE_TIMEOUT):
            while True:
                try:
                    message = json.loads(await ws.get_message())
                except json.JSONDecodeError:
                    message = None
                if isinstance(message, dict) and message.get("type") == "subscribe":
                    break
                await ws.send_message(json.dumps({"type": "error", "message": 'send {"type": "subscribe"} first'}))
        if not isinstance(message, dict) or message.get("type") != "subscribe":
            await ws.aclose(1008, "no subscription")
            return
        self.subscriptions += 1
        send, receive = trio.open_memory_channel[str](CLIENT_QUEUE)
        # The snapshot of recent waves and the registration happen together, before any await: a
        # wave published while the resent ones are being sent queues in the client's channel
        # (registered after the sends, such a wave was in neither and the client never got it).
        resent = [frame for wave in list(self.recent) for frame in wave.frames()]
        self._clients.add(send)
        try:
            await ws.send_message(json.dumps({"type": "subscribed", "channel": "signals",
                                              "resent": len(self.recent)}))
            for frame in resent:
                await ws.send_message(frame)
            async with receive, trio.open_nursery() as nursery:
                nursery.start_soon(self._drain_client, ws, nursery.cancel_scope)
                async for frame in receive:
                    await ws.send_message(frame)
                nursery.cancel_scope.cancel()
        finally:
            self._clients.discard(send)
            receive.close()

    @staticmethod
    async def _drain_client(ws: WebSocketConnection, scope: trio.CancelScope) -> None:
        """Read (and ignore) what the client sends, so its close is noticed at once."""
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed:
            scope.cancel()

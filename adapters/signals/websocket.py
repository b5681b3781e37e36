"""A signal service's websocket feed, Trio-native (trio-websocket), that keeps itself alive.

* Token: sent as `Authorization: Bearer …` on the handshake, never in the URL.
  A refused token (401/403) on the first connection stops `run` with one clear
  error; after the feed has worked once it is retried like any outage.
* Heartbeat: a websocket ping every `heartbeat` seconds; when nothing at all
  (frame or pong) has arrived for `idle_timeout` seconds the connection is
  taken as dead — a half-open TCP connection would otherwise wait forever.
* Reconnect: jittered exponential backoff, reset once a connection has
  delivered something; after each connect the subscription is sent again.
* Waves: whole-wave frames are delivered at once; single-signal frames are
  gathered per wave key for `wave_window` seconds (see `assembly`).
* Re-sends: a service re-sends its recent waves on reconnect; ids already
  delivered are dropped here (counted), and the store's memory of handled ids
  answers repeats across restarts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from adapters.signals.arrival import Arrival
from adapters.signals.assembly import Delivered, WaveAssembler, signal_id_of
from adapters.signals.backoff import Backoff
from adapters.signals.errors import SignalSourceError
from adapters.signals.frames import Control, Malformed, SignalFrame, WaveFrame, parse_frame

log = logging.getLogger("trio_bot.signals.websocket")

# A close handshake with a live server takes milliseconds; with a dead one it only delays the reconnect.
CLOSE_TIMEOUT = 0.5
SUBSCRIBE = json.dumps({"type": "subscribe", "channel": "signals"})


class _Idle(Exception):
    pass


# What a lost connection looks like; anything else is a bug and is raised.
_LOST = (OSError, HandshakeError, ConnectionClosed, trio.BrokenResourceError, trio.TooSlowError, _Idle)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


class WebsocketSource:
    def __init__(self, url: str, *, token: str | None = None, heartbeat: float = 10.0, idle_timeout: float = 30.0,
                 connect_timeout: float = 10.0, wave_window: float = 2.0, reconnect_min: float = 0.5,
                 reconnect_max: float = 30.0, delivered: Delivered | None = None) -> None:
        self.url = url
        self._token = token
        self.heartbeat = heartbeat
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.assembler = WaveAssembler(wave_window)
        self.backoff = Backoff(reconnect_min, reconnect_max)
        self.delivered = delivered or Delivered()
        self.connections = 0  # successful handshakes, for tests and the operator's log
        self.malformed = 0
        self.idle_reconnects = 0
        self.duplicates = 0
        self._assembled = trio.Event()

    def __repr__(self) -> str:  # never shows the token
        return f"WebsocketSource({self.url!r})"

    async def feed(self, send: trio.MemorySendChannel[Arrival]) -> None:
        """Deliver waves into `send` until cancelled; reconnects on its own."""
        async with send, trio.open_nursery() as nursery:
            nursery.start_soon(self._deliver_assembled, send)
            while True:
                try:
                    await self._session(send)
                    log.warning("signals: %s closed the connection; reconnecting", self.url)
                except Exception as exc:
                    self._why_lost(exc)
                await trio.sleep(self.backoff.next_delay())

    def _why_lost(self, exc: Exception) -> None:
        """Log why the connection was lost; raise if it can never work or if it is a bug."""
        leaves = list(_leaves(exc))
        for leaf in leaves:
            if isinstance(leaf, ConnectionRejected) and leaf.status_code in (401, 403) and self.connections == 0:
                raise SignalSourceError(
                    f"signals: {self.url} refused the connection (HTTP {leaf.status_code}): "
                    "check [signals] token_env") from None
        if not all(isinstance(leaf, _LOST) for leaf in leaves):
            raise exc
        leaf = leaves[0]
        if isinstance(leaf, _Idle):
            self.idle_reconnects += 1
            log.warning("signals: nothing from %s for %gs; reconnecting", self.url, self.idle_timeout)
        elif isinstance(leaf, ConnectionRejected):
            log.warning("signals: %s refused the connection (HTTP %s)", self.url, leaf.status_code)
        else:
            log.warning("signals: lost %s (%s); reconnecting", self.url, type(leaf).__name__)

    async def _session(self, send: trio.MemorySendChannel[Arrival]) -> None:
        headers = [(b"Authorization", f"Bearer {self._token}".encode())] if self._token else None
        async with open_websocket_url(self.url, extra_headers=headers, connect_timeout=self.connect_timeout,
                                      disconnect_timeout=CLOSE_TIMEOUT, message_queue_size=64) as ws:
            self.connections += 1
            log.info("signals: connected to %s", self.url)
            with trio.fail_after(self.connect_timeout):
                await ws.send_message(SUBSCRIBE)
            last_seen = [trio.current_time()]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeat, ws, last_seen)
                nursery.start_soon(self._watchdog, last_seen)
                try:
                    while True:
                        message = await ws.get_message()
                        last_seen[0] = trio.current_time()
                        await self._on_message(message, send)
                finally:
                    nursery.cancel_scope.cancel()

    async def _heartbeat(self, ws: WebSocketConnection, last_seen: list[float]) -> None:
        while True:
            await trio.sleep(self.heartbeat)
            with trio.move_on_after(self.idle_timeout):
                await ws.ping()
                last_seen[0] = trio.current_time()

    async def _watchdog(self, last_seen: list[float]) -> None:
        while True:
            await trio.sleep_until(last_seen[0] + self.idle_timeout)
            if trio.current_time() >= last_seen[0] + self.idle_timeout:
                raise _Idle()

    async def _on_message(self, message: str | bytes, send: trio.MemorySendChannel[Arrival]) -> None:
        frame = parse_frame(message)
        now = trio.current_time()
        if isinstance(frame, WaveFrame):
            self.backoff.reset()
            await self._deliver(send, frame.key, frame.signals, now)
        elif isinstance(frame, SignalFrame):
            self.backoff.reset()
            self._collect(frame.key, frame.signal, now)
        elif isinstance(frame, Malformed):
            self.malformed += 1
            log.warning("signals: malformed frame ignored: %s: %r", frame.reason, frame.excerpt)
        elif isinstance(frame, Control):
            if frame.type == "error":
                log.warning("signals: the service says: %s", frame.message)
            elif frame.type == "subscribed":
                self.backoff.reset()

    def _collect(self, key: str, signal: Mapping[str, Any], now: float) -> None:
        signal_id = signal_id_of(signal)
        if signal_id is not None and (signal_id in self.delivered or self.assembler.holds(key, signal_id)):
            self.duplicates += 1
            return
        first = self.assembler.next_deadline() is None
        self.assembler.add(key, signal, now)
        if first:
            self._assembled.set()

    async def _deliver_assembled(self, send: trio.MemorySendChannel[Arrival]) -> None:
        while True:
            deadline = self.assembler.next_deadline()
            if deadline is None:
                self._assembled = trio.Event()
                await self._assembled.wait()
                continue
            await trio.sleep_until(deadline)
            for key, signals, first_at in self.assembler.due(trio.current_time()):
                await self._deliver(send, key, signals, first_at)

    async def _deliver(self, send: trio.MemorySendChannel[Arrival], key: str | None,
                       signals: Any, received_at: float) -> None:
        fresh, repeats = self.delivered.split(signals)
        self.duplicates += repeats
        if repeats:
            log.info("signals: wave %s: %d signals already delivered, dropped", key, repeats)
        if fresh:
            await send.send(Arrival(fresh, "websocket", key=key, received_at=received_at, duplicates=repeats))

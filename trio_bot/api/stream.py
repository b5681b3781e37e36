"""The live event stream at `/api/v1/ws`: every timeline event, as it happens, as JSON.

Authentication: an `Authorization: Bearer` header, or (browsers cannot set
headers on a websocket) a first message `{"token": "..."}` within
`AUTH_TIMEOUT` seconds; otherwise the socket is closed with code 4401.

Back-pressure policy: each client has a bounded queue (`QUEUE_SIZE` events).
Publishing never waits — the engine's step must not depend on a browser — so a
client that falls that far behind is disconnected (code 4408) and reconnects,
re-reading the state over HTTP. Messages: `{"type": "events", "events": [...]}`
with one or more events (whatever queued up since the last message, at most
`BATCH`), each shaped like a `trio-bot events --json` item, in order; and
`{"type": "ping"}` every `HEARTBEAT` seconds. Batching keeps a busy engine's
stream cheap: one frame per scheduling round, not one per event.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from engine.model import Event
from engine.report import event_json
from trio_bot.api.guard import bearer, token_matches

log = logging.getLogger("trio_bot.api.stream")

QUEUE_SIZE = 1000
BATCH = 200
AUTH_TIMEOUT = 5.0
HEARTBEAT = 15.0
SEND_TIMEOUT = 10.0


class EventHub:
    def __init__(self) -> None:
        self._clients: dict[trio.MemorySendChannel[dict[str, Any]], trio.CancelScope] = {}
        self.published = 0
        self.dropped_clients = 0

    @property
    def clients(self) -> int:
        return len(self._clients)

    def publish(self, event: Event) -> None:
        """Synchronous, O(clients): called by the engine for every event."""
        self.published += 1
        if not self._clients:
            return
        message = event_json(event)
        for channel, scope in list(self._clients.items()):
            try:
                channel.send_nowait(message)
            except trio.WouldBlock:
                self.dropped_clients += 1
                del self._clients[channel]
                scope.cancel()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._clients.pop(channel, None)

    def endpoint(self, token: str) -> Callable[[WebSocket], Awaitable[None]]:
        async def stream(websocket: WebSocket) -> None:
            await websocket.accept()
            if not token_matches(token, bearer(list(websocket.scope["headers"]))):
                given = None
                with trio.move_on_after(AUTH_TIMEOUT):
                    try:
                        first = json.loads(await websocket.receive_text())
                        given = first.get("token") if isinstance(first, dict) else None
                    except (ValueError, KeyError, WebSocketDisconnect):
                        given = None
                if not isinstance(given, str) or not token_matches(token, given):
                    await _close(websocket, 4401)
                    return
            await self._serve(websocket)

        return stream

    async def _serve(self, websocket: WebSocket) -> None:
        send, receive = trio.open_memory_channel[dict[str, Any]](QUEUE_SIZE)
        lagging = True
        async with trio.open_nursery() as nursery:
            self._clients[send] = nursery.cancel_scope

            async def watch_client() -> None:
                # The client says nothing after authenticating; a receive ends on disconnect.
                try:
                    while True:
                        await websocket.receive_text()
                except (WebSocketDisconnect, RuntimeError, KeyError):
                    pass
                nonlocal lagging
                lagging = False
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_client)
            try:
                await _send(websocket, json.dumps({"type": "hello"}))
                while True:
                    with trio.move_on_after(HEARTBEAT) as idle:
                        batch = [await receive.receive()]
                    if idle.cancelled_caught:
                        await _send(websocket, json.dumps({"type": "ping"}))
                        continue
                    while len(batch) < BATCH:
                        try:
                            batch.append(receive.receive_nowait())
                        except trio.WouldBlock:
                            break
                    await _send(websocket, json.dumps({"type": "events", "events": batch}))
            except (WebSocketDisconnect, RuntimeError, trio.TooSlowError):
                lagging = False
                nursery.cancel_scope.cancel()
            finally:
                self._clients.pop(send, None)
        if lagging and send not in self._clients:  # cancelled by publish: too far behind
            with trio.move_on_after(1):
                await _close(websocket, 4408)


async def _send(websocket: WebSocket, text: str) -> None:
    with trio.fail_after(SEND_TIMEOUT):
        await websocket.send_text(text)


async def _close(websocket: WebSocket, code: int) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(code)

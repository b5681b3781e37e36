"""HTTP/1.1 over a Trio stream with h11: just enough server for one JSON API.

A handler may answer, never answer (`Silence.HANG`) or close the connection
without answering (`Silence.DROP`). Those two are how injected faults look on
the wire, so they are outcomes the handler returns rather than exceptions.

The server may face any local client, so nothing a client sends can make it hold
more than a bounded amount: a request line plus headers over `max_head` bytes is
answered 431 and a body over `max_body` (by Content-Length, before reading it, or
as it arrives when chunked) 413, both closing the connection; the head and body
must arrive within `read_timeout` once started, a keep-alive connection idle for
`idle_timeout` is closed, and the server (`Gate`) holds at most `max_connections`
connections, answering 503 to the next one.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import attrs
import h11
import trio
import wsproto
import wsproto.utilities
from wsproto import events as ws_events

_CHUNK = 65536


@attrs.frozen
class WireLimits:
    max_head: int = 8 * 1024
    max_body: int = 64 * 1024
    read_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 256


class _TooLarge(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@attrs.frozen
class Request:
    method: str
    path: str
    query: str  # raw, exactly as sent: the signature covers these bytes
    body: str
    headers: Mapping[str, str]  # names lower-cased

    @property
    def upgrade_to_websocket(self) -> bool:
        return self.method == "GET" and self.headers.get("upgrade", "").lower() == "websocket"


@attrs.frozen
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
        return cls(status, json.dumps(data, separators=(",", ":")).encode(), headers=headers)


class Silence(enum.Enum):
    HANG = "hang"  # keep the connection open and say nothing until the client leaves
    DROP = "drop"  # close the connection without a response


Outcome = Reply | Silence
Handler = Callable[[Request], Awaitable[Outcome]]


class WebSocket:
    """The server side of one websocket upgraded from an HTTP request (wsproto on the Trio stream):
    enough to push JSON events and answer the client's pings and close."""

    def __init__(self, stream: trio.abc.Stream, request: Request, early: bytes) -> None:
        self._stream = stream
        self._ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        target = request.path + (f"?{request.query}" if request.query else "")
        self._ws.initiate_upgrade_connection([(k.encode(), v.encode()) for k, v in request.headers.items()], target)
        self._early = early
        self._send_lock = trio.Lock()
        self.closed = False

    async def accept(self) -> None:
        await self._stream.send_all(self._ws.send(ws_events.AcceptConnection()))
        if self._early:
            self._ws.receive_data(self._early)

    async def send_json(self, data: Any) -> None:
        await self._send(ws_events.TextMessage(json.dumps(data, separators=(",", ":"))))

    async def _send(self, event: ws_events.Event) -> None:
        async with self._send_lock:
            await self._stream.send_all(self._ws.send(event))

    async def receive(self) -> str | None:
        """The next text message; None once the client closed (its close is answered)."""
        while True:
            for event in self._ws.events():
                if isinstance(event, ws_events.Ping):
                    await self._send(event.response())
                elif isinstance(event, ws_events.CloseConnection):
                    self.closed = True
                    with contextlib.suppress(wsproto.utilities.LocalProtocolError):
                        await self._send(event.response())
                    return None
                elif isinstance(event, ws_events.TextMessage):
                    return event.data
            data = await self._stream.receive_some(_CHUNK)
            if not data:
                self.closed = True
                return None
            self._ws.receive_data(bytes(data))

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(wsproto.utilities.LocalProtocolError, trio.BrokenResourceError,
                                     trio.ClosedResourceError):
                await self._send(ws_events.CloseConnection(code=1001, reason="going away"))


WebSocketHandler = Callable[[Request, WebSocket], Awaitable[None]]


class Gate:
    """Counts a server's open connections; past the limit a new one gets 503 and is closed."""

    def __init__(self, limits: WireLimits) -> None:
        self.limits = limits
        self.open = 0

    async def serve(self, stream: trio.abc.Stream, handler: Handler,
                    websocket: WebSocketHandler | None = None) -> None:
        if self.open >= self.limits.max_connections:
            with trio.move_on_after(1.0), contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                      b"Connection: close\r\n\r\n")
                with trio.move_on_after(0.2):  # take what the client sent: closing on unread data resets
                    await stream.receive_some(_CHUNK)
            await trio.aclose_forcefully(stream)
            return
        self.open += 1
        try:
            await serve_connection(stream, handler, self.limits, websocket)
        finally:
            self.open -= 1


async def serve_connection(stream: trio.abc.Stream, handler: Handler, limits: WireLimits | None = None,
                           websocket: WebSocketHandler | None = None) -> None:
    """Answer requests in order on one keep-alive connection until either side closes it."""
    limits = limits or WireLimits()
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head)
    try:
        while True:
            try:
                request = await _receive_request(conn, stream, limits)
            except _TooLarge as too_large:
                await _refuse(conn, stream, too_large.status)
                return
            except h11.RemoteProtocolError as exc:
                await _refuse(conn, stream, exc.error_status_hint)
                return
            if request is None:
                return
            if request.upgrade_to_websocket and websocket is not None:
                socket = WebSocket(stream, request, conn.trailing_data[0])
                await socket.accept()
                await websocket(request, socket)
                return
            outcome = await handler(request)
            if outcome is Silence.DROP:
                return
            if outcome is Silence.HANG:
                await _until_closed(stream)
                return
            assert isinstance(outcome, Reply)
            await _send_reply(conn, stream, outcome)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # a Connection: close, or a body we did not read
            conn.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, trio.TooSlowError):
        return  # the client went away, spoke nonsense or dawdled: nothing useful to say
    finally:
        await trio.aclose_forcefully(stream)


async def _refuse(conn: h11.Connection, stream: trio.abc.Stream, status: int) -> None:
    """An error status for a request we will not read further, then the connection closes."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Bad Request"
    reply = Reply.json(status, {"code": -1000 if status >= 500 else -1100, "msg": phrase})
    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
        with trio.move_on_after(1.0), contextlib.suppress(h11.ProtocolError, trio.BrokenResourceError,
                                                          trio.ClosedResourceError):
            await _send_reply(conn, stream, reply, close=True)


async def _receive_request(conn: h11.Connection, stream: trio.abc.Stream, limits: WireLimits) -> Request | None:
    head: h11.Request | None = None
    body = bytearray()
    deadline = trio.current_time() + limits.idle_timeout  # waiting for the next request to start
    started = False
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            with trio.fail_at(deadline):
                data = bytes(await stream.receive_some(_CHUNK))
            if not started and data:
                started = True
                deadline = trio.current_time() + limits.read_timeout  # the whole request, once begun
            conn.receive_data(data)  # b"" tells h11 about EOF
        elif isinstance(event, h11.Request):
            head = event
            if len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers) > limits.max_head:
                raise _TooLarge(431)  # arrived in one read, so h11's incomplete-event bound never saw it
            length = dict(event.headers).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limits.max_body:
                raise _TooLarge(413)
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limits.max_body:
                raise _TooLarge(413)
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            target = head.target.decode("ascii", "replace")
            path, _, query = target.partition("?")
            headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in head.headers}
            return Request(head.method.decode("ascii", "replace"), path, query,
                           body.decode("utf-8", "replace"), headers)
        elif isinstance(event, h11.ConnectionClosed):
            return None
        else:  # PAUSED cannot happen before we answer; anything else is a protocol surprise
            raise h11.RemoteProtocolError(f"unexpected event {event!r}")


async def _send_reply(conn: h11.Connection, stream: trio.abc.Stream, reply: Reply, *, close: bool = False) -> None:
    try:
        reason = HTTPStatus(reply.status).phrase.encode()
    except ValueError:
        reason = b""
    headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body))),
               ("Server", "fake-binance"), *reply.headers]
    if close:
        headers.append(("Connection", "close"))
    for event in (h11.Response(status_code=reply.status, headers=headers, reason=reason),
                  h11.Data(data=reply.body), h11.EndOfMessage()):
        data = conn.send(event)
        if data:
            await stream.send_all(data)


async def _until_closed(stream: trio.abc.Stream) -> None:
    """Read and discard until EOF: a hung request ends when the client gives up on it."""
    while await stream.receive_some(_CHUNK):
        pass

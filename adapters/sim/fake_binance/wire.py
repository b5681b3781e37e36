"""HTTP/1.1 over a Trio stream with h11: just enough server for one JSON API.

A handler may answer, never answer (`Silence.HANG`) or close the connection
without answering (`Silence.DROP`). Those two are how injected faults look on
the wire, so they are outcomes the handler returns rather than exceptions.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import attrs
import h11
import trio

_CHUNK = 65536


@attrs.frozen
class Request:
    method: str
    path: str
    query: str  # raw, exactly as sent: the signature covers these bytes
    body: str
    headers: Mapping[str, str]  # names lower-cased


@attrs.frozen
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, data: Any) -> Reply:
        return cls(status, json.dumps(data, separators=(",", ":")).encode())


class Silence(enum.Enum):
    HANG = "hang"  # keep the connection open and say nothing until the client leaves
    DROP = "drop"  # close the connection without a response


Outcome = Reply | Silence
Handler = Callable[[Request], Awaitable[Outcome]]


async def serve_connection(stream: trio.abc.Stream, handler: Handler) -> None:
    """Answer requests in order on one keep-alive connection until either side closes it."""
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await _receive_request(conn, stream)
            if request is None:
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
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        return  # the client went away or spoke nonsense: nothing useful to say
    finally:
        await trio.aclose_forcefully(stream)


async def _receive_request(conn: h11.Connection, stream: trio.abc.Stream) -> Request | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(_CHUNK)))  # b"" tells h11 about EOF
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
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


async def _send_reply(conn: h11.Connection, stream: trio.abc.Stream, reply: Reply) -> None:
    try:
        reason = HTTPStatus(reply.status).phrase.encode()
    except ValueError:
        reason = b""
    headers = [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body))),
               ("Server", "fake-binance")]
    for event in (h11.Response(status_code=reply.status, headers=headers, reason=reason),
                  h11.Data(data=reply.body), h11.EndOfMessage()):
        data = conn.send(event)
        if data:
            await stream.send_all(data)


async def _until_closed(stream: trio.abc.Stream) -> None:
    """Read and discard until EOF: a hung request ends when the client gives up on it."""
    while await stream.receive_some(_CHUNK):
        pass

"""Binance USDⓈ-M market streams served by the fake server, on its own port (as Binance's
`fstream` host is apart from `fapi`): `/ws/<stream>` or `/stream?streams=<a>/<b>` (each
message then wrapped as {"stream", "data"}), with `<symbol>@bookTicker` (every change,
as it happens) and `<symbol>@markPrice` / `@markPrice@1s` (Binance pushes those every 3 s
or 1 s; here on every change too).

Each connection gets the events of its streams through a bounded buffer: a client that
does not read loses the oldest events it has not read, never slows the market down.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

import attrs
import trio
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from adapters.sim.fake_binance import shapes
from adapters.sim.fake_binance.account import now_ms
from adapters.sim.fake_binance.shapes import JSON
from adapters.sim.fake_binance.wire import Request, WebSocket

KINDS = ("bookTicker", "markPrice")
BUFFER = 1024


@attrs.frozen
class Stream:
    symbol: str  # upper case, as the REST API names it
    kind: str
    name: str  # as subscribed, e.g. "btcusdt@bookTicker"


def parse_streams(request: Request, known: set[str]) -> tuple[list[Stream], bool] | None:
    """The streams a connection asks for, and whether they are combined; None if it asks for none."""
    if request.path.startswith("/ws/"):
        names, combined = [request.path[len("/ws/"):]], False
    elif request.path == "/stream":
        names, combined = parse_qs(request.query).get("streams", [""])[0].split("/"), True
    else:
        return None
    streams = []
    for name in names:
        parts = name.split("@")
        if len(parts) < 2 or parts[1] not in KINDS or parts[0].upper() not in known:
            return None
        streams.append(Stream(parts[0].upper(), parts[1], name))
    return (streams, combined) if streams else None


class MarketStreams:
    """Fans every price change out to the connected market-stream clients."""

    def __init__(self, known: set[str], mark: Callable[[str], float], last: Callable[[str], float]) -> None:
        self.known = known
        self._mark, self._last = mark, last
        self._clients: dict[int, tuple[list[Stream], bool, trio.MemorySendChannel[JSON]]] = {}
        self._sockets: dict[int, WebSocket] = {}
        self._next = 0
        self._update_id = 1
        self.sent = 0

    @property
    def connected(self) -> int:
        return len(self._clients)

    def publish(self, symbol: str) -> None:
        now = now_ms()
        self._update_id += 1
        for streams, combined, send in list(self._clients.values()):
            for stream in streams:
                if stream.symbol != symbol:
                    continue
                data = self._event(stream, now)
                message = {"stream": stream.name, "data": data} if combined else data
                try:
                    send.send_nowait(message)
                except trio.WouldBlock:
                    pass  # a client that does not read loses updates, the market never waits
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

    def _event(self, stream: Stream, now: int) -> JSON:
        if stream.kind == "bookTicker":
            price = shapes.fmt(self._last(stream.symbol))
            return {"e": "bookTicker", "u": self._update_id, "E": now, "T": now, "s": stream.symbol,
                    "b": price, "B": "1000", "a": price, "A": "1000"}
        mark = self._mark(stream.symbol)
        next_funding = (now // 28_800_000 + 1) * 28_800_000
        return {"e": "markPriceUpdate", "E": now, "s": stream.symbol, "p": shapes.fmt(mark),
                "i": shapes.fmt(mark), "P": shapes.fmt(mark), "r": "0.00010000", "T": next_funding}

    async def serve(self, request: Request, socket: WebSocket) -> None:
        wanted = parse_streams(request, self.known)
        if wanted is None:
            await socket.close()
            return
        streams, combined = wanted
        send, receive = trio.open_memory_channel[JSON](BUFFER)
        key = self._next
        self._next += 1
        self._clients[key] = (streams, combined, send)
        self._sockets[key] = socket
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forward, receive, socket)
                await self._read_until_closed(socket)
                nursery.cancel_scope.cancel()
        finally:
            del self._clients[key]
            del self._sockets[key]
            send.close()

    async def _forward(self, receive: trio.MemoryReceiveChannel[JSON], socket: WebSocket) -> None:
        async for message in receive:
            if socket.closed:
                return
            try:
                await socket.send_json(message)
            except (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
                return  # the client left; `serve` notices on its side
            self.sent += 1

    @staticmethod
    async def _read_until_closed(socket: WebSocket) -> None:
        try:
            while await socket.receive() is not None:
                pass  # SUBSCRIBE and the like are not served; pings are answered by `receive`
        except (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError, RemoteProtocolError):
            return

    async def drop_all(self) -> None:
        """Close every stream connection, as a server restart or a network cut would."""
        for socket in list(self._sockets.values()):
            await socket.close()



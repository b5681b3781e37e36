"""Helpers for the signal-source tests: a TCP proxy that can go silent, and a feed runner."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from adapters.signals import Arrival, WaveFeed


class FreezingProxy:
    """Forwards loopback TCP; `freeze()` makes every open connection silent without closing it — the
    half-open connection a heartbeat exists to detect. New connections are forwarded normally."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._frozen: list[trio.Event] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    def freeze(self) -> None:
        for event in self._frozen:
            event.set()

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        frozen = trio.Event()
        self._frozen.append(frozen)
        server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        async with server, client, trio.open_nursery() as nursery:
            nursery.start_soon(self._pipe, client, server, frozen)
            nursery.start_soon(self._pipe, server, client, frozen)

    @staticmethod
    async def _pipe(source: trio.SocketStream, sink: trio.SocketStream, frozen: trio.Event) -> None:
        try:
            async for chunk in source:
                if frozen.is_set():
                    await trio.sleep_forever()
                await sink.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


@asynccontextmanager
async def feeding(feed: WaveFeed) -> AsyncIterator[trio.MemoryReceiveChannel[Arrival]]:
    """Run `feed` in the background for the block's duration; yields where its arrivals come out."""
    send, receive = trio.open_memory_channel[Arrival](64)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed.feed, send)
        yield receive
        nursery.cancel_scope.cancel()


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until another task's progress makes `condition` true; fail after `within` seconds."""
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110 - watching counters owned by other tasks
            await trio.sleep(0.01)

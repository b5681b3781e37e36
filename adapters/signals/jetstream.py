"""NATS JetStream source: one message is one wave, acknowledged only once its outcomes are stored.

The scale-out path: one stream of waves, one durable pull consumer per account
(each account sees every wave once, whatever else consumes the stream). It
uses the maintained client, nats-py, which is asyncio: every call crosses to
the program's one trio-asyncio loop through `trio_asyncio.aio_as_trio` (like
the ccxt and PostgreSQL adapters) under a Trio deadline, so a hung broker can
never hang the engine, and a Trio cancel cancels the asyncio task underneath.

At most one message is in flight: it is handed on, kept alive with
"in progress" acks while the wave runs, and acknowledged (waiting for the
broker's confirmation) after `run` has stored the outcomes. A bot killed
before that gets the message again from the broker on restart; the engine
claimed its signal ids when the wave started, so the repeat is rejected by
the store's memory of handled ids and nothing trades twice.
A new consumer starts at new messages; a message older than `max_lag` (a
backlog after a long outage) is acknowledged without trading: its prices and
its moment are gone.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import trio
import trio_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from adapters.signals.arrival import Arrival
from adapters.signals.assembly import Delivered
from adapters.signals.backoff import Backoff
from adapters.signals.errors import SignalSourceError
from adapters.signals.frames import Malformed, WaveFrame, parse_frame

log = logging.getLogger("trio_bot.signals.nats")

T = TypeVar("T")
FETCH_WAIT = 5.0  # how long one pull waits for a message at the broker


class _Lost(Exception):
    pass


class NatsSource:
    def __init__(self, url: str, *, stream: str, subject: str, durable: str, ack_wait: float = 30.0,
                 max_lag: float = 60.0, connect_timeout: float = 10.0, call_timeout: float = 10.0,
                 reconnect_min: float = 0.5, reconnect_max: float = 30.0, create_stream: bool = False,
                 delivered: Delivered | None = None, wall_clock: Callable[[], float] = time.time) -> None:
        self.url, self.stream, self.subject, self.durable = url, stream, subject, durable
        self.ack_wait = ack_wait
        self.max_lag = max_lag
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.create_stream = create_stream
        self.backoff = Backoff(reconnect_min, reconnect_max)
        self.delivered = delivered or Delivered()
        self._wall = wall_clock
        self.acked = 0
        self.malformed = 0
        self.stale = 0
        self.duplicates = 0

    def __repr__(self) -> str:
        return f"NatsSource({self.url!r}, stream={self.stream!r}, durable={self.durable!r})"

    async def _call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, within: float | None = None,
                    **kwargs: Any) -> T:
        """One nats-py coroutine on the asyncio loop, bounded; a lost broker becomes `_Lost`."""
        try:
            with trio.fail_after(within or self.call_timeout):
                result: T = await trio_asyncio.aio_as_trio(fn)(*args, **kwargs)
                return result
        except trio.TooSlowError:
            raise _Lost(f"{what}: no answer within {within or self.call_timeout:g}s") from None
        except (nats.errors.Error, OSError) as exc:
            if isinstance(exc, nats.js.errors.NotFoundError | nats.errors.TimeoutError):
                raise
            raise _Lost(f"{what}: {type(exc).__name__}: {exc}") from None

    async def feed(self, send: trio.MemorySendChannel[Arrival]) -> None:
        async with send:
            while True:
                try:
                    await self._session(send)
                except _Lost as exc:
                    log.warning("signals: NATS %s: %s; retrying", self.url, exc)
                await trio.sleep(self.backoff.next_delay())

    async def _session(self, send: trio.MemorySendChannel[Arrival]) -> None:
        client: Client = await self._call("connect", nats.connect, servers=[self.url],
                                          connect_timeout=self.connect_timeout, allow_reconnect=False,
                                          within=self.connect_timeout + 1.0)
        try:
            subscription = await self._subscribe(client)
            self.backoff.reset()
            log.info("signals: consuming %s on %s as %s", self.subject, self.url, self.durable)
            while True:
                try:
                    messages: list[Msg] = await self._call("fetch", subscription.fetch, 1, FETCH_WAIT,
                                                           within=FETCH_WAIT + self.call_timeout)
                except nats.errors.TimeoutError:
                    if client.is_closed or not client.is_connected:
                        raise _Lost("the connection closed") from None
                    continue  # no wave at the moment
                for message in messages:
                    await self._handle(message, send)
        finally:
            with trio.move_on_after(2.0, shield=True), contextlib.suppress(nats.errors.Error, OSError):
                await trio_asyncio.aio_as_trio(client.close)()

    async def _subscribe(self, client: Client) -> Any:
        js = client.jetstream(timeout=self.call_timeout)
        try:
            await self._call("stream_info", js.stream_info, self.stream)
        except nats.js.errors.NotFoundError:
            if not self.create_stream:
                raise SignalSourceError(
                    f"signals: NATS stream {self.stream!r} does not exist on {self.url}: create it, "
                    "or set [signals] create_stream = true") from None
            await self._call("add_stream", js.add_stream, name=self.stream, subjects=[self.subject])
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW,
                                ack_wait=self.ack_wait, max_ack_pending=1)
        return await self._call("pull_subscribe", js.pull_subscribe, self.subject, durable=self.durable,
                                stream=self.stream, config=config)

    async def _handle(self, message: Msg, send: trio.MemorySendChannel[Arrival]) -> None:
        received_at = trio.current_time()
        frame = parse_frame(message.data)
        if not isinstance(frame, WaveFrame):
            reason = frame.reason if isinstance(frame, Malformed) else 'a NATS message must be a whole wave'
            self.malformed += 1
            log.warning("signals: NATS message %s dropped: %s", _seq(message), reason)
            await self._call("term", message.term)  # never redelivered: it can never become valid
            return
        age = self._wall() - message.metadata.timestamp.timestamp()
        if age > self.max_lag:
            self.stale += 1
            log.warning("signals: NATS wave %s is %.0fs old (max_lag %gs): acknowledged without trading",
                        frame.key or _seq(message), age, self.max_lag)
            await self._acknowledge(message)
            return
        fresh, repeats = self.delivered.split(frame.signals)
        self.duplicates += repeats
        if not fresh:
            log.info("signals: NATS wave %s redelivered, every signal already handled",
                     frame.key or _seq(message))
            await self._acknowledge(message)
            return
        done = trio.Event()

        async def ack() -> None:
            await self._acknowledge(message)
            done.set()

        await send.send(Arrival(fresh, "nats", key=frame.key or _seq(message), received_at=received_at,
                                duplicates=repeats, ack=ack))
        # The broker redelivers after ack_wait; while the wave runs, tell it we are still on it.
        while not done.is_set():
            with trio.move_on_after(self.ack_wait / 3):
                await done.wait()
            if not done.is_set():
                await self._call("in_progress", message.in_progress)

    async def _acknowledge(self, message: Msg) -> None:
        try:
            await self._call("ack", partial(message.ack_sync, timeout=self.call_timeout))
            self.acked += 1
        except (_Lost, nats.errors.TimeoutError) as exc:
            # Not fatal: the broker redelivers, and the repeat is answered from the signal-id memory.
            log.warning("signals: NATS ack of %s failed (%s); it will be redelivered", _seq(message), exc)


def _seq(message: Msg) -> str:
    try:
        return f"#{message.metadata.sequence.stream}"
    except Exception:
        return "?"

"""The NATS JetStream source against a real nats-server: ack after store, redelivery, bad messages."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from adapters.signals.assembly import Delivered
from adapters.signals.errors import SignalSourceError
from adapters.signals.jetstream import NatsSource
from tests.natsutil import Stream
from tests.signalutil import eventually, feeding
from trio_bot.aio import asyncio_loop


def wave(key: str, *ids: str) -> dict[str, object]:
    return {"wave": key, "signals": [{"id": i, "symbol": "BTCUSDT", "side": "long", "score": 1} for i in ids]}


def source(broker: Stream, **kw) -> NatsSource:
    return NatsSource(broker.url, **({"stream": broker.name, "subject": broker.subject, "durable": "acct-a",
                                      "ack_wait": 1.0, "reconnect_min": 0.05, "reconnect_max": 0.2} | kw))


async def in_thread(fn, *args):
    return await trio.to_thread.run_sync(partial(fn, *args))


async def test_a_wave_is_acknowledged_only_when_run_says_it_is_stored(nats_stream):
    async with asyncio_loop():
        nats = source(nats_stream)
        async with feeding(nats) as arrivals:
            await eventually(lambda: nats.backoff.failures == 0 and nats.acked == 0)
            await trio.sleep(0.3)  # the consumer is created on subscribing; it starts at new messages
            await in_thread(nats_stream.publish, wave("W1", "a", "b"))
            with trio.fail_after(10):
                arrival = await arrivals.receive()
            assert (arrival.source, arrival.key, [s["id"] for s in arrival.signals]) == ("nats", "W1", ["a", "b"])
            assert arrival.awaits_ack
            await trio.sleep(1.5)  # longer than ack_wait: the source keeps telling the broker it is working
            state = await in_thread(nats_stream.consumer, "acct-a")
            assert state["ack_pending"] == 1 and state["deliveries"] == 1  # not redelivered meanwhile
            await arrival.ack()
            state = await in_thread(nats_stream.consumer, "acct-a")
            assert state["ack_pending"] == 0 and nats.acked == 1


async def test_a_wave_not_acknowledged_before_a_crash_is_redelivered_and_its_handled_ids_not_traded(nats_stream):
    async with asyncio_loop():
        first = source(nats_stream)
        async with feeding(first) as arrivals:
            await trio.sleep(0.5)
            await in_thread(nats_stream.publish, wave("W1", "a", "b"))
            with trio.fail_after(10):
                got = await arrivals.receive()
        # The bot died with the wave received and "a" handled, before the ack.
        assert [s["id"] for s in got.signals] == ["a", "b"]
        memory = Delivered()
        memory.remember(["a"])  # what the store tells the restarted bot
        second = source(nats_stream, delivered=memory)
        async with feeding(second) as arrivals:
            with trio.fail_after(10):
                again = await arrivals.receive()
            assert [s["id"] for s in again.signals] == ["b"] and again.duplicates == 1
            await again.ack()
        state = await in_thread(nats_stream.consumer, "acct-a")
        assert state["ack_pending"] == 0 and state["pending"] == 0


async def test_malformed_and_stale_messages_are_settled_without_trading_and_the_next_wave_flows(nats_stream):
    async with asyncio_loop():
        nats = source(nats_stream)
        async with feeding(nats) as arrivals:
            await trio.sleep(0.5)
            await in_thread(nats_stream.publish, b"{oops", {"type": "signal", "wave": "k", "signal": {}},
                            wave("W2", "c"))
            with trio.fail_after(10):
                arrival = await arrivals.receive()
            assert arrival.key == "W2" and nats.malformed == 2
            await arrival.ack()
            nats.max_lag = -1.0  # every message now counts as a backlog from long ago
            await in_thread(nats_stream.publish, wave("W3", "d"))
            await eventually(lambda: nats.stale == 1, within=10)
            with trio.move_on_after(0.3):
                await arrivals.receive()
                pytest.fail("a stale wave was traded")
        state = await in_thread(nats_stream.consumer, "acct-a")
        assert state["ack_pending"] == 0 and state["pending"] == 0


async def test_a_missing_stream_stops_the_source_with_the_fix(nats_stream):
    async with asyncio_loop():
        nats = source(nats_stream, stream="NO_SUCH_STREAM_X")
        send, _ = trio.open_memory_channel(1)
        with pytest.raises(SignalSourceError, match="NATS stream 'NO_SUCH_STREAM_X' does not exist"), \
                trio.fail_after(10):
            await nats.feed(send)

"""NATS JetStream for tests: the server at 127.0.0.1:4222 (TRIO_BOT_TEST_NATS), a fresh stream per test.

Outside CI, with no server reachable, NATS tests skip with the reason; in CI (CI=true) they fail:
they must run there (.ci/run starts `nats-server -js`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs
import nats
import pytest

NATS_URL = os.environ.get("TRIO_BOT_TEST_NATS", "nats://127.0.0.1:4222")


def require_nats() -> str:
    parts = urlsplit(NATS_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=2):
            return NATS_URL
    except OSError:
        reason = f"NATS not reachable at {parts.netloc} (set TRIO_BOT_TEST_NATS to a server URL)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the NATS tests: {reason}")
        pytest.skip(reason)


@attrs.frozen
class Stream:
    url: str
    name: str
    subject: str

    def publish(self, *waves: Any) -> None:
        """Publish each wave (a JSON-able value, or bytes as they are) as one message."""
        async def go() -> None:
            client = await nats.connect(self.url, connect_timeout=5)
            try:
                js = client.jetstream(timeout=5)
                for wave in waves:
                    await js.publish(self.subject, wave if isinstance(wave, bytes) else json.dumps(wave).encode())
            finally:
                await client.close()
        asyncio.run(go())

    def consumer(self, durable: str) -> dict[str, int]:
        """What the broker says of a durable consumer: deliveries (redeliveries included), messages
        awaiting their ack, and messages not delivered yet."""
        async def go() -> dict[str, int]:
            client = await nats.connect(self.url, connect_timeout=5)
            try:
                info = await client.jetstream(timeout=5).consumer_info(self.name, durable)
                return {"ack_pending": info.num_ack_pending or 0, "pending": info.num_pending or 0,
                        "deliveries": info.delivered.consumer_seq or 0}
            finally:
                await client.close()
        return asyncio.run(go())

    def consumers(self) -> list[str]:
        async def go() -> list[str]:
            client = await nats.connect(self.url, connect_timeout=5)
            try:
                infos = await client.jetstream(timeout=5).consumers_info(self.name)
                return sorted(i.name for i in infos)
            finally:
                await client.close()
        return asyncio.run(go())


def _admin(url: str, name: str, subjects: Sequence[str] | None) -> None:
    async def go() -> None:
        client = await nats.connect(url, connect_timeout=5)
        try:
            js = client.jetstream(timeout=5)
            if subjects is None:
                await js.delete_stream(name)
            else:
                await js.add_stream(name=name, subjects=list(subjects))
        finally:
            await client.close()
    asyncio.run(go())


@pytest.fixture
def nats_stream() -> Iterator[Stream]:
    """A brand-new stream (and its subject) on the test server, deleted after the test."""
    url = require_nats()
    tag = uuid.uuid4().hex[:10]
    stream = Stream(url, f"TEST_{tag}", f"test.{tag}.waves")
    _admin(url, stream.name, [stream.subject])
    try:
        yield stream
    finally:
        _admin(url, stream.name, None)

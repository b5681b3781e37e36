"""The fake exchange server faces any local client: bounded requests, timeouts and connections,
and a Binance-shaped error body for every bad parameter (never a Python exception's text)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from adapters.sim.fake_binance import FakeBinance
from adapters.sim.fake_binance.wire import WireLimits
from adapters.sim.scenario import ExchangeSpec, MarketSpec

SPEC = ExchangeSpec(markets=(MarketSpec("BTCUSDT", 50_000.0, tick_size=0.1, step_size=0.001),))
FAST = WireLimits(max_head=2048, max_body=4096, read_timeout=0.3, idle_timeout=0.3, max_connections=2)


@asynccontextmanager
async def serving(limits: WireLimits = FAST) -> AsyncIterator[tuple[FakeBinance, int]]:
    fake = FakeBinance(SPEC, wire_limits=limits)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(fake.serve)
        yield fake, port
        nursery.cancel_scope.cancel()


async def send_raw(port: int, data: bytes, *, wait: float = 2.0) -> bytes:
    """Send `data`, then read until the server closes (or `wait` passes)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    got = b""
    with trio.move_on_after(wait), contextlib.suppress(trio.BrokenResourceError):  # a reset after the answer
        await stream.send_all(data)
        while chunk := await stream.receive_some(65536):
            got += chunk
    await stream.aclose()
    return got


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1") else 0


def signed(query: str, secret: str = "test-secret") -> str:
    query = f"{query}&timestamp={int(time.time() * 1000)}"
    return f"{query}&signature={hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()}"


async def call(port: int, method: str, query: str) -> tuple[int, Any]:
    raw = await send_raw(port, f"{method} {query} HTTP/1.1\r\nHost: x\r\nX-MBX-APIKEY: test-key\r\n"
                               f"Connection: close\r\n\r\n".encode())
    return status_of(raw), json.loads(raw.split(b"\r\n\r\n", 1)[1])


async def test_headers_over_the_limit_are_431_before_reading_further() -> None:
    async with serving() as (_fake, port):
        raw = await send_raw(port, b"GET /fapi/v1/ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n")
        assert status_of(raw) == 431 and b"Connection: close" in raw


async def test_a_body_over_the_limit_is_413_by_its_content_length_without_reading_it() -> None:
    async with serving() as (_fake, port):
        raw = await send_raw(port, b"POST /fapi/v1/order HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        assert status_of(raw) == 413


async def test_an_idle_connection_and_a_slow_request_are_closed() -> None:
    async with serving() as (_fake, port):
        start = trio.current_time()
        assert await send_raw(port, b"") == b""  # nothing sent: closed after idle_timeout
        assert await send_raw(port, b"GET /fapi/v1/ping HTTP/1.1\r\n") == b""  # head never finished
        assert trio.current_time() - start < 1.9  # both were cut well before the client gave up


async def test_connections_beyond_the_limit_get_503() -> None:
    async with serving(WireLimits(max_connections=1, idle_timeout=5.0)) as (_fake, port):
        holder = await trio.open_tcp_stream("127.0.0.1", port)
        await trio.sleep(0.05)
        raw = await send_raw(port, b"GET /fapi/v1/ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(raw) == 503
        await holder.aclose()
        await trio.sleep(0.05)
        raw = await send_raw(port, b"GET /fapi/v1/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(raw) == 200


@pytest.mark.parametrize(("quantity", "code"), [
    ("1e308", -1100), ("100000000", -4005), ("nan", -1102), ("inf", -1102), ("-1", -1102), ("abc", -1100),
    ("0.0001", -1111), ("", -1102)])
async def test_every_bad_quantity_gets_a_binance_error_body(quantity: str, code: int) -> None:
    async with serving() as (_fake, port):
        status, body = await call(port, "POST", "/fapi/v1/order?" + signed(
            f"symbol=BTCUSDT&side=BUY&type=MARKET&quantity={quantity}"))
        assert (status, body["code"]) == (400, code) and set(body) == {"code", "msg"}


async def test_bad_leverage_timestamp_and_flags_are_refused_in_binance_shape() -> None:
    async with serving() as (_fake, port):
        assert (await call(port, "POST", "/fapi/v1/leverage?" + signed("symbol=BTCUSDT&leverage=9e99")))[1][
            "code"] == -1100
        assert (await call(port, "POST", "/fapi/v1/leverage?" + signed("symbol=BTCUSDT&leverage=500")))[1][
            "code"] == -4028
        assert (await call(port, "POST", "/fapi/v1/order?" + signed(
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01&reduceOnly=maybe")))[1]["code"] == -1100
        status, body = await call(port, "GET", "/fapi/v3/account?timestamp=x&signature=y")
        assert status == 400 and body["code"] in (-1022, -1100)


async def test_an_internal_failure_is_500_without_the_exception_text() -> None:
    async with serving() as (fake, port):
        async def broken(*_args: Any) -> Any:
            raise ValueError("internal detail that must not leak")

        fake._public[("GET", "/fapi/v1/ping")] = broken
        status, body = await call(port, "GET", "/fapi/v1/ping")
        assert status == 500 and body["code"] == -1000 and "internal detail" not in json.dumps(body)

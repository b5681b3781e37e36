"""Fuzzing the HTTP edges: the operator API, the signal webhook and the local exchange server.

Hypothesis writes requests as a careless client or an attacker would: any method, known and
unknown paths (percent-escapes of non-UTF-8 bytes, 10,000-character segments), query strings
and bodies full of huge, non-finite and malformed numbers, malformed and deeply nested JSON,
bytes that are not UTF-8, bodies over the servers' limits, garbage and oversized headers,
right and wrong credentials. They are sent as raw bytes over a real socket (an HTTP client
library would refuse to send most of them), each on its own connection.

Every request must get an answer within a time bound, with a status below 500 (a client's
mistake is the client's: 4xx), a bounded body, JSON that parses where the answer says it is
JSON, and never a Python exception's text. The servers run once per module, in a thread of
their own (one Trio loop serving all three), so an example costs one round trip.

A few hundred examples run with the suite; `make fuzz` runs thousands (`TRIO_BOT_FUZZ=1`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import string
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from adapters.signals.webhook import MAX_BODY, WebhookIntake
from adapters.sim.exchange import SimExchange
from adapters.sim.fake_binance import FakeBinance
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from engine.config import EngineConfig
from engine.nursery.engine import Engine
from tests.conftest import PRICES
from tests.test_fuzz import ANY_VALUE, NASTY_TEXT, examples
from trio_bot.api.settings import ApiSettings, Token
from trio_bot.api.wiring import start_api
from trio_bot.webhook_route import webhook_route

pytestmark = pytest.mark.fuzz

TOKEN = "fuzz-token-0123456789abcdef"
HOOK_SECRET = "hook-secret-Xk29fQ"
API_KEY, API_SECRET = "fuzz-key", "fuzz-secret"
ANSWER_WITHIN = 15.0  # seconds for one request, answer included
MAX_ANSWER = 4 * 1024 * 1024


@attrs.frozen
class Servers:
    api: tuple[str, int]
    exchange: tuple[str, int]


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """The operator API with the webhook mounted, and the local exchange server, in one thread."""
    ready: dict[str, Any] = {}
    started = threading.Event()

    async def serve(db: Path) -> None:
        exchange = SimExchange.from_spec(ExchangeSpec(markets=tuple(MarketSpec(s, p) for s, p in PRICES.items())))
        storage = await SQLiteStore.open(str(db))
        intake = WebhookIntake(HOOK_SECRET, rate_limit=1e6, burst=1_000_000, wave_window=0.05)
        fake = FakeBinance(ExchangeSpec(markets=tuple(MarketSpec(s, p) for s, p in PRICES.items())),
                           api_key=API_KEY, api_secret=API_SECRET)
        try:
            async with Engine.open(EngineConfig(sweep_interval=0), exchange, storage) as engine, \
                    trio.open_nursery() as nursery:
                api = await start_api(nursery, engine, ApiSettings(port=0, listen_given=True),
                                      Token(TOKEN, generated=False), account="paper", exchange="paper exchange",
                                      extra_routes=[webhook_route(intake)])
                send, receive = trio.open_memory_channel[Any](0)
                nursery.start_soon(intake.feed, send)
                nursery.start_soon(_discard, receive)  # accepted waves are not traded here
                await nursery.start(fake.serve)
                ready.update(api=_address(api.url), exchange=_address(fake.base_url), scope=nursery.cancel_scope,
                             token=trio.lowlevel.current_trio_token())
                started.set()
        finally:
            await storage.aclose()

    with tempfile.TemporaryDirectory() as tmp:
        thread = threading.Thread(target=lambda: trio.run(serve, Path(tmp) / "fuzz.db"), daemon=True)
        thread.start()
        assert started.wait(30), "the servers did not start within 30 s"
        try:
            yield Servers(ready["api"], ready["exchange"])
        finally:
            trio.from_thread.run_sync(ready["scope"].cancel, trio_token=ready["token"])
            thread.join(30)


async def _discard(receive: trio.MemoryReceiveChannel[Any]) -> None:
    async for _ in receive:
        pass


# --- requests ---

METHODS = st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
                    st.sampled_from(["get", "TRACE", "CONNECT", "FOO", "G\u00c9T", "PO ST", ""]))
API_PATHS = ["/", "/api/v1/ping", "/api/v1/openapi.json", "/api/v1/status", "/api/v1/waves", "/api/v1/waves/w1",
             "/api/v1/positions", "/api/v1/positions/1", "/api/v1/positions/1/close", "/api/v1/events",
             "/api/v1/pause", "/api/v1/resume", "/api/v1/ws", "/metrics", "/api/v1/signals"]
EXCHANGE_PATHS = ["/fapi/v1/ping", "/fapi/v1/time", "/fapi/v1/exchangeInfo", "/fapi/v1/ticker/price",
                  "/fapi/v1/ticker/24hr", "/fapi/v1/premiumIndex", "/fapi/v2/account", "/fapi/v2/balance",
                  "/fapi/v2/positionRisk", "/fapi/v1/order", "/fapi/v1/algoOrder", "/fapi/v1/openOrders",
                  "/fapi/v1/leverage", "/fapi/v1/listenKey", "/fapi/v1/positionSide/dual"]
HUGE_NUMBERS = st.sampled_from(["1e308", "1e309", "-1e308", "9" * 400, "-" + "9" * 5000, "5e-324", "nan", "inf",
                                "-0", "0x10", "1_000", " 1", "1e", "", "0.00000001", "18446744073709551616"])
SEGMENT = st.one_of(st.text(string.ascii_letters + string.digits + "-_.~", max_size=12),
                    st.sampled_from(["..", "%ff%fe", "%00", "%2e%2e", "x" * 10_000, "é✓", "%E2%80%A8", ";", "{id}"]),
                    HUGE_NUMBERS)


@st.composite
def paths(draw: st.DrawFn, known: list[str]) -> str:
    path = draw(st.sampled_from(known))
    if draw(st.booleans()):
        path = path.rstrip("/") + "/" + "/".join(draw(st.lists(SEGMENT, min_size=1, max_size=3)))
    return "".join(c if c.isascii() and c.isprintable() and c != " " else quote(c) for c in path)


def _query_value(value: str) -> str:
    return "".join(c if c.isascii() and c.isalnum() else quote(c, safe="") for c in value)


QUERY_KEYS = st.sampled_from(["symbol", "last", "all", "wave", "signal", "position", "since", "quantity", "price",
                              "stopPrice", "side", "type", "timestamp", "recvWindow", "signature", "leverage",
                              "limit", "orderId", "origClientOrderId", "x" * 300, ""])
QUERY_VALUES = st.one_of(HUGE_NUMBERS, NASTY_TEXT, st.sampled_from(["BTCUSDT", "FORMUSDT", "true", "1", "w1"]))
QUERIES = st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=5).map(
    lambda items: "&".join(f"{_query_value(k)}={_query_value(v)}" for k, v in items))


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


SIGNAL_LIKE = st.fixed_dictionaries({"id": st.one_of(NASTY_TEXT, HUGE_NUMBERS), "symbol": NASTY_TEXT,
                                     "side": NASTY_TEXT, "score": st.one_of(HUGE_NUMBERS, st.floats())})
BODIES = st.one_of(
    st.just(b""),
    ANY_VALUE.map(_json_bytes),
    st.fixed_dictionaries({"secret": st.sampled_from([HOOK_SECRET, "guess", ""]),
                           "signals": st.lists(SIGNAL_LIKE, max_size=4)}).map(_json_bytes),
    st.fixed_dictionaries({"reason": st.one_of(NASTY_TEXT, ANY_VALUE)}).map(_json_bytes),
    st.binary(max_size=300),
    st.sampled_from([b"{", b"[1,", b'{"a": 1e999}', b'{"secret": "' + HOOK_SECRET.encode() + b'", "signals": [',
                     b"[" * 10_000, b'{"score": ' + b"9" * 5000 + b"}", b"\xff\xfe\x00", b"null", b'"x"',
                     b"quantity=1e308&price=nan&symbol=BTCUSDT", b"x" * (MAX_BODY + 10)]),
    QUERIES.map(str.encode),
)
HEADER_NAMES = st.sampled_from(["Authorization", "Content-Type", "X-MBX-APIKEY", "Accept", "X-Forwarded-For",
                                "Transfer-Encoding", "Expect", "Cookie", "X-Junk"])
HEADER_VALUES = st.one_of(
    st.sampled_from([f"Bearer {TOKEN}", "Bearer nope", "Basic Zm9vOmJhcg==", "Bearer " + "x" * 9000, "",
                     "application/json", "application/x-www-form-urlencoded", "text/plain; charset=latin-1",
                     API_KEY, "100-continue", "chunked, gzip"]),
    st.text(string.printable.strip("\r\n\x0b\x0c"), max_size=40))


@st.composite
def requests(draw: st.DrawFn, known: list[str]) -> bytes:
    method = draw(METHODS)
    target = draw(paths(known))
    query = draw(QUERIES)
    if query:
        target += "?" + query
    body = draw(BODIES) if method not in ("GET", "HEAD") or draw(st.booleans()) else b""
    headers = [("Host", "fuzz"), ("Connection", "close")]
    headers += [(name, value) for name, value in draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4))
                if name.lower() not in ("transfer-encoding", "expect")]  # a body is always sent whole
    if body or method in ("POST", "PUT", "PATCH"):
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return head.encode("utf-8") + body


SIGNED_PATHS = st.sampled_from([("POST", "/fapi/v1/order"), ("POST", "/fapi/v1/algoOrder"), ("GET", "/fapi/v1/order"),
                                ("DELETE", "/fapi/v1/order"), ("DELETE", "/fapi/v1/algoOrder"),
                                ("GET", "/fapi/v1/algoOrder"), ("POST", "/fapi/v1/leverage"),
                                ("POST", "/fapi/v1/marginType"), ("POST", "/fapi/v1/positionSide/dual"),
                                ("GET", "/fapi/v2/positionRisk"), ("GET", "/fapi/v1/openOrders")])
ORDER_PARAMS = st.fixed_dictionaries({}, optional={
    "symbol": st.one_of(st.sampled_from(sorted(PRICES)), NASTY_TEXT),
    "side": st.sampled_from(["BUY", "SELL", "buy", "", "HOLD"]),
    "type": st.sampled_from(["MARKET", "STOP_MARKET", "LIMIT", "TAKE_PROFIT_MARKET", "", "market"]),
    "algoType": st.sampled_from(["CONDITIONAL", "", "X"]),
    "quantity": st.one_of(HUGE_NUMBERS, st.sampled_from(["0.001", "1", "100", "245"])),
    "stopPrice": HUGE_NUMBERS, "triggerPrice": HUGE_NUMBERS, "price": HUGE_NUMBERS,
    "reduceOnly": st.sampled_from(["true", "false", "TRUE", "", "1"]),
    "newClientOrderId": st.one_of(NASTY_TEXT, st.sampled_from(["tb-1-entry", "tb-1-stop1"])),
    "clientAlgoId": NASTY_TEXT, "origClientOrderId": NASTY_TEXT, "orderId": HUGE_NUMBERS,
    "workingType": st.sampled_from(["MARK_PRICE", "CONTRACT_PRICE", "x"]),
    "leverage": HUGE_NUMBERS, "marginType": st.sampled_from(["ISOLATED", "CROSSED", "x"]),
    "dualSidePosition": st.sampled_from(["true", "false", "maybe"]),
    "recvWindow": HUGE_NUMBERS,
})


@st.composite
def signed_requests(draw: st.DrawFn) -> bytes:
    """Correctly signed and fresh: the fuzz reaches each endpoint's own parameter checks."""
    method, path = draw(SIGNED_PATHS)
    params = draw(ORDER_PARAMS)
    params["timestamp"] = str(int(time.time() * 1000))
    query = "&".join(f"{k}={_query_value(v)}" for k, v in params.items())
    query += "&signature=" + hmac.new(API_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    in_body = method == "POST" and draw(st.booleans())
    target = path if in_body else f"{path}?{query}"
    body = query.encode() if in_body else b""
    return (f"{method} {target} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\nX-MBX-APIKEY: {API_KEY}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


# --- the exchange of bytes, and what an answer must look like ---

@attrs.frozen
class Answer:
    status: int | None  # None: the server closed the connection without answering
    headers: dict[str, str]
    body: bytes


def send(address: tuple[str, int], request: bytes) -> Answer:
    """One request on a fresh connection; the whole answer, within ANSWER_WITHIN seconds."""
    deadline = time.monotonic() + ANSWER_WITHIN
    with socket.create_connection(address, timeout=ANSWER_WITHIN) as sock:
        # Refused before it read all of it (413, 431): the answer is still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        data = bytearray()
        while len(data) <= MAX_ANSWER:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"no complete answer within {ANSWER_WITHIN:g}s to {request[:200]!r}") from None
            if not chunk:
                break
            data += chunk
    assert len(data) <= MAX_ANSWER, f"an answer over {MAX_ANSWER} bytes to {request[:200]!r}"
    if not data:
        return Answer(None, {}, b"")
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = status_line.split(" ", 2)
    assert version.startswith("HTTP/1."), status_line
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    return Answer(int(status), headers, body)


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return bytes(out)


PYTHON_TEXT = (b"Traceback (most recent call last)", b'File "/', b"Error: ", b"Exception")


def check(answer: Answer, request: bytes, *, malformed_ok: bool) -> None:
    shown = request[:300]
    if answer.status is None:
        # Only a request that is not HTTP at all may be dropped without an answer.
        assert malformed_ok, f"closed without an answer: {shown!r}"
        return
    assert 200 <= answer.status < 500, f"{answer.status} {answer.body[:300]!r} for {shown!r}"
    for text in PYTHON_TEXT:
        assert text not in answer.body, f"{answer.status} shows {text!r}: {answer.body[:500]!r} for {shown!r}"
    if answer.headers.get("content-type", "").startswith("application/json") and answer.body:
        json.loads(answer.body)  # well-formed


def malformed(request: bytes) -> bool:
    """The request line itself is broken (an HTTP server may just hang up on that)."""
    line = request.split(b"\r\n", 1)[0]
    method = line.split(b" ", 1)[0]
    return line.count(b" ") != 2 or not method.isalpha() or not method.isascii() or not method.isupper()


# --- the properties ---

@given(request=requests(API_PATHS))
@examples(150)
def test_the_operator_api_and_the_webhook_answer_any_request_cleanly(servers, request):
    check(send(servers.api, request), request, malformed_ok=malformed(request))


@given(request=requests(EXCHANGE_PATHS))
@examples(150)
def test_the_local_exchange_answers_any_request_cleanly(servers, request):
    check(send(servers.exchange, request), request, malformed_ok=malformed(request))


@given(request=signed_requests())
@examples(100)
def test_signed_requests_with_any_parameters_get_binance_shaped_answers(servers, request):
    answer = send(servers.exchange, request)
    check(answer, request, malformed_ok=False)
    assert answer.status is not None
    if answer.status >= 400:
        error = json.loads(answer.body)  # Binance's shape: {"code": -NNNN, "msg": "..."}
        assert isinstance(error.get("code"), int) and error["code"] < 0 and isinstance(error.get("msg"), str), error


@pytest.mark.parametrize("which", ["api", "exchange"])
def test_a_body_over_the_limit_is_refused_before_it_is_read(servers, which):
    path = "/api/v1/signals" if which == "api" else "/fapi/v1/order"
    huge = 50 * 1024 * 1024
    head = f"POST {path} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\nContent-Length: {huge}\r\n\r\n".encode()
    answer = send(getattr(servers, which), head + b"x" * 1024)  # the rest is never sent: no wait for it
    assert answer.status == 413
    assert b"Traceback" not in answer.body


@pytest.mark.parametrize("which", ["api", "exchange"])
def test_a_huge_header_is_refused(servers, which):
    head = (f"GET /api/v1/ping HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\nX-Junk: {'x' * 200_000}\r\n\r\n"
            .encode())
    answer = send(getattr(servers, which), head)
    assert answer.status is None or 400 <= answer.status < 500

"""The ASGI guard in front of every route: bearer token, body size, and the paths that stay public.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware), so websockets pass
through it too. Tokens are compared in constant time. A websocket cannot carry
an Authorization header from a browser, so the stream authenticates with its
first message instead (see `stream.py`); the token never travels in a URL.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The signal webhook is public to the token guard: its senders (TradingView) cannot set headers, so it
# checks the signal secret itself (trio_bot.webhook_route).
PUBLIC = frozenset({"/", "/api/v1/ping", "/api/v1/openapi.json", "/favicon.ico", "/api/v1/signals"})
WS_FIRST_MESSAGE_AUTH = frozenset({"/api/v1/ws"})


def token_matches(expected: str, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return None


class Guard:
    def __init__(self, app: ASGIApp, *, token: str, max_body_bytes: int, metrics_public: bool) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body_bytes
        self.metrics_public = metrics_public

    def is_public(self, path: str) -> bool:
        return path in PUBLIC or path.startswith("/static/") or (self.metrics_public and path == "/metrics")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if scope["type"] == "websocket":
            if path in WS_FIRST_MESSAGE_AUTH or token_matches(self.token, bearer(scope["headers"])):
                await self.app(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 4401})
            return
        if not self.is_public(path) and not token_matches(self.token, bearer(scope["headers"])):
            await _json(send, 401, {"error": "a valid bearer token is required"},
                        extra=[(b"www-authenticate", b'Bearer realm="trio-bot"')])
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_body):
                await _json(send, 413, {"error": f"request body over {self.max_body} bytes"})
                return
        await self.app(scope, _limited(receive, self.max_body), send)


def _limited(receive: Receive, limit: int) -> Receive:
    """A chunked body is counted as it arrives; past the limit the request is cut off."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")


async def _json(send: Send, status: int, body: dict[str, Any],
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
               *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})

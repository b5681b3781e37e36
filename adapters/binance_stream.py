"""Binance USDⓈ-M prices pushed over a websocket (`<symbol>@bookTicker`), polling as the fallback.

Why bookTicker and not markPrice: Binance pushes the mark price once a second (or every
3 s), the best bid/ask on every change. The trailing stop should follow the market as it
moves, so it reads the middle of the book; the stop itself still triggers on the mark
price (`stop_working_type`), which a one-trade wick does not move.

Why trio-websocket: a Trio-native client, so the stream lives in the engine's nursery,
is cancelled with it and needs no asyncio crossing per message; ccxt.pro's websocket
classes are asyncio and cannot be pointed at a local server's URL as simply.

While the stream is down (connect refused, dropped, silent past `SILENCE`) prices are
polled over REST every `interval`, and a reconnect is tried after a backoff that doubles
up to `MAX_BACKOFF`. After every (re)connect one REST poll is made first, so a move
missed while disconnected is never assumed away.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence

import trio
import trio_websocket

log = logging.getLogger("trio_bot.ccxt.stream")

BINANCE_WS = "wss://fstream.binance.com"
CONNECT_TIMEOUT = 10.0
SILENCE = 30.0  # no message for this long: ping; no pong within PONG_TIMEOUT: reconnect
PONG_TIMEOUT = 10.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0

Poll = Callable[[], Awaitable[None]]
OnPrice = Callable[[str, float], None]


def stream_url(ws_url: str, symbols: Sequence[str]) -> str:
    names = "/".join(f"{s.lower()}@bookTicker" for s in symbols)
    return f"{ws_url.rstrip('/')}/stream?streams={names}"


def parse_book_ticker(message: str) -> tuple[str, float] | None:
    """(symbol, mid price) of a combined-stream bookTicker message; None for anything else."""
    try:
        data = json.loads(message).get("data") or {}
        bid, ask = float(data["b"]), float(data["a"])
        symbol = str(data["s"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if not (bid > 0 and ask > 0) or bid == float("inf") or ask == float("inf"):
        return None
    return symbol, (bid + ask) / 2


class PriceStream:
    """Prices for `symbols` from the market stream, REST polls while it is down."""

    def __init__(self, ws_url: str, symbols: Sequence[str], poll_once: Poll, interval: float) -> None:
        self.url = stream_url(ws_url, symbols)
        self._symbols = set(symbols)
        self._poll_once = poll_once
        self._interval = interval
        self.connects = 0
        self.connected = False

    async def run(self, on_price: OnPrice) -> None:
        backoff = FIRST_BACKOFF
        while True:
            try:
                await self._connected(on_price)
                backoff = FIRST_BACKOFF  # it was up: the next try comes soon
            except (OSError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed,
                    trio_websocket.DisconnectionTimeout, trio.TooSlowError, ExceptionGroup) as exc:
                log.warning("price stream down (%s: %s); polling, reconnecting in %.1fs",
                            type(exc).__name__, exc, backoff)
            self.connected = False
            with trio.move_on_after(backoff):
                await self._poll(on_price)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _connected(self, on_price: OnPrice) -> None:
        async with trio_websocket.open_websocket_url(self.url, connect_timeout=CONNECT_TIMEOUT,
                                                     disconnect_timeout=1.0) as ws:
            self.connects += 1
            self.connected = True
            await self._poll_once()  # what moved while we were away, from REST
            while True:
                with trio.move_on_after(SILENCE) as quiet:
                    message = await ws.get_message()
                if quiet.cancelled_caught:
                    with trio.fail_after(PONG_TIMEOUT):
                        await ws.ping()
                    continue
                found = parse_book_ticker(message) if isinstance(message, str) else None
                if found is not None and found[0] in self._symbols:
                    on_price(*found)

    async def _poll(self, on_price: OnPrice) -> None:
        """Poll until cancelled (the caller's backoff ends it)."""
        next_at = trio.current_time()
        while True:
            await self._poll_once()
            next_at = max(next_at + self._interval, trio.current_time())
            await trio.sleep_until(next_at)

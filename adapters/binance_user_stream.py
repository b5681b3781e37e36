"""Binance USDⓈ-M user data stream: fills and triggered stops as they happen.

A listenKey is created (`POST /fapi/v1/listenKey`), kept alive every `KEEPALIVE`
(30 minutes; it expires after 60 without), and replaced before `ROTATE` (Binance
closes a connection after 24 hours). The connection reads `ALGO_UPDATE`,
`ORDER_TRADE_UPDATE` and `ACCOUNT_UPDATE`.

What the engine is told: a stop that triggered (at its trigger price) or a reduce-only
order that filled (at its price) is reported through `on_fill(symbol, price)` — in live
mode that is the engine's price feed, so the engine sees a price at or through its stop,
which makes the trailing service ask the exchange about its stop at once. This matters
most with `workingType = MARK_PRICE`: the mark can cross a stop while the book's middle
does not, so without this stream the stop-out would be noticed only by the next sweep.
Every event is also handed to `on_event` first (`adapters.binance_fills`), so that
look-up is answered from the stream's own figures when they show the stop completely
filled, and by REST otherwise; a stream that was down is followed by a REST
reconciliation (the reconnect is reported as an `on_reconnect` call).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio_websocket

log = logging.getLogger("trio_bot.ccxt.user_stream")

KEEPALIVE = 30 * 60.0
ROTATE = 23 * 3600.0
CONNECT_TIMEOUT = 10.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
# Algo statuses after which the stop no longer protects: the engine should look now.
_ALGO_DONE = frozenset({"TRIGGERING", "TRIGGERED", "FINISHED", "REJECTED", "EXPIRED"})

NewKey = Callable[[], Awaitable[str]]
KeepAlive = Callable[[str], Awaitable[None]]
OnFill = Callable[[str, float], None]
OnEvent = Callable[[dict[str, Any]], None]


def parse_event(message: str) -> dict[str, Any] | None:
    try:
        event = json.loads(message)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def fill_of(event: dict[str, Any]) -> tuple[str, float] | None:
    """(symbol, price) the engine should look at, from one user-stream event; None otherwise."""
    try:
        kind, order = event.get("e"), event.get("o") or {}
        if kind == "ALGO_UPDATE" and order.get("X") in _ALGO_DONE:
            # The trigger price, not the fill's: a MARK_PRICE stop may fill at a last price that is
            # not through the stop, and only a price at the stop makes the engine look at it.
            price = float(order.get("tp") or 0)
            return (str(order["s"]), price) if price > 0 else None
        if kind == "ORDER_TRADE_UPDATE" and order.get("x") == "TRADE" and order.get("R") is True:
            price = float(order.get("ap") or order.get("L") or 0)
            return (str(order["s"]), price) if price > 0 else None
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return None


class UserStream:
    """The account's user data stream; see the module docstring."""

    def __init__(self, ws_url: str, new_key: NewKey, keepalive: KeepAlive, on_fill: OnFill,
                 on_reconnect: Callable[[], Awaitable[None]], on_event: OnEvent | None = None) -> None:
        self._ws_url = ws_url.rstrip("/")
        self._new_key, self._keepalive = new_key, keepalive
        self._on_fill, self._on_reconnect = on_fill, on_reconnect
        self._on_event = on_event
        self.connects = 0
        self.events = 0

    async def run(self) -> None:
        backoff = FIRST_BACKOFF
        while True:
            try:
                key = await self._new_key()
                with trio.move_on_after(ROTATE):  # a fresh key and connection before Binance's 24 h cut
                    await self._connected(key)
                backoff = FIRST_BACKOFF
                continue
            except (OSError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed,
                    trio_websocket.DisconnectionTimeout, trio.TooSlowError, ExceptionGroup) as exc:
                log.warning("user data stream down (%s: %s); reconnecting in %.1fs", type(exc).__name__, exc, backoff)
            except Exception as exc:  # the listenKey calls: an exchange error (engine kind)
                log.warning("user data stream: no listenKey (%s); retrying in %.1fs", exc, backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _connected(self, key: str) -> None:
        async with trio_websocket.open_websocket_url(f"{self._ws_url}/ws/{key}", connect_timeout=CONNECT_TIMEOUT,
                                                     disconnect_timeout=1.0) as ws, trio.open_nursery() as nursery:
            self.connects += 1
            nursery.start_soon(self._keep_alive, key)
            await self._on_reconnect()  # what happened while no stream was listening, from REST
            while True:
                message = await ws.get_message()
                self.events += 1
                event = parse_event(message) if isinstance(message, str) else None
                if event is None:
                    continue
                if event.get("e") == "listenKeyExpired":
                    raise trio_websocket.ConnectionClosed(None)
                if self._on_event is not None:
                    self._on_event(event)  # the figures first: the look-up `on_fill` causes reads them
                found = fill_of(event)
                if found is not None:
                    self._on_fill(*found)

    async def _keep_alive(self, key: str) -> None:
        while True:
            await trio.sleep(KEEPALIVE)
            await self._keepalive(key)

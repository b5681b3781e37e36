"""The live exchange's push feeds for one account: prices, and the user data stream.

Apart from `adapters.ccxt_exchange` because this is the part that runs for as long as
the engine does (a task in its nursery) while the exchange's methods are single calls.

* Prices: Binance's bookTicker stream when a websocket URL is known
  (`adapters.binance_stream`: REST polling while it is down, a REST poll after each
  connect), else a REST poll every `price_poll_interval` seconds.
* Fills: Binance's user data stream (`adapters.binance_user_stream`), whose events are
  kept in `fills` (`adapters.binance_fills`) so a stop-out is recorded from the stream's
  own figures, and whose stop events reach the engine as prices at the stop.

A transient failure of a poll skips one round (logged) instead of ending the feed; a
refusal (bad key, bad symbol) ends it, since polling again would only repeat it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import trio

from adapters.binance_fills import StreamFills
from adapters.binance_stream import BINANCE_WS, PriceStream
from adapters.binance_user_stream import UserStream
from engine.errors import TransientError

log = logging.getLogger("trio_bot.ccxt")

OnPrice = Callable[[str, float], None]
FetchPrices = Callable[[Sequence[str]], Awaitable[dict[str, float]]]
Signed = Callable[..., Awaitable[Any]]  # one signed call through the account's gate: (ccxt method, *args)


def ws_url_for(exchange_id: str, base_url: str | None, ws_url: str | None) -> str | None:
    """Binance's market streams; a local server names its own, else prices are polled."""
    if ws_url is not None:
        return ws_url
    return BINANCE_WS if exchange_id == "binanceusdm" and base_url is None else None


class Feeds:
    """Prices and fills pushed by the exchange, polled while a push feed is down."""

    def __init__(self, exchange_id: str, ws_url: str | None, interval: float, fetch_prices: FetchPrices,
                 signed: Signed, client: Any) -> None:
        self.exchange_id = exchange_id
        self.ws_url = ws_url
        self._interval = interval
        self._fetch_prices = fetch_prices
        self._signed = signed
        self._client = client
        self.fills = StreamFills()
        self.price_stream: PriceStream | None = None
        self.user_stream: UserStream | None = None

    async def run(self, symbols: Sequence[str], on_price: OnPrice) -> None:
        """Prices for `symbols` until cancelled (with a websocket URL, the user stream too)."""
        poll_once = partial(self._poll_once, symbols, on_price)
        if self.ws_url is not None:
            self.price_stream = PriceStream(self.ws_url, symbols, poll_once, self._interval)
            self.user_stream = UserStream(self.ws_url, self._new_listen_key, self._keep_listen_key, on_price,
                                          poll_once, on_event=self.fills.on_event)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.user_stream.run)
                await self.price_stream.run(on_price)
            return
        next_at = trio.current_time()
        while True:
            await poll_once()
            next_at = max(next_at + self._interval, trio.current_time())
            await trio.sleep_until(next_at)

    async def _new_listen_key(self) -> str:
        answer = await self._signed(self._client.fapiPrivatePostListenKey)
        return str(answer["listenKey"])

    async def _keep_listen_key(self, key: str) -> None:
        await self._signed(self._client.fapiPrivatePutListenKey, {"listenKey": key})

    async def _poll_once(self, symbols: Sequence[str], on_price: OnPrice) -> None:
        try:
            prices = await self._fetch_prices(symbols)
        except TransientError as exc:
            log.warning("%s price poll failed: %s", self.exchange_id, exc)
        else:
            for symbol, price in prices.items():
                on_price(symbol, price)

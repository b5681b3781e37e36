"""Deterministic "10% of calls hang" for both designs: the same seeded choice of which call hangs."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import trio

from adapters.sim.exchange import SimExchange
from engine.model import Balance, ExchangePosition, Market, OrderRequest, OrderState
from engine.ports import Record, Storage


class Hangs:
    def __init__(self, probability: float, seed: int) -> None:
        self.probability = probability
        self._rng = random.Random(seed)
        self.count = 0

    async def maybe_hang(self) -> None:
        if self.probability and self._rng.random() < self.probability:
            self.count += 1
            await trio.sleep_forever()


class HangingExchange:
    """A SimExchange whose calls hang with the given probability (nothing happens when they do)."""

    def __init__(self, inner: SimExchange, hangs: Hangs) -> None:
        self.inner = inner
        self.hangs = hangs

    async def load_markets(self) -> dict[str, Market]:
        return await self.inner.load_markets()

    async def fetch_prices(self, symbols: Sequence[str]) -> dict[str, float]:
        await self.hangs.maybe_hang()
        return await self.inner.fetch_prices(symbols)

    async def fetch_balance(self) -> Balance:
        await self.hangs.maybe_hang()
        return await self.inner.fetch_balance()

    async def place_order(self, request: OrderRequest) -> OrderState:
        await self.hangs.maybe_hang()
        return await self.inner.place_order(request)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState:
        await self.hangs.maybe_hang()
        return await self.inner.cancel_order(symbol, client_order_id)

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        await self.hangs.maybe_hang()
        return await self.inner.fetch_order(symbol, client_order_id)

    async def fetch_positions(self) -> list[ExchangePosition]:
        await self.hangs.maybe_hang()
        return await self.inner.fetch_positions()

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        await self.hangs.maybe_hang()
        return await self.inner.fetch_open_orders(symbol)

    async def stream_prices(self, on_price: Callable[[str, float], None]) -> None:
        await self.inner.stream_prices(on_price)


class HangingStorage:
    """Storage whose writes hang with the given probability (start-up reads never do)."""

    def __init__(self, inner: Storage, hangs: Hangs) -> None:
        self.inner = inner
        self.hangs = hangs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def record_intent(self, *args: Any) -> None:
        await self.hangs.maybe_hang()
        await self.inner.record_intent(*args)

    async def write(self, records: Sequence[Record]) -> None:
        await self.hangs.maybe_hang()
        await self.inner.write(records)

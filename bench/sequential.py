"""The design from the incident, reimplemented faithfully as the baseline.

One signal after another; each awaits its entry, then its stop-loss (retrying
on errors), then trailing-stop creation, whose state save runs under a lock
shared by every position — exactly the shape that hung in the incident. With
`timeout` set, every call is wrapped the way the incident report's "Solution 1"
proposes (`asyncio.wait_for(..., 10.0)`, here `trio.move_on_after`), because
without it a single hanging call never lets the wave finish.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import trio

from engine import ids
from engine.model import (
    OrderKind,
    OrderRecord,
    OrderRequest,
    OrderStatus,
    Position,
    PositionStatus,
    Side,
    TrailingRecord,
)
from engine.ports import Exchange, Storage
from engine.sizing import initial_stop_price, order_quantity

T = TypeVar("T")


class SequentialBot:
    def __init__(self, exchange: Exchange, storage: Storage, *, size_usdt: float = 200.0, stop_percent: float = 2.0,
                 retries: int = 3, timeout: float | None = None) -> None:
        self.exchange = exchange
        self.storage = storage
        self.size = size_usdt
        self.stop_percent = stop_percent
        self.retries = retries
        self.timeout = timeout
        self.trailing_lock = trio.Lock()
        self.next_id = 1

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T | None:
        if self.timeout is None:
            return await fn(*args)
        with trio.move_on_after(self.timeout):
            return await fn(*args)
        return None  # "continuing without it", as Solution 1 does

    async def process_wave(self, signals: Sequence[Mapping[str, Any]]) -> int:
        markets = await self.exchange.load_markets()
        opened = 0
        for raw in sorted(signals, key=lambda s: -float(s["score"])):
            try:
                if await self._open(raw, markets):
                    opened += 1
            except Exception:
                continue  # the incident's loop logged and went on
        return opened

    async def _open(self, raw: Mapping[str, Any], markets: Mapping[str, Any]) -> bool:
        symbol, side = raw["symbol"], Side(raw["side"])
        market = markets[symbol]
        prices = await self._call(self.exchange.fetch_prices, [symbol])
        if not prices:
            return False
        quantity = order_quantity(self.size, prices[symbol], market)
        pid = self.next_id
        self.next_id += 1
        position = Position(id=pid, signal_id=str(raw["id"]), wave_id="seq", symbol=symbol, side=side,
                            status=PositionStatus.OPENING, quantity=quantity, entry_client_id=ids.entry_id(pid))
        await self._call(self.storage.record_intent, position,
                         OrderRecord(ids.entry_id(pid), pid, symbol, OrderKind.ENTRY, side.entry_order_side, quantity,
                                     OrderStatus.PENDING))
        entry = await self._call(self.exchange.place_order, OrderRequest(
            symbol, side.entry_order_side, OrderKind.ENTRY, quantity, ids.entry_id(pid)))
        if entry is None or entry.average_price is None:
            return False
        stop_price = initial_stop_price(side, entry.average_price, self.stop_percent, market.tick_size)
        for attempt in range(1, self.retries + 1):
            try:
                stop = await self._call(self.exchange.place_order, OrderRequest(
                    symbol, side.exit_order_side, OrderKind.STOP, quantity, ids.stop_id(pid, attempt), stop_price))
            except Exception:
                stop = None
            if stop is not None:
                break
        # create_trailing_stop(): the state save under the manager's shared lock.
        async with self.trailing_lock:
            await self._call(self.storage.write, [TrailingRecord(
                pid, symbol, side, entry.average_price, entry.average_price, 0.5, "waiting", entry.average_price,
                stop_price, ids.stop_id(pid, 1), 0.0)])
        await self._call(self.storage.write, [Position(
            id=pid, signal_id=position.signal_id, wave_id="seq", symbol=symbol, side=side,
            status=PositionStatus.OPEN, quantity=quantity, entry_client_id=ids.entry_id(pid),
            entry_price=entry.average_price, stop_price=stop_price)])
        return True

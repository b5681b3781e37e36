"""The engine's ports. Adapters implement these; the engine imports no adapter.

Contract shared by every port: a call either returns, or raises one of the
kinds in `engine.errors`. Deadlines are applied by the engine (one helper,
`engine.nursery.calls.bounded`), so adapters need not add their own — but a
call must stay cancellable at every await.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from engine.model import (
    Balance,
    Event,
    ExchangePosition,
    HandledSignal,
    Market,
    OrderRecord,
    OrderRequest,
    OrderState,
    OutcomeResolved,
    Position,
    TrailingRecord,
    WaveOutcome,
    WaveRecord,
)

# Everything the state writer can persist, in one transaction per batch.
Record = Position | OrderRecord | TrailingRecord | WaveRecord | WaveOutcome | OutcomeResolved | Event


class Exchange(Protocol):
    """A USDⓈ-M style futures account in one-way position mode."""

    async def load_markets(self) -> dict[str, Market]: ...

    async def fetch_prices(self, symbols: Sequence[str]) -> dict[str, float]:
        """Last price per symbol; unknown symbols are left out."""
        ...

    async def fetch_balance(self) -> Balance: ...

    async def place_order(self, request: OrderRequest) -> OrderState:
        """Entry orders are market orders and return filled; stops return `new`.

        A client order id used before raises `DuplicateOrderError`.
        """
        ...

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState: ...

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        """The order with this client id, or None if the exchange never saw it."""
        ...

    async def fetch_positions(self) -> list[ExchangePosition]: ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        """Resting orders, conditional (stop) orders included."""
        ...

    async def stream_prices(self, on_price: Callable[[str, float], None]) -> None:
        """Call `on_price(symbol, price)` for every price update until cancelled.

        `on_price` is synchronous and O(1) (the consumer keeps only the newest price per
        symbol), so a flood of ticks can never back up into the exchange adapter.
        """
        ...


class Storage(Protocol):
    """Durable engine state. One logical operation = one transaction."""

    async def migrate(self) -> None: ...

    async def schema_version(self) -> int: ...

    async def record_intent(self, position: Position, entry: OrderRecord) -> None:
        """Store a new `opening` position and its pending entry order atomically."""
        ...

    async def write(self, records: Sequence[Record]) -> None:
        """Upsert/append a batch of records in one transaction (events are appended)."""
        ...

    async def claim_signals(self, wave: WaveRecord, claims: Mapping[str, int], *,
                            forget_before: float | None = None) -> dict[str, HandledSignal]:
        """Store the wave's start and claim its signal ids, in one transaction.

        `claims` maps each id the wave will handle to the rank of the copy it handles.
        Returns the ids another wave claimed before (they are not claimed again); a
        retried call (after a lost answer) finds its own claims and does not report
        them. Claims made before `forget_before` (epoch seconds) are forgotten first:
        the retention of the memory.
        """
        ...

    async def handled_signals(self, signal_ids: Sequence[str]) -> dict[str, HandledSignal]:
        """The claims on these ids (unknown ids are left out): is a delivery a repeat?"""
        ...

    async def wave_claims(self, wave_id: str) -> list[HandledSignal]:
        """The ids one wave claimed (best rank first): what it set out to handle."""
        ...

    async def unfinished_waves(self) -> list[WaveRecord]:
        """Waves stored without an end (the engine stopped mid-wave), with their stored outcomes."""
        ...

    async def max_position_id(self) -> int: ...

    async def wave_count(self) -> int: ...

    async def positions(self, *, include_closed: bool = False) -> list[Position]: ...

    async def position(self, position_id: int) -> Position | None: ...

    async def orders(self, position_id: int) -> list[OrderRecord]: ...

    async def trailing(self, position_id: int) -> TrailingRecord | None: ...

    async def waves(self, *, last: int | None = None) -> list[WaveRecord]: ...

    async def wave(self, wave_id: str) -> WaveRecord | None:
        """One wave by id, with its outcomes (None if unknown): read by its key, not a scan."""
        ...

    async def events(self, *, position_id: int | None = None, signal_id: str | None = None,
                     wave_id: str | None = None, since: float | None = None) -> list[Event]:
        """The timeline, oldest first; filters combine. `wave_id` takes the wave's own events and
        those of its signals and their positions; `since` is wall-clock epoch seconds."""
        ...

    async def setting(self, key: str) -> str | None:
        """An operator setting that survives restarts (e.g. the pause), None if unset."""
        ...

    async def put_setting(self, key: str, value: str | None) -> None:
        """Store (or, with None, remove) an operator setting, durably, before returning."""
        ...

    async def aclose(self) -> None: ...


class SignalSource(Protocol):
    """Delivers waves of raw signals as a signal service would: unvalidated mappings."""

    def waves(self) -> AsyncIterator[Sequence[Mapping[str, Any]]]: ...


class WallClock(Protocol):
    """Wall-clock time for records. Scheduling never uses it; it uses Trio's clock."""

    def now(self) -> float: ...

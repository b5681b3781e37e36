"""A `Storage` wrapper that injects the scenario's storage faults (SCENARIOS.md).

Fault points follow what a call touches, so a scenario can break one kind of
storage traffic and leave the rest working (the incident: trailing-stop saves
hung while everything else kept going):

* `storage.trailing` — `trailing()` and `write()` batches made only of
  `TrailingRecord`s (the state writer's trailing lane);
* `storage.write` — `record_intent()` and every other `write()` batch;
* `storage.read` — every other read.

`migrate()` and `aclose()` are not fault points: they are set-up and tear-down,
not the run being tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from adapters.sim.faults import FaultPlan
from engine.call_points import CallPoint
from engine.model import (
    Event,
    HandledSignal,
    OrderRecord,
    Position,
    TrailingRecord,
    WaveOutcome,
    WaveRecord,
)
from engine.ports import Record, Storage


class FaultyStorage:
    def __init__(self, inner: Storage, plan: FaultPlan) -> None:
        self._inner = inner
        self._plan = plan

    @property
    def inner(self) -> Storage:
        """The store without faults: for reading back what really landed."""
        return self._inner

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    async def migrate(self) -> None:
        await self._inner.migrate()

    async def schema_version(self) -> int:
        return await self._inner.schema_version()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def record_intent(self, position: Position, entry: OrderRecord) -> None:
        await self._plan.run(CallPoint.STORAGE_WRITE, lambda: self._inner.record_intent(position, entry),
                             symbol=position.symbol, side=position.side.value)

    async def write(self, records: Sequence[Record]) -> None:
        batch = list(records)
        trailing_only = bool(batch) and all(isinstance(r, TrailingRecord) for r in batch)
        symbol, side = _subject(batch)
        await self._plan.run(CallPoint.STORAGE_TRAILING if trailing_only else CallPoint.STORAGE_WRITE,
                             lambda: self._inner.write(batch), symbol=symbol, side=side)

    async def claim_signals(self, wave: WaveRecord, claims: Mapping[str, int], *,
                            forget_before: float | None = None) -> dict[str, HandledSignal]:
        return await self._plan.run(CallPoint.STORAGE_WRITE, lambda: self._inner.claim_signals(
            wave, claims, forget_before=forget_before))

    async def handled_signals(self, signal_ids: Sequence[str]) -> dict[str, HandledSignal]:
        return await self._plan.run(CallPoint.STORAGE_READ, lambda: self._inner.handled_signals(signal_ids))

    async def wave_claims(self, wave_id: str) -> list[HandledSignal]:
        return await self._plan.run(CallPoint.STORAGE_READ, lambda: self._inner.wave_claims(wave_id))

    async def unfinished_waves(self) -> list[WaveRecord]:
        return await self._plan.run(CallPoint.STORAGE_READ, self._inner.unfinished_waves)

    async def trailing(self, position_id: int) -> TrailingRecord | None:
        return await self._plan.run(CallPoint.STORAGE_TRAILING, lambda: self._inner.trailing(position_id))

    async def max_position_id(self) -> int:
        return await self._plan.run(CallPoint.STORAGE_READ, self._inner.max_position_id)

    async def wave_count(self) -> int:
        return await self._plan.run(CallPoint.STORAGE_READ, self._inner.wave_count)

    async def positions(self, *, include_closed: bool = False) -> list[Position]:
        return await self._plan.run(CallPoint.STORAGE_READ,
                                    lambda: self._inner.positions(include_closed=include_closed))

    async def position(self, position_id: int) -> Position | None:
        return await self._plan.run(CallPoint.STORAGE_READ, lambda: self._inner.position(position_id))

    async def orders(self, position_id: int) -> list[OrderRecord]:
        return await self._plan.run(CallPoint.STORAGE_READ, lambda: self._inner.orders(position_id))

    async def waves(self, *, last: int | None = None) -> list[WaveRecord]:
        return await self._plan.run(CallPoint.STORAGE_READ, lambda: self._inner.waves(last=last))

    async def wave(self, wave_id: str) -> WaveRecord | None:
        return await self._plan.run(CallPoint.STORAGE_READ, lambda: self._inner.wave(wave_id))

    async def events(self, *, position_id: int | None = None, signal_id: str | None = None,
                     wave_id: str | None = None, since: float | None = None) -> list[Event]:
        return await self._plan.run(CallPoint.STORAGE_READ, lambda: self._inner.events(
            position_id=position_id, signal_id=signal_id, wave_id=wave_id, since=since))

    async def setting(self, key: str) -> str | None:
        return await self._plan.run(CallPoint.STORAGE_READ, lambda: self._inner.setting(key))

    async def put_setting(self, key: str, value: str | None) -> None:
        await self._plan.run(CallPoint.STORAGE_WRITE, lambda: self._inner.put_setting(key, value))


def _subject(batch: Sequence[Record]) -> tuple[str | None, str | None]:
    """Symbol and side a `match` is checked against: those of the first record naming a symbol.

    A batch is whatever the writer had queued, so it may span symbols; the
    first record is a simple, predictable stand-in (for the trailing lane it is
    the position whose state changed first). Waves and events name no symbol
    and are passed over; an order's buy/sell is not a position side.
    """
    for record in batch:
        if isinstance(record, Position | TrailingRecord):
            return record.symbol, record.side.value
        if isinstance(record, OrderRecord):
            return record.symbol, None
        if isinstance(record, WaveOutcome):
            return record.outcome.symbol, record.outcome.side
    return None, None


if TYPE_CHECKING:
    def _conforms(storage: FaultyStorage) -> Storage:
        """mypy proves here that `FaultyStorage` satisfies the port it wraps."""
        return storage

"""The position book: the engine's live positions, the ids they get, and their saving.

One owner for what used to be a shared dict: every service that changes a position
does so through the book, which mirrors it and hands it to the state writer in the
same step, so the live view and the store never disagree about what was written.
Ids are allocated here (in rank order by the wave), which keeps ids, and so client
order ids, deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from engine.events import EventKind
from engine.model import Position, PositionStatus, TrailingRecord, TrailingStatus
from engine.nursery.context import EngineContext


class PositionBook:
    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx
        self._positions: dict[int, Position] = {}
        self._next_id = 1

    def load(self, positions: Iterable[Position], max_position_id: int) -> None:
        """What the store holds at start-up; new ids continue after the highest ever used."""
        for position in positions:
            self._positions[position.id] = position
        self._next_id = max_position_id + 1

    def allocate_id(self) -> int:
        pid = self._next_id
        self._next_id += 1
        return pid

    def get(self, position_id: int) -> Position | None:
        return self._positions.get(position_id)

    def __getitem__(self, position_id: int) -> Position:
        return self._positions[position_id]

    def all(self, *, include_closed: bool = False) -> list[Position]:
        """Sorted by id; closed ones only when asked."""
        return [p for _, p in sorted(self._positions.items())
                if include_closed or p.status is not PositionStatus.CLOSED]

    def with_status(self, status: PositionStatus) -> list[Position]:
        return [p for _, p in sorted(self._positions.items()) if p.status is status]

    @property
    def busy_symbols(self) -> frozenset[str]:
        """Symbols a new signal must not open: a position there is opening or open."""
        return frozenset(p.symbol for p in self._positions.values() if p.status is not PositionStatus.CLOSED)

    def save(self, position: Position) -> None:
        """The position's new state: mirrored now, stored by the writer in submission order."""
        self._positions[position.id] = position
        self._ctx.writer.submit(position)

    def stored(self, position: Position) -> None:
        """A position the caller has already stored itself (the open's intent): mirror only."""
        self._positions[position.id] = position

    def trailing_saved(self, record: TrailingRecord) -> None:
        """The writer stored a position's trailing state: from now on a restart resumes it."""
        position = self._positions.get(record.position_id)
        if position is not None and position.trailing is not TrailingStatus.ACTIVE \
                and position.status is PositionStatus.OPEN:
            self.save(attrs.evolve(position, trailing=TrailingStatus.ACTIVE))
            self._ctx.event(EventKind.TRAILING_SAVED, f"stop {record.stop_price:g}", position_id=record.position_id)

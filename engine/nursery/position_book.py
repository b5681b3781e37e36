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

# Closed positions kept in memory, newest last: enough for the last waves' tables and the
# dashboard. Older ones live in the store only, so a bot that runs for months stays flat.
CLOSED_KEPT = 500


class PositionBook:
    def __init__(self, ctx: EngineContext, closed_kept: int | None = None) -> None:
        self._ctx = ctx
        self._positions: dict[int, Position] = {}
        self._next_id = 1
        self._closed: dict[int, None] = {}  # ids of the closed positions kept, oldest first
        self._closed_kept = CLOSED_KEPT if closed_kept is None else closed_kept
        self.forgotten_pnl = 0.0  # realised PnL of the closed positions no longer kept

    def load(self, positions: Iterable[Position], max_position_id: int) -> None:
        """What the store holds at start-up; new ids continue after the highest ever used."""
        for position in positions:
            self._mirror(position)
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
        self._mirror(position)
        self._ctx.writer.submit(position)

    def stored(self, position: Position) -> None:
        """A position the caller has already stored itself (the open's intent): mirror only."""
        self._mirror(position)

    def _mirror(self, position: Position) -> None:
        self._positions[position.id] = position
        if position.status is PositionStatus.CLOSED:
            self._closed[position.id] = None
            while len(self._closed) > self._closed_kept:
                oldest = next(iter(self._closed))
                del self._closed[oldest]
                gone = self._positions.pop(oldest, None)
                if gone is not None:
                    self.forgotten_pnl += gone.realized_pnl or 0.0

    @property
    def realized_pnl(self) -> float:
        """Realised PnL of every position this engine closed or loaded, kept in memory or not."""
        return self.forgotten_pnl + sum(p.realized_pnl or 0.0 for p in self._positions.values())

    def trailing_saved(self, record: TrailingRecord) -> None:
        """The writer stored a position's trailing state: from now on a restart resumes it."""
        position = self._positions.get(record.position_id)
        if position is not None and position.trailing is not TrailingStatus.ACTIVE \
                and position.status is PositionStatus.OPEN:
            self.save(attrs.evolve(position, trailing=TrailingStatus.ACTIVE))
            self._ctx.event(EventKind.TRAILING_SAVED, f"stop {record.stop_price:g}", position_id=record.position_id)

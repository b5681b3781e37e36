"""The trailing manager's record of one followed position, and its read-only view.

Apart from the manager because this is the per-position state (the trailing
stop, the live stop's id, what is pending) while the manager is the service
that runs one follower task per record; only the manager changes a `Follower`,
everyone else sees a `FollowerView` snapshot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

from engine.model import Position, TrailingRecord
from engine.trailing import TrailingStop, TrailState, to_record

if TYPE_CHECKING:
    from engine.nursery.trailing_manager import TrailingManager

@attrs.frozen
class FollowerView:
    """A read-only snapshot of one followed position, for the sweep, the CLI and reports."""

    position_id: int
    symbol: str
    stop_client_id: str
    state: TrailState
    best_price: float
    live_stop: float
    moves: int
    stale: frozenset[str]  # older stops not yet cancelled
    busy: bool  # its follower is changing the position's orders right now
    changes: int  # counts the follower's actions and saves: a sweep judges only what stayed still


@attrs.define(eq=False)
class Follower:
    """The manager's own record of one position; nothing outside the manager touches it."""

    manager: TrailingManager
    position: Position
    ts: TrailingStop
    stop_cid: str
    stop_seq: int
    wake: trio.Event = attrs.field(factory=trio.Event)
    crossed: bool = False  # a price reached the live stop: confirm the exit with the exchange
    repair: bool = False
    stale: set[str] = attrs.field(factory=set)
    closed: bool = False
    moves: int = 0
    retry_at: float = 0.0  # after a failed move, none before this (Trio time)
    busy: bool = False
    changes: int = 0
    close_requests: list[CloseRequest] = attrs.field(factory=list)  # the operator asked to close

    # The writer's trailing lane (`TrailingSource`): the state is built when it is written.
    def trailing_record(self) -> TrailingRecord:
        return to_record(self.ts, position_id=self.position.id, symbol=self.position.symbol,
                         stop_client_id=self.stop_cid, now=self.manager.ctx.clock.now())

    def trailing_saved(self, record: TrailingRecord) -> None:
        self.manager.book.trailing_saved(record)

    def view(self) -> FollowerView:
        return FollowerView(self.position.id, self.position.symbol, self.stop_cid, self.ts.state,
                            self.ts.best_price, self.ts.live_stop, self.moves, frozenset(self.stale),
                            self.busy, self.changes)


@attrs.define(eq=False)
class CloseRequest:
    """An operator's close, answered by the position's follower once it is settled."""

    done: trio.Event = attrs.field(factory=trio.Event)
    closed: bool = False
    exit_price: float | None = None
    error: str | None = None


"""What the operator's API reads and does, shaped exactly like the CLI's `--json` output.

The API reads stored history (waves, events) from the store, as `trio-bot waves`
and `trio-bot events` do, and the live state (positions, trailing, pause) from
the running engine. Every method is bounded by the caller (`request_timeout`).
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from engine.model import Event, Position, PositionStatus, WaveRecord
from engine.nursery.engine import Engine
from engine.report import event_json, position_json, reportable_positions, wave_json
from engine.sizing import realized_pnl


class NotFound(Exception):
    """An unknown wave, position or signal id (HTTP 404)."""


class Conflict(Exception):
    """The request does not fit the current state, e.g. closing a closed position (HTTP 409)."""


class Failed(Exception):
    """The exchange did not carry out the operator's order (HTTP 502); nothing was made worse."""


@attrs.define
class Operator:
    engine: Engine
    account: str
    exchange: str
    started_at: float = attrs.field(factory=time.time)
    last_wave_id: str | None = None

    # --- reads ---

    async def status(self) -> dict[str, Any]:
        engine = self.engine
        pause = engine.pause_state
        waves = await engine.ctx.storage.waves(last=1)
        positions = {p.id: p for p in engine.positions(include_closed=True)}
        open_positions = [self._live_position(p.id) for p in engine.positions() if p.status is PositionStatus.OPEN]
        return {
            "state": "paused" if pause is not None else "running",
            "paused": None if pause is None else {"reason": pause.reason, "since": pause.since},
            "account": self.account,
            "exchange": self.exchange,
            "uptime": round(time.time() - self.started_at, 3),
            "started_at": round(self.started_at, 3),
            "open_positions": len(open_positions),
            "unprotected_positions": sum(1 for p in engine.positions()
                                         if p.status is PositionStatus.OPEN and p.stop_price is None),
            "wave_running": engine.waves.running_wave,
            "deadlines": {"signal_timeout": engine.config.signal_timeout,
                          "wave_timeout": engine.config.wave_timeout},
            "last_wave": wave_json(waves[-1], positions) if waves else None,
            "positions": open_positions,
        }

    def _live_position(self, position_id: int) -> dict[str, Any]:
        """A position's CLI shape plus what only the running engine knows (trailing, last price)."""
        engine = self.engine
        position = engine.book[position_id]
        shaped = position_json(position)
        view = engine.trailing.view(position_id)
        last = engine.trailing.last_price(position.symbol)
        shaped["trailing_state"] = view.state.value if view is not None else None
        shaped["best_price"] = view.best_price if view is not None else None
        shaped["last_price"] = last
        shaped["unrealized_pnl"] = (round(realized_pnl(position.side, position.entry_price, last, position.quantity), 6)
                                    if last is not None and position.entry_price is not None else None)
        return shaped

    async def _positions_of(self, records: list[WaveRecord]) -> dict[int, Position]:
        """The positions these waves' signals opened: the engine's view where it still keeps them,
        the store's for closed positions it no longer keeps in memory."""
        positions = {p.id: p for p in self.engine.positions(include_closed=True)}
        if any(o.position_id is not None and o.position_id not in positions for w in records for o in w.outcomes):
            stored = await self.engine.ctx.storage.positions(include_closed=True)
            positions = {**{p.id: p for p in stored}, **positions}
        return positions

    async def waves(self, last: int | None) -> dict[str, Any]:
        records = await self.engine.ctx.storage.waves(last=last)
        positions = await self._positions_of(records)
        return {"waves": [wave_json(w, positions) for w in records]}

    async def wave(self, wave_id: str) -> dict[str, Any]:
        record = await self.engine.ctx.storage.wave(wave_id)
        if record is None:
            raise NotFound(f"no wave {wave_id!r}")
        return wave_json(record, await self._positions_of([record]))

    async def positions(self, include_closed: bool) -> dict[str, Any]:
        live = {p.id: p for p in self.engine.positions(include_closed=include_closed)}
        if include_closed:  # history is the store's; the engine's view is newer for what it keeps
            stored = await self.engine.ctx.storage.positions(include_closed=True)
            live = {**{p.id: p for p in stored}, **live}
        rows = reportable_positions(live.values())
        return {"positions": [position_json(p) for p in rows]}

    async def _known(self, position_id: int) -> Position:
        position = self.engine.book.get(position_id)
        if position is None:  # closed long ago: only the store keeps it
            position = await self.engine.ctx.storage.position(position_id)
        if position is None:
            raise NotFound(f"no position {position_id}")
        return position

    async def position(self, position_id: int) -> dict[str, Any]:
        position = await self._known(position_id)
        if position.status is PositionStatus.OPEN and self.engine.book.get(position_id) is not None:
            return self._live_position(position_id)
        return position_json(position)

    async def events(self, *, wave_id: str | None = None, signal_id: str | None = None,
                     position_id: int | None = None, since: float | None = None) -> dict[str, Any]:
        found: list[Event] = await self.engine.ctx.storage.events(
            wave_id=wave_id, signal_id=signal_id, position_id=position_id, since=since)
        return {"events": [event_json(e) for e in found]}



    # --- actions ---

    async def pause(self, reason: str) -> dict[str, Any]:
        await self.engine.pause(reason)
        return await self.status()

    async def resume(self) -> dict[str, Any]:
        await self.engine.resume()
        return await self.status()

    def close_bound(self, request_timeout: float) -> float:
        """A close may take the whole shielded `cleanup_timeout`; the request waits that long."""
        return self.engine.config.cleanup_timeout + request_timeout

    async def close(self, position_id: int) -> dict[str, Any]:
        """Close an open position (reduce-only market, exit_reason `operator`); 409 if not open."""
        position = await self._known(position_id)
        if position.status is not PositionStatus.OPEN:
            raise Conflict(f"position {position_id} is {position.status.value}, not open")
        try:
            result = await self.engine.trailing.close(position_id)
        except LookupError:
            raise Conflict(f"position {position_id} has no stop yet (the sweep is protecting it); "
                           "try again shortly") from None
        if not result.closed:
            raise Failed(f"position {position_id} was not closed: {result.error}")
        return position_json(self.engine.book[position_id])

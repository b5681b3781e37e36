"""JSON shapes of waves and positions (SCENARIOS.md "Report" — a public contract).

Shared by `simulate`, `waves` and `positions` so the three can never drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.model import Event, Position, WaveRecord


def _num(value: float | None, digits: int = 10) -> float | None:
    return None if value is None else round(value, digits)


def position_json(p: Position) -> dict[str, Any]:
    return {
        "id": p.id,
        "signal_id": p.signal_id,
        "wave_id": p.wave_id,
        "symbol": p.symbol,
        "side": p.side.value,
        "status": p.status.value,
        "quantity": p.quantity,
        "entry_price": _num(p.entry_price),
        "stop_price": _num(p.stop_price),
        "exit_price": _num(p.exit_price),
        "exit_reason": p.exit_reason.value if p.exit_reason else None,
        "realized_pnl": _num(p.realized_pnl, 6),
        "trailing": p.trailing.value,
    }


def wave_json(record: WaveRecord, positions: Mapping[int, Position], *, virtual: bool = False) -> dict[str, Any]:
    """A wave with its counts; a signal's `trailing` is its position's current status.

    `at`: when the wave started, in wall-clock epoch seconds (`trio-bot waves --json`, the API);
    `virtual=True` (simulation reports) gives the scenario's virtual seconds instead."""
    signals = []
    for o in record.outcomes:
        position = positions.get(o.position_id) if o.position_id is not None else None
        trailing = position.trailing if position is not None and o.outcome == "opened" else o.trailing
        signals.append({
            "id": o.signal_id,
            "rank": o.rank,
            "symbol": o.symbol,
            "side": o.side,
            "score": o.score,
            "outcome": o.outcome.value,
            "reason": o.reason,
            "position_id": o.position_id,
            "trailing": trailing.value,
            # Set when the outcome was first reported provisionally ("being resolved") and the
            # resolver decided it later: wall-clock epoch seconds of that decision.
            "resolved_at": _num(o.resolved_at, 3),
        })
    c = record.counts
    return {
        "id": record.id,
        "at": round(record.at if virtual else record.started_at, 6),
        "duration": None if record.duration is None else round(record.duration, 6),
        "interrupted": record.interrupted,
        "counts": {
            "candidates": c.candidates, "rejected": c.rejected, "skipped": c.skipped,
            "attempted": c.attempted, "opened": c.opened, "failed": c.failed, "timed_out": c.timed_out,
        },
        "signals": signals,
    }


def reportable_positions(positions: Iterable[Position]) -> list[Position]:
    """Positions that ever held a fill; intents whose entry never filled stay in the store only."""
    return [p for p in sorted(positions, key=lambda p: p.id) if p.entry_price is not None]


def event_json(e: Event) -> dict[str, Any]:
    return {"at": e.at, "kind": e.kind, "wave_id": e.wave_id, "signal_id": e.signal_id,
            "position_id": e.position_id, "detail": e.detail}

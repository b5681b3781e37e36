"""Deterministic client order ids: the same position and step always give the same id,
so after a lost response the engine can ask the exchange what became of *that* order."""

from __future__ import annotations

import re

PREFIX = "tb"
_PATTERN = re.compile(r"^tb-(\d+)-(entry|stop\d+|close\d*)$")


def entry_id(position_id: int) -> str:
    return f"{PREFIX}-{position_id}-entry"


def stop_id(position_id: int, seq: int) -> str:
    """`seq` counts stop placements of the position: 1 is the initial stop-loss."""
    return f"{PREFIX}-{position_id}-stop{seq}"


def close_id(position_id: int, seq: int = 1) -> str:
    return f"{PREFIX}-{position_id}-close{seq}"


def position_of(client_order_id: str) -> int | None:
    """The position id an engine-made client order id belongs to, else None."""
    match = _PATTERN.match(client_order_id)
    return int(match.group(1)) if match else None

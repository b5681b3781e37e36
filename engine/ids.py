"""Deterministic client order ids: the same position and step always give the same id,
so after a lost response the engine can ask the exchange what became of *that* order."""

from __future__ import annotations

import re

from engine.model import OrderKind

PREFIX = "tb"
_PATTERN = re.compile(r"^tb-(\d+)-(entry|stop(\d+)|close\d*)$")


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


def kind_of(client_order_id: str) -> OrderKind | None:
    """The order kind an engine-made client id names; None for a foreign id.

    Exchanges keep conditional orders in their own book, so an adapter needs the kind
    before it can look an order up or cancel it by client id.
    """
    match = _PATTERN.match(client_order_id)
    if match is None:
        return None
    step = match.group(2)
    if step == "entry":
        return OrderKind.ENTRY
    return OrderKind.STOP if step.startswith("stop") else OrderKind.CLOSE


def stop_seq(client_order_id: str | None) -> int:
    """The placement count `stop_id` put into a stop's client id; 1 for anything else,
    so the next stop after a foreign or missing one is `stop2`."""
    match = _PATTERN.match(client_order_id or "")
    return int(match.group(3)) if match and match.group(3) else 1

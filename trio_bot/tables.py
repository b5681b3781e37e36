"""Plain-text tables for operators (the JSON shapes come from `engine.report`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from engine.model import Position
from engine.text import cut, printable

# Widest a cell may be; the last column (a reason, a detail) may run longer, since nothing
# follows it on the line.
CELL_MAX = 40
LAST_CELL_MAX = 200


class PrintableFormatter(logging.Formatter):
    """Log lines with control characters escaped and each message bounded: a symbol or a reason
    from outside cannot drive the terminal or flood it. Tracebacks keep their newlines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        original = record.message
        record.message = cut(printable(original), 4000)
        try:
            return super().formatMessage(record)
        finally:
            record.message = original


def cell(value: Any, limit: int = CELL_MAX) -> str:
    """One table cell: `-` for nothing, floats in short form, text escaped and cut to `limit`."""
    text = "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return cut(printable(text), limit)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    last = len(headers) - 1
    text = [[cell(v, LAST_CELL_MAX if i == last else CELL_MAX) for i, v in enumerate(row)] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in text]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def wave_table(wave: Mapping[str, Any], stops: Mapping[int, float | None]) -> str:
    """`stops`: current stop price per position id (from the engine, the store or a report)."""
    c = wave["counts"]
    head = (f"wave {cell(wave['id'])}: {c['opened']} opened, {c['failed']} failed, {c['timed_out']} timed out, "
            f"{c['skipped']} skipped, {c['rejected']} rejected of {c['candidates']}"
            + (f" in {wave['duration']:.2f}s" if wave.get("duration") is not None else "")
            + (" [INTERRUPTED: the engine stopped during this wave]" if wave.get("interrupted") else ""))
    rows = []
    for s in wave["signals"]:
        reason = s["reason"] or ""
        if s.get("resolved_at") is not None:  # decided after the wave reported it
            reason = f"(resolved {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(s['resolved_at']))}) {reason}"
        rows.append([s["id"], s["symbol"], s["side"], s["outcome"], s["position_id"],
                     stops.get(s["position_id"]), s["trailing"], reason])
    return head + "\n" + render_table(["signal", "symbol", "side", "outcome", "position", "stop", "trailing",
                                 "reason"], rows)


def positions_table(positions: Iterable[Position], trail: Mapping[int, tuple[str, float]] | None = None) -> str:
    """`trail`: position id → (follower state, best price), from the live trailing manager.

    Two columns, two meanings, named as in the JSON: `trailing` is the position's trailing
    registration (`pending` until stored, then `active`; the wave table's column and the
    `trailing` key), `trail state` is what its follower is doing (`waiting` for activation,
    `active` following the price: the API's `trailing_state`)."""
    trail = trail or {}
    rows = [[p.id, p.symbol, p.side.value, p.status.value, p.quantity, p.entry_price, p.stop_price,
             p.trailing.value, trail.get(p.id, (None, None))[0], trail.get(p.id, (None, None))[1],
             p.exit_price, p.exit_reason.value if p.exit_reason else None, p.realized_pnl]
            for p in positions]
    if not rows:
        return "no positions"
    return render_table(["id", "symbol", "side", "status", "qty", "entry", "stop", "trailing", "trail state", "best",
                         "exit", "exit reason", "pnl"], rows)


def grouped_notes(notes: Sequence[str]) -> list[str]:
    """Start-up account notes, one line per setting rather than per symbol: "BTCUSDT: cross, 5x"
    and "ETHUSDT: cross, 5x" become "cross, 5x: BTCUSDT, ETHUSDT" (fifty symbols, one line).
    Notes that are not per symbol stay as they are; each line keeps the place it first had."""
    order: list[tuple[str, str]] = []  # ("note", text) or ("setting", text)
    symbols: dict[str, list[str]] = {}
    for note in notes:
        symbol, sep, setting = note.partition(": ")
        if not (sep and symbol.isalnum() and symbol.isupper()):
            order.append(("note", note))
            continue
        if setting not in symbols:
            symbols[setting] = []
            order.append(("setting", setting))
        symbols[setting].append(symbol)
    return [text if kind == "note" else f"{text}: {', '.join(symbols[text])}" for kind, text in order]

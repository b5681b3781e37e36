"""`trio-bot export trades` and `trio-bot report`: the stored trades, for spreadsheets and other tools.

Columns follow Freqtrade's trade export where a column means the same thing
(`pair`, `is_short`, `open_date_utc`, `close_date_utc`, `open_rate`,
`close_rate`, `amount`, `stake_amount`, `profit_abs`, `profit_ratio`,
`exit_reason`, `enter_tag`), so tools written for it read these too; trio-bot
adds `trade_id`, `is_open` and `wave_id`. `pair` is the exchange symbol
(`BTCUSDT`), `enter_tag` the signal id, `stake_amount` the entry notional in
USDT (trio-bot sizes positions by notional), `profit_ratio` = profit / stake.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.model import Position, PositionStatus, Side
from engine.report import reportable_positions

COLUMNS = ("trade_id", "pair", "is_short", "is_open", "open_date_utc", "close_date_utc", "open_rate", "close_rate",
           "amount", "stake_amount", "profit_abs", "profit_ratio", "exit_reason", "enter_tag", "wave_id")


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def trade_row(p: Position) -> dict[str, Any]:
    stake = (p.entry_price or 0.0) * p.quantity
    closed = p.status is PositionStatus.CLOSED
    return {
        "trade_id": p.id,
        "pair": p.symbol,
        "is_short": p.side is Side.SHORT,
        "is_open": not closed,
        "open_date_utc": _iso(p.opened_at),
        "close_date_utc": _iso(p.closed_at) if closed else None,
        "open_rate": p.entry_price,
        "close_rate": p.exit_price if closed else None,
        "amount": p.quantity,
        "stake_amount": round(stake, 8),
        "profit_abs": None if p.realized_pnl is None else round(p.realized_pnl, 8),
        "profit_ratio": None if p.realized_pnl is None or not stake else round(p.realized_pnl / stake, 8),
        "exit_reason": p.exit_reason.value if p.exit_reason else None,
        "enter_tag": p.signal_id,
        "wave_id": p.wave_id,
    }


def trades(positions: Iterable[Position], since: float | None = None) -> list[dict[str, Any]]:
    """Every position that held a fill, oldest first; `since` (epoch seconds) filters by open time."""
    return [trade_row(p) for p in reportable_positions(positions)
            if since is None or (p.opened_at is not None and p.opened_at >= since)]


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps({"trades": rows}, indent=2)


def daily_report(positions: Iterable[Position], *, days: int, now: float) -> dict[str, Any]:
    """Per UTC day (by close time) for the last `days` days, newest first: trades closed, wins, win rate,
    realised PnL; plus the totals. A day without trades is listed with zeros."""
    today = datetime.fromtimestamp(now, UTC).date()
    first = today - timedelta(days=days - 1)
    by_day: dict[str, list[float]] = {str(first + timedelta(days=i)): [] for i in range(days)}
    for p in positions:
        if p.status is not PositionStatus.CLOSED or p.closed_at is None or p.realized_pnl is None:
            continue
        day = str(datetime.fromtimestamp(p.closed_at, UTC).date())
        if day in by_day:
            by_day[day].append(p.realized_pnl)
    rows: list[dict[str, Any]] = []
    for day in sorted(by_day, reverse=True):
        pnls = by_day[day]
        wins = sum(1 for x in pnls if x > 0)
        rows.append({"date": day, "trades": len(pnls), "wins": wins, "losses": len(pnls) - wins,
                     "win_rate": round(wins / len(pnls), 4) if pnls else None,
                     "realized_pnl": round(sum(pnls), 6)})
    total = sum(int(r["trades"]) for r in rows)
    wins = sum(int(r["wins"]) for r in rows)
    return {"days": rows, "total": {"trades": total, "wins": wins, "losses": total - wins,
                                    "win_rate": round(wins / total, 4) if total else None,
                                    "realized_pnl": round(sum(float(r["realized_pnl"]) for r in rows), 6)}}

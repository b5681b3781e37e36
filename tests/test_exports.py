"""`trio-bot export trades` (Freqtrade's column names) and `trio-bot report` (per day) from a stored database."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime

import trio

from adapters.sqlite_store import SQLiteStore
from engine.model import ExitReason, Position, PositionStatus, Side
from trio_bot.cli import main

NOW = time.time()
DAY = 86_400.0


def _store(tmp_path) -> str:
    def pos(pid, side, entry, exit_, pnl, opened, closed, status=PositionStatus.CLOSED, reason=ExitReason.STOP_LOSS):
        return Position(id=pid, signal_id=f"sig-{pid}", wave_id=f"w{pid}", symbol="BTCUSDT", side=side, status=status,
                        quantity=0.01, entry_client_id=f"tb-{pid}-entry", entry_price=entry, stop_price=entry * 0.98,
                        exit_price=exit_, exit_reason=reason if status is PositionStatus.CLOSED else None,
                        realized_pnl=pnl, opened_at=opened, closed_at=closed)

    rows = [
        pos(1, Side.LONG, 60_000.0, 61_200.0, 12.0, NOW - 3 * DAY, NOW - 3 * DAY + 60, reason=ExitReason.TRAILING_STOP),
        pos(2, Side.SHORT, 60_000.0, 61_200.0, -12.0, NOW - 3 * DAY, NOW - 3 * DAY + 90),
        pos(3, Side.LONG, 60_000.0, 60_600.0, 6.0, NOW - 100, NOW - 50, reason=ExitReason.OPERATOR),
        pos(4, Side.LONG, 60_000.0, None, None, NOW - 10, None, status=PositionStatus.OPEN),
        Position(id=5, signal_id="sig-5", wave_id="w5", symbol="ETHUSDT", side=Side.LONG,
                 status=PositionStatus.CLOSED, quantity=1.0, entry_client_id="tb-5-entry"),  # never filled
    ]
    db = tmp_path / "trades.db"

    async def write() -> None:
        store = await SQLiteStore.open(str(db))
        await store.write(rows)
        await store.aclose()

    trio.run(write)
    return f"sqlite:///{db}"


def test_trades_export_as_csv_and_json_with_freqtrade_columns(tmp_path, capsys):
    db = _store(tmp_path)
    assert main(["export", "trades", "--db", db]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["trade_id"] for r in rows] == ["1", "2", "3", "4"]  # the never-filled intent is no trade
    first = rows[0]
    assert first["pair"] == "BTCUSDT" and first["is_short"] == "False" and first["exit_reason"] == "trailing_stop"
    assert first["open_rate"] == "60000.0" and first["close_rate"] == "61200.0" and first["amount"] == "0.01"
    assert first["stake_amount"] == "600.0" and first["profit_abs"] == "12.0" and first["profit_ratio"] == "0.02"
    assert first["enter_tag"] == "sig-1" and first["wave_id"] == "w1"
    assert datetime.fromisoformat(first["open_date_utc"]).tzinfo is not None
    assert rows[1]["is_short"] == "True" and rows[2]["exit_reason"] == "operator"
    assert rows[3]["is_open"] == "True" and rows[3]["close_date_utc"] == "" and rows[3]["close_rate"] == ""

    since = datetime.fromtimestamp(NOW - DAY, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert main(["export", "trades", "--db", db, "--format", "json", "--since", since]) == 0
    trades = json.loads(capsys.readouterr().out)["trades"]
    assert [t["trade_id"] for t in trades] == [3, 4]
    assert trades[0]["profit_ratio"] == 0.01 and trades[1]["profit_abs"] is None

    assert main(["export", "trades", "--db", db, "--since", "last tuesday"]) == 2
    assert "--since = 'last tuesday': expected an ISO 8601 date" in capsys.readouterr().err


def test_daily_report_counts_closed_trades_win_rate_and_pnl(tmp_path, capsys):
    db = _store(tmp_path)
    assert main(["report", "--db", db, "--days", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["days"]) == 5
    today = report["days"][0]
    assert today["date"] == str(datetime.fromtimestamp(NOW, UTC).date())
    assert (today["trades"], today["wins"], today["win_rate"], today["realized_pnl"]) == (1, 1, 1.0, 6.0)
    three_days_ago = next(d for d in report["days"] if d["trades"] == 2)
    assert three_days_ago["win_rate"] == 0.5 and three_days_ago["realized_pnl"] == 0.0
    assert report["total"] == {"trades": 3, "wins": 2, "losses": 1, "win_rate": 0.6667, "realized_pnl": 6.0}
    assert main(["report", "--db", db, "--days", "1"]) == 0
    text = capsys.readouterr().out
    assert "win rate" in text and "100%" in text and "+6.0000" in text
    assert main(["report", "--db", db, "--days", "0"]) == 2

"""The operator's plain-text tables: one column name, one meaning, in every table and the JSON."""

from __future__ import annotations

from engine.model import Outcome, Position, PositionStatus, Side, SignalOutcome, TrailingStatus, WaveRecord
from engine.report import wave_json
from trio_bot.tables import positions_table, wave_table


def _column(table: str, header: str) -> list[str]:
    """The cells under `header`, read by the header's position (cells are left-aligned)."""
    lines = table.splitlines()
    head = next(i for i, line in enumerate(lines) if f" {header}" in f" {line}" and "---" in lines[i + 1])
    start = lines[head].index(header)
    widths = lines[head + 1][start:].split("  ")[0]
    return [line[start:start + len(widths)].strip() for line in lines[head + 2:]]


def test_trailing_means_the_same_in_the_wave_table_the_positions_table_and_the_json():
    saved = Position(1, "s1", "w1", "BTCUSDT", Side.LONG, PositionStatus.OPEN, 0.01, "tb-1-entry", entry_price=100.0,
                     stop_price=98.0, trailing=TrailingStatus.ACTIVE)
    unsaved = Position(2, "s2", "w1", "ETHUSDT", Side.SHORT, PositionStatus.OPEN, 0.1, "tb-2-entry",
                       entry_price=10.0, stop_price=10.2, trailing=TrailingStatus.PENDING)
    positions = {p.id: p for p in (saved, unsaved)}
    record = WaveRecord("w1", 0.0, 1_760_000_000.0, 1.0, tuple(
        SignalOutcome(p.signal_id, i, p.symbol, p.side.value, Outcome.OPENED, position_id=p.id,
                      trailing=p.trailing) for i, p in enumerate(positions.values())))
    shaped = wave_json(record, positions)
    followers = {1: ("active", 104.0), 2: ("waiting", 10.0)}  # the live followers: what each is doing

    in_json = [s["trailing"] for s in shaped["signals"]]
    in_waves = _column(wave_table(shaped, {1: 98.0, 2: 10.2}), "trailing")
    table = positions_table(positions.values(), followers)
    assert in_json == in_waves == _column(table, "trailing") == ["active", "pending"]
    # What the follower is doing is its own column, named as the API's `trailing_state`.
    assert _column(table, "trail state") == ["active", "waiting"]
    assert _column(table, "best") == ["104", "10"]


def test_account_notes_are_one_line_per_setting_not_per_symbol():
    from trio_bot.tables import grouped_notes

    notes = ["position mode: one-way", "BTCUSDT: cross, 5x", "ETHUSDT: margin ISOLATED -> CROSSED, cross, 5x",
             "SOLUSDT: cross, 5x", "1000PEPEUSDT: cross, 5x", "leverage brackets: loaded"]
    assert grouped_notes(notes) == [
        "position mode: one-way",
        "cross, 5x: BTCUSDT, SOLUSDT, 1000PEPEUSDT",
        "margin ISOLATED -> CROSSED, cross, 5x: ETHUSDT",
        "leverage brackets: loaded"]
    assert grouped_notes([]) == []

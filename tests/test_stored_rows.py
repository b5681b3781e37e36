"""A row corrupted outside trio-bot stops a read with one clear error naming table, row and column."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from adapters.records import POSITIONS
from adapters.sqlite_store import SQLiteStore
from engine.errors import StorageError
from engine.model import Event, Position, PositionStatus, Side, WaveRecord
from trio_bot.cli import main


def stored(path: Path) -> None:
    async def write() -> None:
        store = await SQLiteStore.open(str(path))
        await store.write([
            Position(id=7, signal_id="s1", wave_id="w1", symbol="BTCUSDT", side=Side.LONG,
                     status=PositionStatus.OPEN, quantity=0.01, entry_client_id="tb-7-entry", entry_price=50_000.0,
                     stop_price=49_000.0, opened_at=1_760_851_800.0),
            WaveRecord("w1", 12.5, 1_760_851_800.0, 2.0),
            Event(at=1_760_851_801.0, kind="position.opened", position_id=7, uid="u1"),
        ])
        await store.aclose()

    trio.run(write)


def corrupt(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(sql)


def read_positions(path: Path) -> list[Position]:
    async def read() -> list[Position]:
        store = await SQLiteStore.open(str(path))
        try:
            return await store.positions(include_closed=True)
        finally:
            await store.aclose()

    return trio.run(read)


@pytest.mark.parametrize(("value", "shown"), [
    ("'9e999'", "inf"),  # REAL infinity
    ("-50000.0", "-50000.0"),
    ("'fifty thousand'", "'fifty thousand'"),
    ("0", "0"),
    ("1e300", "1e+300"),
])
def test_a_corrupt_price_names_the_table_row_and_column(tmp_path, value, shown):
    path = tmp_path / "bot.db"
    stored(path)
    corrupt(path, f"UPDATE positions SET entry_price = CAST({value} AS REAL) WHERE id = 7"
            if value.startswith("'9e") else f"UPDATE positions SET entry_price = {value} WHERE id = 7")
    with pytest.raises(StorageError) as caught:
        read_positions(path)
    message = str(caught.value)
    assert message.startswith("unreadable row in positions (id = 7): column entry_price = ")
    assert shown in message and "expected a number in (0, 1e+12] or NULL" in message


def test_a_missing_optional_price_is_read_and_a_missing_quantity_is_refused(tmp_path):
    path = tmp_path / "bot.db"
    stored(path)
    corrupt(path, "UPDATE positions SET stop_price = NULL WHERE id = 7")
    assert read_positions(path)[0].stop_price is None
    # The schema has quantity NOT NULL; a row read from elsewhere (another store) may not.
    row = [7, "s1", "w1", "BTCUSDT", "long", "open", None, "tb-7-entry"] + [None] * (len(POSITIONS.fields) - 8)
    with pytest.raises(StorageError, match=r"positions \(id = 7\): column quantity = None: expected a number"):
        POSITIONS.decode(row)


@pytest.mark.parametrize(("sql", "expected"), [
    ("UPDATE waves SET at = -1 WHERE id = 'w1'", "waves (id = 'w1'): column at = -1"),
    ("UPDATE waves SET duration = 'NaN' WHERE id = 'w1'", "waves (id = 'w1'): column duration = 'NaN'"),
    ("UPDATE events SET position_id = 7.5", "events (uid = 'u1'): column position_id = 7.5: expected an integer"),
])
def test_other_tables_are_checked_too(tmp_path, capsys, sql, expected):
    path = tmp_path / "bot.db"
    stored(path)
    corrupt(path, sql)
    command = "events" if sql.startswith("UPDATE events") else "waves"
    code = main([command, "--db", f"sqlite:///{path}"])
    _, err = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("trio-bot: error: ") and expected in err


def test_the_positions_command_says_which_row_is_corrupt(tmp_path, capsys):
    path = tmp_path / "bot.db"
    stored(path)
    corrupt(path, "UPDATE positions SET quantity = CAST('-9e999' AS REAL) WHERE id = 7")
    code = main(["positions", "--db", f"sqlite:///{path}"])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert err == ("trio-bot: error: unreadable row in positions (id = 7): column quantity = -inf: "
                   "expected a number in [0, 1e+15]\n")

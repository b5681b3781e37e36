"""`waves`, `positions` and `events` only read: no migration, no write lock, clear schema messages;
`db migrate` reports a schema only after checking it is really there."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
import trio
import trio_asyncio
import triopg

from adapters.postgres_store import SCHEMA_VERSION as SCHEMA_VERSION_PG
from adapters.sqlite_store import SCHEMA_VERSION
from trio_bot.cli import main


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and err.count("\n") <= 1, err
    return code, out, err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def db(tmp_path, capsys) -> Path:
    path = tmp_path / "bot.db"
    assert main(["db", "migrate", "--db", f"sqlite:///{path}"]) == 0
    capsys.readouterr()
    return path


@pytest.mark.parametrize("command", ["waves", "positions", "events"])
def test_reading_an_unmigrated_database_changes_nothing_and_says_to_migrate(tmp_path, capsys, command):
    old = tmp_path / "old.db"
    sqlite3.connect(old).close()  # an empty file: no trio-bot schema at all
    before = digest(old)
    code, _, err = cli(capsys, command, "--db", f"sqlite:///{old}")
    assert code == 1 and f"schema version 0, older than this trio-bot's ({SCHEMA_VERSION})" in err
    assert "trio-bot db migrate" in err
    assert digest(old) == before
    with sqlite3.connect(old) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_reading_a_newer_schema_says_upgrade(db, capsys):
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    code, _, err = cli(capsys, "waves", "--db", f"sqlite:///{db}")
    assert code == 1 and f"schema version {SCHEMA_VERSION + 1}, newer than this trio-bot knows" in err


def test_a_missing_database_is_named_not_created(tmp_path, capsys):
    code, _, err = cli(capsys, "positions", "--db", f"sqlite:///{tmp_path / 'nope.db'}")
    assert code == 1 and "no database at" in err
    assert not (tmp_path / "nope.db").exists()


def test_reading_does_not_wait_behind_a_writer(db, capsys):
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a running engine in the middle of a write
        writer.execute("INSERT INTO waves (id, at, started_at) VALUES ('w1', 0, 0)")
        for command in ("waves", "positions", "events"):
            code, out, _ = cli(capsys, command, "--db", f"sqlite:///{db}")
            assert code == 0 and out.startswith("no ")  # the uncommitted wave is not seen, and no wait
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_db_migrate_notices_a_dropped_table(db, capsys):
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE signal_outcomes")
        conn.execute("ALTER TABLE orders DROP COLUMN fill_price")
    code, _, err = cli(capsys, "db", "migrate", "--db", f"sqlite:///{db}")
    assert code == 1 and f"records schema version {SCHEMA_VERSION}" in err
    assert "table 'orders' lacks column 'fill_price'" in err and "table 'signal_outcomes' is missing" in err
    code, _, err = cli(capsys, "waves", "--db", f"sqlite:///{db}")
    assert code == 1 and "table 'signal_outcomes' is missing" in err


def test_db_migrate_reports_the_verified_version(db, capsys):
    code, out, _ = cli(capsys, "db", "migrate", "--db", f"sqlite:///{db}")
    assert code == 0 and out.strip() == f"trio-bot: schema at version {SCHEMA_VERSION}"


def test_postgres_reads_are_read_only_and_name_an_old_schema(pg_url, capsys):
    """An empty database is not migrated by `waves`; after `db migrate` it reads, and a dropped
    table is named by both commands."""
    code, _, err = cli(capsys, "waves", "--db", pg_url)
    assert code == 1 and f"schema version 0, older than this trio-bot's ({SCHEMA_VERSION_PG})" in err
    code, _, err = cli(capsys, "positions", "--db", pg_url)
    assert code == 1 and "older" in err  # still nothing created by the first read
    code, out, _ = cli(capsys, "db", "migrate", "--db", pg_url)
    assert code == 0 and f"version {SCHEMA_VERSION_PG}" in out
    code, out, _ = cli(capsys, "waves", "--db", pg_url)
    assert code == 0 and out.strip() == "no waves"

    async def drop_a_table() -> None:
        async with trio_asyncio.open_loop(), triopg.connect(pg_url) as conn:
            await conn.execute("DROP TABLE events")

    trio.run(drop_a_table)
    for command in (["events"], ["db", "migrate"]):
        code, _, err = cli(capsys, *command, "--db", pg_url)
        assert code == 1 and "table 'events' is missing" in err

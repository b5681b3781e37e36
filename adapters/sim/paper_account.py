"""The paper account's disk: a small SQLite file next to the store (`trio-bot.db.paper.sqlite`),
written before any change of the paper exchange is acknowledged.

**What is durable when.** The paper exchange (`SimExchange`) hands every change (an order placed,
cancelled or filled, a stop triggered by a price move, a leverage change) to `PaperAccountFile.record`,
which commits it before the call that made it returns: before `place_order`/`cancel_order` answer,
and before a price move that filled a stop reaches any listener. So after kill -9 at any moment the
restarted paper exchange holds exactly what every caller was told, like a real exchange. Price moves
that fill nothing are not written each tick (a random walk moves twenty prices a second); prices ride
along with the next change, the end of each wave and the exit, so a restart may begin at slightly
older prices. That is harmless: a price that is not written triggered nothing.

**Why a file of its own, not the store's database.** The paper exchange plays the exchange, a system
of record apart from the engine's store; crash safety needs only "the exchange keeps a change before
it answers", which a file of its own gives. Sharing the store's transactions would let the two
commit together, which no real exchange offers, so crash recovery would be tested against an easier
world than the real one. The changes also come from synchronous code (a price tick fires a stop
inside `set_price`), while the store writes through an asynchronous, batching writer (and PostgreSQL
over the network): joining it would mean acknowledging before the change is kept, or blocking the
event loop on the network. A local SQLite file is written synchronously on the Trio thread in about
a millisecond (README: Performance), never waits behind the store's write lock, and is the same for
SQLite and PostgreSQL stores. One `run` per account (the lease) is its only writer.

**Durability.** WAL journal, `synchronous = FULL`: a commit is on disk before `record` returns, so
it survives kill -9 and also a power loss. A failed write raises `TransientError`; the exchange
keeps the change pending and answers no call until it is kept (see `SimAccount._commit`).

**Bounded.** The file holds the account (balance, next order id), one row per market for prices,
leverage and holdings, the resting orders, and the newest `KEEP_CLOSED_ORDERS` closed orders; older
ones are deleted as the exchange forgets them, so the file does not grow over months of waves.

**Bad files and the old format.** A file trio-bot did not write (another program's database, a
corrupt or truncated file, values out of range) stops `run` with one error naming it. A paper
account from an older trio-bot (`*.paper.json`, saved after each wave) is read once when no
SQLite account exists yet, written to the new file, and renamed `*.paper.json.migrated`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from adapters.db_url import parse_db_url
from adapters.sim.account_state import AccountChange, check_state, order_data
from adapters.sim.exchange import SimExchange
from adapters.sim.scenario import ExchangeSpec
from adapters.textfile import read_text
from engine.errors import ConfigError, TransientError
from engine.text import cut, printable

log = logging.getLogger(__name__)

KEEP_CLOSED_ORDERS = 1000  # about fifty waves of entries, stops and moves: far beyond any look-up
SCHEMA_VERSION = 1
SUFFIX = ".paper.sqlite"
LEGACY_SUFFIX = ".paper.json"

_SCHEMA = """
CREATE TABLE account (id INTEGER PRIMARY KEY CHECK (id = 1), balance REAL NOT NULL,
                      next_order_id INTEGER NOT NULL);
CREATE TABLE prices (symbol TEXT PRIMARY KEY, price REAL NOT NULL);
CREATE TABLE leverage (symbol TEXT PRIMARY KEY, leverage INTEGER NOT NULL);
CREATE TABLE holdings (symbol TEXT PRIMARY KEY, quantity REAL NOT NULL, entry_price REAL NOT NULL);
-- seq: the exchange's order number, i.e. placement order (resting stops fire in it).
CREATE TABLE orders (client_order_id TEXT PRIMARY KEY, exchange_order_id TEXT, seq INTEGER NOT NULL,
                     data TEXT NOT NULL);
CREATE INDEX orders_by_seq ON orders (seq);
"""


def paper_account_path(db_url: str) -> Path | None:
    """Where the paper account is kept: next to a SQLite store (`trio-bot.db.paper.sqlite`), or for
    PostgreSQL in the working directory, named after the database (`DBNAME.paper.sqlite`). None for
    an in-memory store: the paper account then lives as long as the process."""
    parsed = parse_db_url(db_url)
    if parsed.path is not None:
        return None if parsed.path == ":memory:" else Path(parsed.path + SUFFIX)
    name = urlsplit(db_url).path.strip("/") or "trio-bot"
    return Path(f"{cut(name.replace('/', '_'), 100)}{SUFFIX}")


def legacy_path(path: Path) -> Path:
    """The JSON file an older trio-bot kept the same account in."""
    return path.with_name(path.name.removesuffix(SUFFIX) + LEGACY_SUFFIX)


def _refused(path: Path, why: object, *, what: str = "written by trio-bot") -> ConfigError:
    return ConfigError("paper account", str(path),
                       f"a paper account file {what} ({cut(printable(str(why)), 120)}); move it away to "
                       "start a fresh paper account", where="run")


class PaperAccountFile:
    """The `Journal` of a paper `SimExchange`: one SQLite file, one transaction per change."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._conn = connection

    @classmethod
    def open(cls, path: Path) -> PaperAccountFile:
        """Open (or create) the file; one `ConfigError` naming it if it is not a paper account."""
        try:
            conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise _refused(path, exc, what="that can be created") from None
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise _refused(path, f"schema version {version}; this trio-bot knows {SCHEMA_VERSION}",
                               what="from this or an older trio-bot")
            if version == 0 and tables:
                raise _refused(path, "a SQLite database with other tables")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # The write-ahead log is folded back every 256 pages (1 MiB) and cut back to 1 MiB after.
            conn.execute("PRAGMA wal_autocheckpoint=256")
            conn.execute(f"PRAGMA journal_size_limit={1024 * 1024}")
            if version == 0:
                conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        except sqlite3.Error as exc:
            conn.close()
            raise _refused(path, exc) from None
        except ConfigError:
            conn.close()
            raise
        return cls(path, conn)

    def load(self) -> dict[str, Any] | None:
        """The account in `export_state` shape, or None if the file holds none yet."""
        conn = self._conn
        try:
            row = conn.execute("SELECT balance, next_order_id FROM account WHERE id = 1").fetchone()
            if row is None:
                return None
            state = {
                "balance": row[0], "next_order_id": row[1],
                "prices": dict(conn.execute("SELECT symbol, price FROM prices").fetchall()),
                "leverage": dict(conn.execute("SELECT symbol, leverage FROM leverage").fetchall()),
                "holdings": {s: [q, e] for s, q, e in conn.execute(
                    "SELECT symbol, quantity, entry_price FROM holdings")},
                "orders": [json.loads(data) for (data,) in conn.execute(
                    "SELECT data FROM orders ORDER BY seq, rowid")],
            }
            return check_state(state)
        except (sqlite3.Error, ValueError, TypeError, RecursionError) as exc:
            raise _refused(self.path, exc) from None

    def replace(self, state: dict[str, Any]) -> None:
        """Write the whole account (`export_state` output), replacing what the file held."""
        def write() -> None:
            self._conn.execute("DELETE FROM prices")  # markets no longer listed go with their prices
            self._conn.execute("DELETE FROM orders")
            self._write_small(state["balance"], state["next_order_id"], state["prices"], state["leverage"],
                              {s: (q, e) for s, (q, e) in state["holdings"].items()})
            self._conn.executemany(
                "INSERT INTO orders (client_order_id, exchange_order_id, seq, data) VALUES (?, ?, ?, ?)",
                [_order_row(o) for o in state["orders"]])

        self._transaction(write)

    def record(self, change: AccountChange) -> None:
        """Keep one change, committed before returning (the `Journal` contract)."""
        def write() -> None:
            self._write_small(change.balance, change.next_order_id, change.prices, change.leverage,
                              change.holdings)
            self._conn.executemany(
                "INSERT OR REPLACE INTO orders (client_order_id, exchange_order_id, seq, data) VALUES (?, ?, ?, ?)",
                [_order_row(order_data(o)) for o in change.orders])
            self._conn.executemany("DELETE FROM orders WHERE client_order_id = ? AND exchange_order_id IS ?",
                                   change.forgotten)

        self._transaction(write)

    def close(self) -> None:
        self._conn.close()

    def _write_small(self, balance: float, next_order_id: int, prices: Any, leverage: Any, holdings: Any) -> None:
        conn = self._conn
        conn.execute("INSERT OR REPLACE INTO account (id, balance, next_order_id) VALUES (1, ?, ?)",
                     (balance, next_order_id))
        conn.executemany("INSERT OR REPLACE INTO prices (symbol, price) VALUES (?, ?)", prices.items())
        conn.execute("DELETE FROM leverage")
        conn.executemany("INSERT INTO leverage (symbol, leverage) VALUES (?, ?)", leverage.items())
        conn.execute("DELETE FROM holdings")
        conn.executemany("INSERT INTO holdings (symbol, quantity, entry_price) VALUES (?, ?, ?)",
                         [(s, q, e) for s, (q, e) in holdings.items()])

    def _transaction(self, write: Any) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                write()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            raise TransientError(f"paper account {self.path} not saved: {exc}") from None


def _order_row(data: dict[str, Any]) -> tuple[str, str | None, int, str]:
    exchange_id = data.get("exchange_order_id")
    seq = int(exchange_id) if isinstance(exchange_id, str) and exchange_id.isdigit() else 0
    return data["client_order_id"], exchange_id, seq, json.dumps(data)


def _import(exchange: SimExchange, state: dict[str, Any], path: Path) -> None:
    try:
        exchange.import_state(state)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _refused(path, exc) from None


def _read_legacy(path: Path) -> dict[str, Any]:
    text = read_text(path, key="paper account", where="run", what="paper account file")
    try:
        return check_state(json.loads(text))
    except (ValueError, RecursionError) as exc:
        raise _refused(path, exc) from None


@contextlib.contextmanager
def open_paper_exchange(spec: ExchangeSpec, db_url: str) -> Iterator[SimExchange]:
    """The paper exchange of `run`, restored from its file and kept in it change by change.

    The file is rewritten whole once at start (bounding it, dropping markets no longer listed),
    then every change is recorded as it happens; prices are saved again at exit."""
    exchange = SimExchange.from_spec(spec, history=KEEP_CLOSED_ORDERS)
    path = paper_account_path(db_url)
    if path is None:
        yield exchange
        return
    account = PaperAccountFile.open(path)
    try:
        state, source = account.load(), path
        old = legacy_path(path)
        if state is None and old.exists():
            state, source = _read_legacy(old), old
        if state is not None:
            _import(exchange, state, source)
        try:
            account.replace(exchange.export_state())
        except TransientError as exc:
            raise _refused(path, exc, what="that can be written") from None
        if source is old:
            try:
                old.replace(old.with_name(old.name + ".migrated"))
            except OSError as exc:  # harmless: the SQLite account is read from now on
                log.warning("could not rename %s after reading it: %s", old, exc.strerror or exc)
        exchange.attach_journal(account)
        try:
            yield exchange
        finally:
            exchange.sync()  # prices as of the exit; a failure is logged
    finally:
        account.close()

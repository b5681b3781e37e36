"""The paper account is kept change by change: a crash at any moment and a restart give the account
every caller was told about (a stop filled between waves stays filled), bounded on disk.

A crash is simulated by copying the account's files (the SQLite file and its write-ahead log) while
the exchange is still running, without the after-wave or exit save: the copy is what kill -9
leaves on disk. tests/test_crash_paper.py does the same with real SIGKILLs of `trio-bot run`.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from adapters.sim import paper_account
from adapters.sim.account_state import AccountChange
from adapters.sim.exchange import SimExchange
from adapters.sim.faults import FaultPlan
from adapters.sim.paper_account import PaperAccountFile, open_paper_exchange, paper_account_path
from adapters.sim.scenario import ExchangeSpec, FaultSpec, MarketSpec
from engine import ids
from engine.errors import ConfigError, TransientError
from engine.model import OrderKind, OrderRequest, OrderSide, OrderStatus

SPEC = ExchangeSpec(balance_usdt=10_000.0, latency=0.05, markets=(
    MarketSpec("FORMUSDT", 0.8, tick_size=0.0001, step_size=1.0), MarketSpec("BTCUSDT", 50_000.0)))


def entry(side: OrderSide, qty: float, pid: int = 1, symbol: str = "FORMUSDT") -> OrderRequest:
    return OrderRequest(symbol, side, OrderKind.ENTRY, qty, ids.entry_id(pid))


def stop(side: OrderSide, qty: float, price: float, pid: int = 1, seq: int = 1,
         symbol: str = "FORMUSDT") -> OrderRequest:
    return OrderRequest(symbol, side, OrderKind.STOP, qty, ids.stop_id(pid, seq), price)


def url(folder: Path) -> str:
    return f"sqlite:///{folder / 'bot.db'}"


def crash_image(source: Path, name: str) -> Path:
    """The paper account's files as kill -9 would leave them now, in a new folder; its store URL."""
    target = source / name
    target.mkdir()
    file = paper_account_path(url(source))
    assert file is not None and file.exists()
    for suffix in ("", "-wal"):
        part = Path(str(file) + suffix)
        if part.exists():
            shutil.copy(part, target / (part.name))
    return target


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path


def reopened(folder: Path) -> dict[str, Any]:
    with open_paper_exchange(SPEC, url(folder)) as exchange:
        return exchange.export_state()


async def test_a_stop_filled_between_waves_stays_filled_after_a_crash(folder: Path,
                                                                      autojump_clock: trio.abc.Clock) -> None:
    with open_paper_exchange(SPEC, url(folder)) as exchange:
        await exchange.place_order(entry(OrderSide.BUY, 100))
        await exchange.place_order(stop(OrderSide.SELL, 100, 0.75))
        exchange.sync()  # the wave ends: the old format saved here, and only here
        exchange.set_price("FORMUSDT", 0.74)  # between waves: the stop fills
        assert exchange.positions_snapshot() == []
        image = crash_image(folder, "killed")  # kill -9 before the next wave's save
        expected = exchange.export_state()
    with open_paper_exchange(SPEC, url(image)) as restarted:
        assert restarted.positions_snapshot() == []  # not resurrected
        assert restarted.open_orders_snapshot() == []
        filled = restarted.order(ids.stop_id(1, 1))
        assert filled is not None and filled.status is OrderStatus.FILLED and filled.average_price == 0.74
        assert restarted.wallet_balance == pytest.approx(10_000.0 - 100 * (0.8 - 0.74))
        assert restarted.export_state() == expected


async def test_every_kind_of_change_is_kept_before_the_call_returns(folder: Path,
                                                                     autojump_clock: trio.abc.Clock) -> None:
    """After each change, the disk image alone restores exactly the live account."""
    steps = []
    with open_paper_exchange(SPEC, url(folder)) as exchange:
        async def change(name: str, step: Any) -> None:
            result = step()
            if hasattr(result, "__await__"):
                await result
            steps.append((crash_image(folder, name), exchange.export_state()))

        await change("leverage", lambda: exchange.set_leverage("BTCUSDT", 5))
        await change("entry", lambda: exchange.place_order(entry(OrderSide.SELL, 0.1, pid=2, symbol="BTCUSDT")))
        await change("stop", lambda: exchange.place_order(
            stop(OrderSide.BUY, 0.1, 51_000.0, pid=2, symbol="BTCUSDT")))
        await change("moved", lambda: exchange.place_order(
            stop(OrderSide.BUY, 0.1, 50_500.0, pid=2, seq=2, symbol="BTCUSDT")))
        await change("cancel", lambda: exchange.cancel_order("BTCUSDT", ids.stop_id(2, 1)))
        await change("triggered", lambda: exchange.set_price("BTCUSDT", 50_600.0))
    assert [state["holdings"] for _, state in steps][1:] == [{"BTCUSDT": [-0.1, 50_000.0]}] * 4 + [{}]
    for image, state in steps:
        assert reopened(image) == state, image.name


async def test_a_change_the_caller_never_heard_of_is_kept_too(folder: Path, autojump_clock: trio.abc.Clock) -> None:
    """A lost response: the exchange applied the entry and the caller never heard back; the disk
    holds the entry, so the engine's look-up after a restart finds it."""
    faults = FaultPlan([FaultSpec(point="exchange.entry_order", effect="lost_response")])
    exchange = SimExchange.from_spec(SPEC, faults=faults)
    account = PaperAccountFile.open(folder / "bot.db.paper.sqlite")
    try:
        account.replace(exchange.export_state())
        exchange.attach_journal(account)
        with trio.move_on_after(5):
            await exchange.place_order(entry(OrderSide.BUY, 100))
            pytest.fail("the response was meant to be lost")
        image = crash_image(folder, "killed")
    finally:
        account.close()
    assert reopened(image)["holdings"] == {"FORMUSDT": [100.0, 0.8]}


async def test_price_moves_that_fill_nothing_are_kept_with_the_next_change(folder: Path) -> None:
    with open_paper_exchange(SPEC, url(folder)) as exchange:
        exchange.set_price("FORMUSDT", 0.81)
        assert reopened(crash_image(folder, "tick"))["prices"]["FORMUSDT"] == 0.8  # not every tick
        exchange.sync()  # end of a wave
        assert reopened(crash_image(folder, "wave"))["prices"]["FORMUSDT"] == 0.81
        exchange.set_price("FORMUSDT", 0.82)
    assert reopened(folder)["prices"]["FORMUSDT"] == 0.82  # and at exit


async def test_the_file_keeps_resting_orders_and_a_bounded_past(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                                autojump_clock: trio.abc.Clock) -> None:
    monkeypatch.setattr(paper_account, "KEEP_CLOSED_ORDERS", 5)
    with open_paper_exchange(SPEC, url(folder)) as exchange:
        await exchange.place_order(entry(OrderSide.BUY, 100))
        await exchange.place_order(stop(OrderSide.SELL, 100, 0.5, seq=1))
        for seq in range(2, 40):  # a trailing stop moved 38 times: place the new one, cancel the old
            await exchange.place_order(stop(OrderSide.SELL, 100, 0.5 + seq / 1000, seq=seq))
            await exchange.cancel_order("FORMUSDT", ids.stop_id(1, seq - 1))
        live = exchange.export_state()
        file = paper_account_path(url(folder))
        assert file is not None
        with sqlite3.connect(file) as conn:
            ids_on_disk = [row[0] for row in conn.execute("SELECT client_order_id FROM orders ORDER BY seq")]
    assert ids_on_disk == [ids.stop_id(1, s) for s in range(34, 40)]  # five cancelled + the resting one
    assert [o["client_order_id"] for o in live["orders"]] == ids_on_disk  # memory is bounded alike
    assert reopened(folder)["orders"] == live["orders"]


class FlakyJournal:
    def __init__(self) -> None:
        self.failing = False
        self.kept: list[AccountChange] = []

    def record(self, change: AccountChange) -> None:
        if self.failing:
            raise TransientError("disk full")
        self.kept.append(change)


async def test_a_change_that_cannot_be_kept_is_not_acknowledged(autojump_clock: trio.abc.Clock) -> None:
    exchange = SimExchange.from_spec(SPEC)
    journal = FlakyJournal()
    exchange.attach_journal(journal)
    journal.failing = True
    with pytest.raises(TransientError):
        await exchange.place_order(entry(OrderSide.BUY, 100))
    with pytest.raises(TransientError):  # no answers while the change is not kept
        await exchange.fetch_positions()
    journal.failing = False
    assert [p.quantity for p in await exchange.fetch_positions()] == [100]
    assert [o.client_order_id for o in journal.kept[-1].orders] == [ids.entry_id(1)]  # kept late, not lost


async def test_an_old_json_account_is_read_once_and_replaced(folder: Path, autojump_clock: trio.abc.Clock) -> None:
    old = SimExchange.from_spec(SPEC)
    await old.place_order(entry(OrderSide.BUY, 100))
    await old.place_order(stop(OrderSide.SELL, 100, 0.75))
    (folder / "bot.db.paper.json").write_text(json.dumps(old.export_state()))
    assert reopened(folder) == old.export_state()
    assert not (folder / "bot.db.paper.json").exists() and (folder / "bot.db.paper.json.migrated").exists()
    assert reopened(folder) == old.export_state()  # now from the SQLite file


def corrupt_values(file: Path) -> None:
    with sqlite3.connect(file) as conn:
        conn.execute("UPDATE prices SET price = -1 WHERE symbol = 'BTCUSDT'")


def other_program(file: Path) -> None:
    file.unlink()
    with sqlite3.connect(file) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")


def garbage(file: Path) -> None:
    file.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)


def newer(file: Path) -> None:
    with sqlite3.connect(file) as conn:
        conn.execute("PRAGMA user_version = 99")


@pytest.mark.parametrize("damage", [corrupt_values, other_program, garbage, newer])
def test_a_file_that_is_not_a_paper_account_stops_run_naming_it(folder: Path, damage: Any) -> None:
    with open_paper_exchange(SPEC, url(folder)):
        pass
    file = paper_account_path(url(folder))
    assert file is not None
    for suffix in ("-wal", "-shm"):
        Path(str(file) + suffix).unlink(missing_ok=True)
    damage(file)
    with pytest.raises(ConfigError) as caught, open_paper_exchange(SPEC, url(folder)):
        pass
    message = str(caught.value)
    assert str(file) in message and "move it away" in message


def test_where_the_account_is_kept() -> None:
    assert paper_account_path("sqlite:///data/bot.db") == Path("data/bot.db.paper.sqlite")
    assert paper_account_path("sqlite:///:memory:") is None
    assert paper_account_path("postgresql://u:secret@db:5432/trading") == Path("trading.paper.sqlite")


def test_a_new_file_holds_no_account_until_the_exchange_writes_it(folder: Path) -> None:
    first = PaperAccountFile.open(folder / "x.paper.sqlite")
    try:
        assert first.load() is None
    finally:
        first.close()


@pytest.mark.parametrize("configured", [None, 30.0], ids=["paper-default", "config-sets-it"])
async def test_a_paper_restart_believes_an_entry_it_does_not_hold_never_reached_it(autojump_clock, tmp_path,
                                                                                  configured):
    # The paper exchange commits an order before answering: after kill -9, an intent whose entry
    # it does not hold was never executed. With a real exchange's minute of look-ups the
    # restart's Ctrl-C would wait out that minute for nothing.
    import time

    import attrs

    from adapters.sqlite_store import SQLiteStore
    from tests.test_restart import SPEC, intent
    from trio_bot import Engine
    from trio_bot.run import TradingAccount, engine_config_for, load_run_config

    settings = load_run_config(None)
    if configured is not None:
        settings = attrs.evolve(settings, engine=attrs.evolve(settings.engine, unknown_outcome_window=configured),
                                engine_keys=frozenset({"unknown_outcome_window"}))
    exchange = SimExchange.from_spec(SPEC)
    config = await engine_config_for(settings, TradingAccount(exchange, "paper exchange", []))
    assert config.unknown_outcome_window == (0.0 if configured is None else configured)
    store = await SQLiteStore.open(str(tmp_path / "bot.db"))
    position, order = intent(1, "FORMUSDT", 245.0)
    await store.record_intent(position, attrs.evolve(order, updated_at=time.time()))  # stored just now
    started = trio.current_time()
    async with Engine.open(attrs.evolve(config, sweep_interval=0), exchange, store) as engine:
        found = engine.summary.lines()[0]
    took = trio.current_time() - started
    if configured is None:
        assert found.startswith("1 unfinished opens reconciled: 0 opened and protected, 1 never executed")
        assert took < 1.0
    else:  # left to the resolver, which the shutdown waits for until the window has passed
        assert found.startswith("1 unfinished opens reconciled: 0 opened and protected, 0 never executed")
        assert took >= configured - 1.0
    assert exchange.positions_snapshot() == []
    await store.aclose()

"""How engine records map to rows: one definition for every SQL store.

Columns are named as the attrs fields, enums are stored as their values. SQL
text is generated per dialect (`?` placeholders for SQLite, `$n` for
PostgreSQL); both dialects share `ON CONFLICT` upserts.

Rows read back are checked before they become records: enums must be known
values, and every number (prices, quantities, times, ids) a finite number
inside its range (`STORED`), so a row corrupted by hand, by a disk or by another
program stops a read with one `StorageError` naming the table, the row and the
column, instead of an `inf` stop price or a string quantity surfacing mid-run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

import attrs

from engine.checks import Range, integer, positive_up_to
from engine.errors import StorageError
from engine.model import (
    Event,
    ExitReason,
    HandledSignal,
    OrderKind,
    OrderRecord,
    OrderSide,
    OrderStatus,
    Outcome,
    OutcomeResolved,
    Position,
    PositionStatus,
    Side,
    SignalOutcome,
    TrailingRecord,
    TrailingStatus,
    WaveOutcome,
    WaveRecord,
)
from engine.text import shown

T = TypeVar("T")


class _Migratable(Protocol):
    async def migrate(self) -> None: ...

    async def aclose(self) -> None: ...


M = TypeVar("M", bound=_Migratable)


async def migrated(store: M) -> M:
    """`store` with its schema brought up to date; closed again if that fails."""
    try:
        await store.migrate()
    except BaseException:
        await store.aclose()
        raise
    return store


def q(name: str) -> str:
    """Quote an identifier: `trailing` is a reserved word in PostgreSQL."""
    return f'"{name}"'


def placeholders(dialect: str, count: int) -> str:
    if dialect == "sqlite":
        return ", ".join("?" * count)
    return ", ".join(f"${i}" for i in range(1, count + 1))


@attrs.frozen
class Table(Generic[T]):
    """One record type ↔ one table. `extra` columns (the wave id of an outcome) come first."""

    name: str
    cls: Callable[..., T]
    fields: tuple[str, ...]
    key: tuple[str, ...]
    enums: Mapping[str, type[Enum]] = attrs.field(factory=dict)
    extra: tuple[str, ...] = ()
    # Numeric columns: (accepted range, whether NULL is allowed).
    numbers: Mapping[str, tuple[Range, bool]] = attrs.field(factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.extra + self.fields

    def select(self) -> str:
        return f"SELECT {', '.join(map(q, self.fields))} FROM {q(self.name)}"

    def insert(self, dialect: str, *, ignore_duplicates: bool = False) -> str:
        return _sql(self.name, self.columns, self.key, dialect, "insert-ignore" if ignore_duplicates else "insert")

    def upsert(self, dialect: str) -> str:
        return _sql(self.name, self.columns, self.key, dialect, "upsert")

    def encode(self, record: Any, *extra: object) -> tuple[object, ...]:
        values = (getattr(record, f) for f in self.fields)
        return (*extra, *(v.value if isinstance(v, Enum) else v for v in values))

    def decode(self, row: Sequence[Any]) -> T:
        try:
            values = dict(zip(self.fields, row, strict=True))
        except ValueError:
            raise StorageError(f"unreadable row in {self.name}: {len(row)} columns, expected "
                               f"{len(self.fields)}") from None
        for name, (accepted, nullable) in self.numbers.items():
            value = values[name]
            if value is None and nullable:
                continue
            if not accepted.contains(value):
                expected = accepted.describe() + (" or NULL" if nullable else "")
                raise StorageError(f"unreadable row in {self.name} ({self._which(values)}): column {name} = "
                                   f"{shown(value, 60)}: expected {expected}")
        try:
            for name, enum in self.enums.items():
                if values[name] is not None:
                    values[name] = enum(values[name])
            return self.cls(**values)
        except (ValueError, TypeError) as exc:
            raise StorageError(f"unreadable row in {self.name} ({self._which(values)}): {exc}") from None

    def _which(self, values: Mapping[str, Any]) -> str:
        """The row's key, as far as this table's fields hold it (`id = 7`)."""
        return ", ".join(f"{k} = {shown(values[k], 60)}" for k in self.key if k in values) or "no key"


@functools.cache
def _sql(name: str, cols: tuple[str, ...], key: tuple[str, ...], dialect: str, kind: str) -> str:
    """Statement text, built once per table, dialect and kind (it is on every write's path)."""
    sql = f"INSERT INTO {q(name)} ({', '.join(map(q, cols))}) VALUES ({placeholders(dialect, len(cols))})"
    if kind == "insert-ignore":
        return sql + " ON CONFLICT DO NOTHING"
    if kind == "upsert":
        updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in cols if c not in key)
        return f"{sql} ON CONFLICT ({', '.join(map(q, key))}) DO UPDATE SET {updates}"
    return sql


def _fields(cls: type, *, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(f.name for f in attrs.fields(cls) if f.name not in without)


class STORED:
    """What a stored number may be. Far wider than anything the engine writes (an exchange's
    prices and sizes, epoch seconds, Trio's clock), narrow enough to exclude what no trade has:
    NaN, infinities, negative prices, 1e308, a quantity stored as text."""

    ID = integer(0, 2**63 - 1)  # ids, ranks
    PRICE = positive_up_to(1e12)
    QUANTITY = Range(0.0, 1e15)
    AMOUNT = Range(-1e15, 1e15)  # realized PnL in the quote currency
    TIME = Range(0.0, 1e11)  # epoch seconds (until the year 5138), Trio's clock, durations
    PERCENT = Range(0.0, 100.0)
    SCORE = Range(-1e12, 1e12)


_PRICE, _QTY, _TIME, _ID = (STORED.PRICE, False), (STORED.QUANTITY, False), (STORED.TIME, False), (STORED.ID, False)
_MAYBE_PRICE, _MAYBE_TIME = (STORED.PRICE, True), (STORED.TIME, True)

POSITIONS = Table("positions", Position, _fields(Position), ("id",), {
    "side": Side, "status": PositionStatus, "exit_reason": ExitReason, "trailing": TrailingStatus},
    numbers={"id": _ID, "quantity": _QTY, "entry_price": _MAYBE_PRICE, "stop_price": _MAYBE_PRICE,
             "exit_price": _MAYBE_PRICE, "realized_pnl": (STORED.AMOUNT, True), "opened_at": _MAYBE_TIME,
             "closed_at": _MAYBE_TIME})
ORDERS = Table("orders", OrderRecord, _fields(OrderRecord), ("client_order_id",), {
    "kind": OrderKind, "side": OrderSide, "status": OrderStatus},
    numbers={"position_id": _ID, "quantity": _QTY, "stop_price": _MAYBE_PRICE, "fill_price": _MAYBE_PRICE,
             "updated_at": _TIME})
TRAILING = Table("trailing", TrailingRecord, _fields(TrailingRecord), ("position_id",), {"side": Side},
                 numbers={"position_id": _ID, "entry_price": _PRICE, "activation_price": _PRICE,
                          "callback_percent": (STORED.PERCENT, False), "best_price": _PRICE,
                          "stop_price": _PRICE, "updated_at": _TIME})
WAVES = Table("waves", WaveRecord, _fields(WaveRecord, without=("outcomes",)), ("id",),
              numbers={"at": _TIME, "started_at": _TIME, "duration": _MAYBE_TIME})
OUTCOMES = Table("signal_outcomes", SignalOutcome, _fields(SignalOutcome), ("wave_id", "signal_id", "rank"),
                 {"outcome": Outcome, "trailing": TrailingStatus}, extra=("wave_id",),
                 numbers={"rank": _ID, "position_id": (STORED.ID, True), "score": (STORED.SCORE, True)})
EVENTS = Table("events", Event, _fields(Event), ("uid",),
               numbers={"at": _TIME, "position_id": (STORED.ID, True)})
HANDLED = Table("handled_signals", HandledSignal, _fields(HandledSignal), ("signal_id",), {"outcome": Outcome},
                numbers={"rank": _ID, "handled_at": _TIME})


def handled_outcome_sql(dialect: str) -> str:
    """Write a signal's outcome back onto its claim (only the copy the claiming wave attempted)."""
    p = ["?"] * 4 if dialect == "sqlite" else [f"${i}" for i in range(1, 5)]
    return (f"UPDATE handled_signals SET outcome = {p[0]} "
            f"WHERE signal_id = {p[1]} AND wave_id = {p[2]} AND rank = {p[3]}")


def resolved_outcome_sql(dialect: str) -> tuple[str, str]:
    """Update one signal's stored outcome once its entry's unknown outcome is resolved.

    The row is found by wave and position (only the attempted copy of an id has a position);
    the claim in `handled_signals` gets the new outcome too.
    """
    p = ["?"] * 6 if dialect == "sqlite" else [f"${i}" for i in range(1, 7)]
    outcome = (f"UPDATE signal_outcomes SET outcome = {p[0]}, reason = {p[1]}, {q('trailing')} = {p[2]}, "
               f"resolved_at = {p[3]} WHERE wave_id = {p[4]} AND position_id = {p[5]}")
    c = ["?"] * 3 if dialect == "sqlite" else [f"${i}" for i in range(1, 4)]
    claim = f"UPDATE handled_signals SET outcome = {c[0]} WHERE signal_id = {c[1]} AND wave_id = {c[2]}"
    return outcome, claim


def _claim_row(wave_id: str, outcome: SignalOutcome) -> tuple[object, ...]:
    return (outcome.outcome.value, outcome.signal_id, wave_id, outcome.rank)


def write_plan(dialect: str, records: Sequence[object]) -> list[tuple[str, list[tuple[object, ...]]]]:
    """The statements that store a batch, in order: (sql, rows) pairs, consecutive rows merged.

    Outcomes are upserted, never replaced wholesale: a wave stored with the
    outcomes known so far keeps those its children stored since. Events are
    appended, and a retried batch (after a lost answer) does not append twice.
    Every stored outcome is also written back onto its signal id's claim
    (`handled_signals`), so the memory of handled ids says how each one ended.
    """
    plan: list[tuple[str, list[tuple[object, ...]]]] = []

    def add(sql: str, row: tuple[object, ...]) -> None:
        if plan and plan[-1][0] == sql:
            plan[-1][1].append(row)
        else:
            plan.append((sql, [row]))

    for record in records:
        if isinstance(record, Position):
            add(POSITIONS.upsert(dialect), POSITIONS.encode(record))
        elif isinstance(record, OrderRecord):
            add(ORDERS.upsert(dialect), ORDERS.encode(record))
        elif isinstance(record, TrailingRecord):
            add(TRAILING.upsert(dialect), TRAILING.encode(record))
        elif isinstance(record, WaveRecord):
            add(WAVES.upsert(dialect), WAVES.encode(record))
            for outcome in record.outcomes:
                add(OUTCOMES.upsert(dialect), OUTCOMES.encode(outcome, record.id))
            for outcome in record.outcomes:
                add(handled_outcome_sql(dialect), _claim_row(record.id, outcome))
        elif isinstance(record, WaveOutcome):
            add(OUTCOMES.upsert(dialect), OUTCOMES.encode(record.outcome, record.wave_id))
            add(handled_outcome_sql(dialect), _claim_row(record.wave_id, record.outcome))
        elif isinstance(record, OutcomeResolved):
            outcome_sql, claim_sql = resolved_outcome_sql(dialect)
            add(outcome_sql, (record.outcome.value, record.reason, record.trailing.value, record.resolved_at,
                              record.wave_id, record.position_id))
            add(claim_sql, (record.outcome.value, record.signal_id, record.wave_id))
        elif isinstance(record, Event):
            add(EVENTS.insert(dialect, ignore_duplicates=True), EVENTS.encode(record))
        elif isinstance(record, SignalOutcome):
            raise TypeError("a SignalOutcome needs its wave: write it as WaveOutcome(wave_id, outcome)")
        else:
            raise TypeError(f"cannot store a {type(record).__name__}")
    return plan


def events_query(dialect: str, *, wave_id: str | None = None, signal_id: str | None = None,
                 position_id: int | None = None, since: float | None = None) -> tuple[str, list[object]]:
    """The timeline filtered (all filters combine with AND), oldest first.

    A wave's events are its own (`wave_id`) and those of its signals and their
    positions: the opener's steps carry a signal id, the trailing saves only a
    position id.
    """
    conditions: list[str] = []
    args: list[object] = []

    def arg(value: object) -> str:
        args.append(value)
        return "?" if dialect == "sqlite" else f"${len(args)}"

    if wave_id is not None:
        w = arg(wave_id)
        w2 = arg(wave_id)
        w3 = arg(wave_id)
        conditions.append(f"(wave_id = {w} OR signal_id IN (SELECT signal_id FROM signal_outcomes WHERE wave_id = {w2})"
                          f" OR position_id IN (SELECT position_id FROM signal_outcomes WHERE wave_id = {w3}"
                          " AND position_id IS NOT NULL))")
    if position_id is not None:
        conditions.append(f"position_id = {arg(position_id)}")
    if signal_id is not None:
        conditions.append(f"signal_id = {arg(signal_id)}")
    if since is not None:
        conditions.append(f"at >= {arg(since)}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"{EVENTS.select()}{where} ORDER BY seq", args


SETTING_GET = {"sqlite": "SELECT value FROM operator_settings WHERE key = ?",
               "postgresql": "SELECT value FROM operator_settings WHERE key = $1"}
SETTING_PUT = {"sqlite": "INSERT INTO operator_settings (key, value, updated_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
               "postgresql": "INSERT INTO operator_settings (key, value, updated_at) VALUES ($1, $2, $3) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                             "updated_at = excluded.updated_at"}
SETTING_DELETE = {"sqlite": "DELETE FROM operator_settings WHERE key = ?",
                  "postgresql": "DELETE FROM operator_settings WHERE key = $1"}

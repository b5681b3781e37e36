"""Domain value types. Frozen attrs classes: state changes are new values."""

from __future__ import annotations

from enum import StrEnum

import attrs


class Side(StrEnum):
    LONG = "long"
    SHORT = "short"

    @property
    def entry_order_side(self) -> OrderSide:
        return OrderSide.BUY if self is Side.LONG else OrderSide.SELL

    @property
    def exit_order_side(self) -> OrderSide:
        return OrderSide.SELL if self is Side.LONG else OrderSide.BUY

    @property
    def sign(self) -> int:
        return 1 if self is Side.LONG else -1


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderKind(StrEnum):
    ENTRY = "entry"
    STOP = "stop"
    CLOSE = "close"


class OrderStatus(StrEnum):
    PENDING = "pending"  # intent stored, not yet known to the exchange
    NEW = "new"  # live on the exchange (a resting stop)
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # sent, answer lost: must be looked up by client id


class PositionStatus(StrEnum):
    OPENING = "opening"
    OPEN = "open"
    CLOSED = "closed"


class ExitReason(StrEnum):
    STOP_LOSS = "stop_loss"
    TRAILING_STOP = "trailing_stop"
    EMERGENCY_CLOSE = "emergency_close"
    MANUAL = "manual"
    OPERATOR = "operator"  # closed on the operator's request (API or `trio-bot close`)


class Outcome(StrEnum):
    REJECTED = "rejected"
    SKIPPED = "skipped"
    OPENED = "opened"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


class TrailingStatus(StrEnum):
    ACTIVE = "active"
    PENDING = "pending"
    FAILED = "failed"
    NONE = "none"


@attrs.frozen
class Signal:
    """A validated signal; `rank` is its place in the wave (0 = best score)."""

    id: str
    symbol: str
    side: Side
    score: float
    rank: int


@attrs.frozen
class Market:
    symbol: str
    tick_size: float
    step_size: float
    min_notional: float
    max_leverage: int = 125


@attrs.frozen
class OrderRequest:
    symbol: str
    side: OrderSide
    kind: OrderKind
    quantity: float
    client_order_id: str
    stop_price: float | None = None

    @property
    def reduce_only(self) -> bool:
        return self.kind is not OrderKind.ENTRY


@attrs.frozen
class OrderState:
    """What the exchange says about one order."""

    client_order_id: str
    symbol: str
    side: OrderSide
    kind: OrderKind
    quantity: float
    status: OrderStatus
    filled_quantity: float = 0.0
    average_price: float | None = None
    stop_price: float | None = None
    reduce_only: bool = False
    exchange_order_id: str | None = None


@attrs.frozen
class ExchangePosition:
    symbol: str
    side: Side
    quantity: float
    entry_price: float


@attrs.frozen
class Balance:
    total: float
    free: float


@attrs.frozen
class Position:
    """A position as the engine stores it (one row per attempted signal)."""

    id: int
    signal_id: str
    wave_id: str
    symbol: str
    side: Side
    status: PositionStatus
    quantity: float
    entry_client_id: str
    entry_price: float | None = None
    stop_price: float | None = None
    stop_client_id: str | None = None
    exit_price: float | None = None
    exit_reason: ExitReason | None = None
    realized_pnl: float | None = None
    trailing: TrailingStatus = TrailingStatus.NONE
    opened_at: float | None = None
    closed_at: float | None = None


@attrs.frozen
class OrderRecord:
    """An order as the engine stores it, keyed by client order id."""

    client_order_id: str
    position_id: int
    symbol: str
    kind: OrderKind
    side: OrderSide
    quantity: float
    status: OrderStatus
    stop_price: float | None = None
    fill_price: float | None = None
    updated_at: float = 0.0


@attrs.frozen
class TrailingRecord:
    """Persisted trailing-stop state of one position."""

    position_id: int
    symbol: str
    side: Side
    entry_price: float
    activation_price: float
    callback_percent: float
    state: str
    best_price: float
    stop_price: float
    stop_client_id: str | None
    updated_at: float


@attrs.frozen
class SignalOutcome:
    """The one true answer for one signal of a wave."""

    signal_id: str
    rank: int
    symbol: str
    side: str
    outcome: Outcome
    reason: str | None = None
    position_id: int | None = None
    trailing: TrailingStatus = TrailingStatus.NONE
    score: float | None = None
    # Wall-clock epoch seconds at which an outcome reported provisionally (an entry whose
    # answer was lost, "being resolved") was decided by the unknown-outcome resolver.
    resolved_at: float | None = None


@attrs.frozen
class WaveOutcome:
    """One signal's outcome, persisted the moment its child ends (before the wave does)."""

    wave_id: str
    outcome: SignalOutcome


@attrs.frozen
class OutcomeResolved:
    """A signal's outcome decided after it was reported: its entry's answer was lost, the wave
    reported it `timed_out` ("being resolved"), and the resolver has since found what the
    exchange did. Keyed by the wave and the position the signal's open created (only the
    attempted copy of a signal id has one), so it can be written without the wave's other data.
    """

    wave_id: str
    position_id: int
    signal_id: str
    outcome: Outcome
    reason: str | None
    trailing: TrailingStatus
    resolved_at: float  # wall-clock epoch seconds


@attrs.frozen
class Counts:
    candidates: int
    rejected: int
    skipped: int
    attempted: int
    opened: int
    failed: int
    timed_out: int

    @classmethod
    def of(cls, outcomes: tuple[SignalOutcome, ...] | list[SignalOutcome]) -> Counts:
        by = {o: 0 for o in Outcome}
        for item in outcomes:
            by[item.outcome] += 1
        attempted = by[Outcome.OPENED] + by[Outcome.FAILED] + by[Outcome.TIMED_OUT]
        return cls(
            candidates=len(outcomes),
            rejected=by[Outcome.REJECTED],
            skipped=by[Outcome.SKIPPED],
            attempted=attempted,
            opened=by[Outcome.OPENED],
            failed=by[Outcome.FAILED],
            timed_out=by[Outcome.TIMED_OUT],
        )

    @property
    def consistent(self) -> bool:
        return (
            self.candidates == self.rejected + self.skipped + self.attempted
            and self.attempted == self.opened + self.failed + self.timed_out
        )


@attrs.frozen
class WaveRecord:
    """A wave and its outcomes; counts are always derived, never stored separately."""

    id: str
    at: float  # engine time (seconds) the wave started
    started_at: float  # wall-clock epoch seconds
    duration: float | None = None
    outcomes: tuple[SignalOutcome, ...] = ()
    # The engine stopped before the wave could finish (shutdown, or a crash completed at start-up).
    interrupted: bool = attrs.field(default=False, converter=bool)

    @property
    def counts(self) -> Counts:
        return Counts.of(self.outcomes)


@attrs.frozen
class HandledSignal:
    """The memory of one signal id the engine has handled: which wave, and how it ended.

    Kept so an id re-sent later (a signal service redelivering after a reconnect, a
    replay) is recognised and never trades twice. `outcome` is None while the wave
    that claimed the id has not stored its answer yet (in flight, or interrupted).
    """

    signal_id: str
    wave_id: str
    rank: int
    handled_at: float  # wall-clock epoch seconds of the claim
    outcome: Outcome | None = None


@attrs.frozen
class Event:
    """One line of the append-only timeline: what happened, when, to what."""

    at: float
    kind: str
    wave_id: str | None = None
    signal_id: str | None = None
    position_id: int | None = None
    detail: str = ""
    uid: str = ""  # unique per event; makes a retried write idempotent


@attrs.frozen
class PauseState:
    """The operator paused new entries: waves still arrive, their valid signals are skipped."""

    reason: str = ""
    since: float = 0.0  # wall-clock epoch seconds

    @property
    def skip_reason(self) -> str:
        return "entries paused by the operator" + (f": {self.reason}" if self.reason else "")

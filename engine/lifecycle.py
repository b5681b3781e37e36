"""The open procedure's progress record and the outcome it implies.

The wave nursery mutates an `OpenProgress` as each step completes; whatever
point it was interrupted at, `decide_outcome` turns it into the one true
outcome. Keeping this pure is what lets the tests cancel at every await.
"""

from __future__ import annotations

import attrs

from engine.model import (
    ExitReason,
    OrderStatus,
    Outcome,
    Position,
    PositionStatus,
    Signal,
    SignalOutcome,
    TrailingStatus,
)
from engine.sizing import realized_pnl


@attrs.define
class OpenProgress:
    signal: Signal
    position_id: int
    quantity: float
    intent_stored: bool = False
    intent_error: str | None = None
    entry_sent: bool = False
    entry_error: str | None = None  # why the entry did not (or may not have) filled
    entry_resolved: bool = False  # we know whether the entry filled
    filled_quantity: float = 0.0
    fill_price: float | None = None
    stop_client_id: str | None = None
    stop_price: float | None = None
    stop_status: OrderStatus | None = None
    stop_error: str | None = None
    closed: bool = False
    close_price: float | None = None
    close_error: str | None = None
    stopped_out: bool = False  # the stop triggered before the open finished
    cleanup_expired: bool = False

    @property
    def filled(self) -> bool:
        return self.filled_quantity > 0

    @property
    def protected(self) -> bool:
        return self.filled and not self.closed and self.stop_status is OrderStatus.NEW

    @property
    def exposed(self) -> bool:
        """A fill that is neither covered by a live stop nor closed: money at risk."""
        return self.filled and not self.closed and not self.protected

    def position_status(self) -> PositionStatus:
        if self.protected or self.exposed:
            return PositionStatus.OPEN
        if self.entry_sent and not self.entry_resolved and not self.filled:
            # Sent but never resolved: leave it for start-up reconciliation.
            return PositionStatus.OPENING
        return PositionStatus.CLOSED


def decide_outcome(p: OpenProgress, *, timed_out: bool, deadline: str = "signal deadline") -> SignalOutcome:
    """The outcome implied by how far the open got. Protected beats timed out."""
    s = p.signal

    def out(outcome: Outcome, reason: str | None, trailing: TrailingStatus = TrailingStatus.NONE) -> SignalOutcome:
        pid = p.position_id if p.intent_stored else None
        return SignalOutcome(signal_id=s.id, rank=s.rank, symbol=s.symbol, side=s.side.value,
                             outcome=outcome, reason=reason, position_id=pid, trailing=trailing,
                             score=s.score)

    if p.protected:
        return out(Outcome.OPENED, None, TrailingStatus.PENDING)
    if p.exposed:
        why = p.close_error or p.stop_error or "cleanup deadline expired"
        return out(Outcome.FAILED, f"UNPROTECTED position: no stop-loss and the close failed ({why})")
    if not p.intent_stored:
        if p.intent_error is not None:
            return out(Outcome.FAILED, f"could not store the position intent, no order sent: {p.intent_error}")
        return out(Outcome.TIMED_OUT, f"{deadline} fired before the intent was stored; no order sent")
    if p.filled:  # filled and closed again
        if p.stopped_out:
            return out(Outcome.FAILED, "the stop-loss triggered while the position was being opened")
        if p.stop_error is None and timed_out:
            return out(Outcome.TIMED_OUT, f"{deadline} fired; the position was closed")
        return out(Outcome.FAILED, f"stop-loss could not be placed ({p.stop_error}); "
                                   "position closed by emergency close")
    if p.entry_sent and not p.entry_resolved:
        return out(Outcome.TIMED_OUT if timed_out else Outcome.FAILED,
                   f"entry order outcome unknown ({p.entry_error or deadline}); "
                   "left for reconciliation")
    if p.entry_error is not None:
        return out(Outcome.FAILED, f"entry order failed: {p.entry_error}")
    if p.entry_sent:
        return out(Outcome.TIMED_OUT, f"{deadline} fired before the entry order filled; "
                                      "the exchange has no such order")
    return out(Outcome.TIMED_OUT, f"{deadline} fired before the entry order was sent")


def position_after(p: OpenProgress, base: Position, now: float) -> Position:
    """The stored position row that matches the progress."""
    status = p.position_status()
    return attrs.evolve(
        base,
        status=status,
        quantity=p.filled_quantity or base.quantity,
        entry_price=p.fill_price,
        stop_price=p.stop_price if p.stop_status is OrderStatus.NEW else base.stop_price,
        stop_client_id=p.stop_client_id if p.stop_status is OrderStatus.NEW else None,
        exit_price=p.close_price if p.closed else None,
        exit_reason=(None if not (p.closed and p.filled) else
                     ExitReason.STOP_LOSS if p.stopped_out else ExitReason.EMERGENCY_CLOSE),
        opened_at=now if p.filled and base.opened_at is None else base.opened_at,
        closed_at=now if status is PositionStatus.CLOSED else None,
        trailing=TrailingStatus.PENDING if p.protected else TrailingStatus.NONE,
        realized_pnl=(realized_pnl(base.side, p.fill_price, p.close_price, p.filled_quantity)
                      if p.closed and p.fill_price is not None and p.close_price is not None else None),
    )


"""The kinds of timeline events: the public vocabulary of `trio-bot events`.

Every event the engine appends names one of these kinds. They are stored as text
and printed by `trio-bot events`, so their spelling is a contract: a `StrEnum`
member *is* its string, and nothing stored or printed changes.
"""

from __future__ import annotations

from enum import StrEnum

from engine.model import OrderKind


class EventKind(StrEnum):
    # waves and signals
    WAVE_STARTED = "wave_started"
    WAVE_FINISHED = "wave_finished"
    WAVE_SNAPSHOT_FAILED = "wave_snapshot_failed"
    WAVE_INTERRUPTED = "wave_interrupted"  # stopped mid-wave; completed (now, or at the next start-up)
    SIGNAL_STARTED = "signal_started"
    SIGNAL_OUTCOME = "signal_outcome"
    SIGNAL_CLAIM_FAILED = "signal_claim_failed"
    # the open
    INTENT_FAILED = "intent_failed"
    INTENT_STORED = "intent_stored"
    ENTRY_SENT = "entry_sent"
    ENTRY_REJECTED = "entry_rejected"
    ENTRY_UNANSWERED = "entry_unanswered"
    ENTRY_FILLED = "entry_filled"
    ENTRY_UNRESOLVED = "entry_unresolved"
    ENTRY_NOT_FOUND = "entry_not_found"
    ENTRY_RESOLVED = "entry_resolved"  # an entry of unknown outcome decided by the resolver
    RESOLVER_WAITING = "resolver_waiting"  # shutdown waits for entries of unknown outcome
    RESOLVER_ABANDONED = "resolver_abandoned"  # the operator stopped that wait (a second Ctrl-C)
    CLEANUP_EXPIRED = "cleanup_expired"
    RECONCILE_OPENING = "reconcile_opening"
    # protection
    STOP_PLACED = "stop_placed"
    STOPPED_OUT = "stopped_out"
    STOP_REJECTED = "stop_rejected"
    STOP_ATTEMPT_FAILED = "stop_attempt_failed"
    CLOSE_REJECTED = "close_rejected"
    CLOSE_ATTEMPT_FAILED = "close_attempt_failed"
    EMERGENCY_CLOSE = "emergency_close"
    CLOSED = "closed"
    UNPROTECTED = "UNPROTECTED"
    # orders
    LOOKUP_FAILED = "lookup_failed"
    ORDER_CANCELLED = "order_cancelled"
    CANCEL_ATTEMPT_FAILED = "cancel_attempt_failed"
    # trailing
    STOP_MOVED = "stop_moved"
    STOP_MOVE_FAILED = "stop_move_failed"
    STALE_STOP = "stale_stop"
    STOP_MISSING = "stop_missing"
    POSITION_CLOSED = "position_closed"
    CLEANUP_FAILED = "cleanup_failed"
    TRAILING_LOAD_FAILED = "trailing_load_failed"
    TRAILING_RESUMED = "trailing_resumed"
    TRAILING_SAVED = "trailing_saved"
    # the protection sweep
    SWEEP_FAILED = "sweep_failed"
    SWEEP_MISSING_STOP = "sweep_missing_stop"
    SWEEP_POSITION_GONE = "sweep_position_gone"
    SWEEP_ADOPTED = "sweep_adopted"
    SWEEP_ORPHAN_STOP = "sweep_orphan_stop"
    SWEEP_STALE_STOP = "sweep_stale_stop"
    SWEEP_SIZE_MISMATCH = "sweep_size_mismatch"
    SIZE_CHANGED = "size_changed"  # the follower shrank its position to what the exchange still holds
    # the operator
    ENTRIES_PAUSED = "entries_paused"
    ENTRIES_RESUMED = "entries_resumed"
    OPERATOR_CLOSE = "operator_close"
    OPERATOR_CLOSE_FAILED = "operator_close_failed"

    @classmethod
    def rejected(cls, kind: OrderKind) -> EventKind:
        """The exchange refused a protective order of `kind` (a stop or a close)."""
        return cls(f"{kind.value}_rejected")

    @classmethod
    def attempt_failed(cls, kind: OrderKind) -> EventKind:
        """One attempt at a protective order of `kind` got no usable answer."""
        return cls(f"{kind.value}_attempt_failed")


class Repair(StrEnum):
    """What the protection sweep repaired: the keys of its `repairs` count (and reports)."""

    MISSING_STOP = "missing_stop"
    POSITION_GONE = "position_gone"
    ADOPTED = "adopted"
    ORPHAN_STOP = "orphan_stop"
    STALE_STOP = "stale_stop"
    SIZE_MISMATCH = "size_mismatch"

    @property
    def event(self) -> EventKind:
        return EventKind(f"sweep_{self.value}")

"""Completing a wave the engine stopped in the middle of (a crash, a kill -9).

Pure: given the stored wave, the ids it claimed and the positions it left (after
start-up reconciliation has resolved their entries), name one outcome per signal,
as the wave itself would have. Every wave ends, even across a crash: the signals
it was opening get what reconciliation found, the ones it never reached are
`skipped`, and the wave is marked `interrupted`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from engine.model import HandledSignal, Outcome, Position, PositionStatus, SignalOutcome, TrailingStatus

NOT_ATTEMPTED = "the engine stopped before it was attempted"


# How the restart summary names each sweep repair (the keys of `ProtectionSweep.repairs`).
REPAIR_TEXT = {
    "missing_stop": "missing stop replaced",
    "size_mismatch": "size different from the store (the exchange's size protected)",
    "adopted": "position unknown to the store adopted and protected",
    "position_gone": "position gone from the exchange recorded closed",
    "orphan_stop": "reduce-only order without a position cancelled",
    "stale_stop": "older stop cancelled",
}
LISTED = 5  # resumed positions named one by one; the rest are counted


@attrs.define
class RestartSummary:
    """What start-up found and did, said to the operator without -v."""

    reconciled_opened: int = 0  # intents whose entry had filled: protected and followed
    reconciled_never_executed: int = 0  # intents the exchange never executed
    reconciled_other: int = 0  # filled and closed again, or still unknown
    waves_completed: int = 0  # waves a crash had left without an end
    resumed: int = 0  # open positions followed again with their stops
    resumed_stops: list[str] = attrs.field(factory=list)  # "#3 FORMUSDT long 245 stop 0.7969", in id order
    unprotected: int = 0  # open positions stored without a stop: being protected now
    sweep_ran: bool = False  # the first protection sweep ran before the first wave
    sweep_repairs: dict[str, int] = attrs.field(factory=dict)  # what it repaired, by kind
    sweep_error: str | None = None  # why it could not look (it tries again every sweep_interval)
    sweep_deferred: int = 0  # symbols it left to their followers, busy repairing them already

    def resumed_with_stop(self, position_id: int, symbol: str, side: str, quantity: float, stop: float) -> None:
        self.resumed += 1
        self.resumed_stops.append(f"#{position_id} {symbol} {side} {quantity:g} stop {stop:g}")

    def swept(self, repairs: Mapping[str, int], error: str | None, deferred: int = 0) -> None:
        self.sweep_ran, self.sweep_repairs, self.sweep_error = True, dict(repairs), error
        self.sweep_deferred = deferred

    def lines(self) -> list[str]:
        found = []
        reconciled = self.reconciled_opened + self.reconciled_never_executed + self.reconciled_other
        if reconciled:
            found.append(f"{reconciled} unfinished opens reconciled: {self.reconciled_opened} opened and "
                         f"protected, {self.reconciled_never_executed} never executed, "
                         f"{self.reconciled_other} closed or still unknown")
        if self.waves_completed:
            found.append(f"{self.waves_completed} interrupted waves completed (one outcome per signal)")
        if self.resumed:
            named = ", ".join(self.resumed_stops[:LISTED])
            more = f" and {self.resumed - LISTED} more" if self.resumed > LISTED else ""
            found.append(f"{self.resumed} open positions resumed with their stops: {named}{more}")
        if self.unprotected:
            found.append(f"{self.unprotected} open positions had no stop on record: protecting them now")
        if self.sweep_ran:
            found.extend(self._sweep_lines(bool(found)))
        return found

    def _sweep_lines(self, restarted: bool) -> list[str]:
        if self.sweep_error is not None:
            return [f"start-up sweep could not look at the exchange ({self.sweep_error}); the sweep tries "
                    "again every sweep_interval"]
        lines = []
        repaired = sum(self.sweep_repairs.values())
        if repaired:
            what = ", ".join(f"{n} {REPAIR_TEXT.get(kind, kind)}" for kind, n in sorted(self.sweep_repairs.items()))
            lines.append(f"start-up sweep repaired {repaired}: {what}")
        if self.sweep_deferred:
            lines.append(f"start-up sweep left {self.sweep_deferred} symbols to their positions' followers, "
                         "busy protecting them; the next sweep looks again")
        if not lines and restarted:
            lines.append("start-up sweep: the exchange matches the store, every position held has its stop")
        return lines


def outcome_of(position: Position, rank: int, score: float | None) -> SignalOutcome:
    """What reconciliation found for a signal whose open the engine stopped in the middle of."""
    def out(outcome: Outcome, reason: str, trailing: TrailingStatus = TrailingStatus.NONE) -> SignalOutcome:
        return SignalOutcome(position.signal_id, rank, position.symbol, position.side.value, outcome,
                             f"the engine stopped while opening it; {reason}", position.id, trailing, score)

    if position.status is PositionStatus.OPEN:
        if position.stop_price is not None and position.stop_client_id is not None:
            return out(Outcome.OPENED, "reconciliation found it filled and protected", position.trailing)
        return out(Outcome.FAILED, "UNPROTECTED position: filled, no stop-loss yet (the follower keeps trying)")
    if position.status is PositionStatus.OPENING:
        return out(Outcome.TIMED_OUT, "the entry's outcome is still unknown; being resolved")
    if position.entry_price is not None:
        how = position.exit_reason.value if position.exit_reason is not None else "closed"
        return out(Outcome.FAILED, f"it filled and was closed again ({how})")
    return out(Outcome.TIMED_OUT, "the exchange never executed its entry")


def complete_wave(stored: Iterable[SignalOutcome], claims: Iterable[HandledSignal],
                  positions: Mapping[str, Position]) -> tuple[SignalOutcome, ...]:
    """One outcome per signal: stored answers kept, in-flight ones reconciled, the rest skipped.

    `positions` maps the wave's signal ids to the position each one's open created.
    """
    outcomes = {(o.signal_id, o.rank): o for o in stored}
    answered = {o.signal_id for o in outcomes.values() if o.reason != NOT_ATTEMPTED}
    for claim in claims:
        if claim.signal_id in answered:
            continue
        earlier = outcomes.get((claim.signal_id, claim.rank))
        position = positions.get(claim.signal_id)
        if position is not None:
            outcomes[(claim.signal_id, claim.rank)] = outcome_of(
                position, claim.rank, earlier.score if earlier is not None else None)
        elif earlier is None:
            outcomes[(claim.signal_id, claim.rank)] = SignalOutcome(
                claim.signal_id, claim.rank, "", "", Outcome.SKIPPED, NOT_ATTEMPTED)
        else:
            outcomes[(claim.signal_id, claim.rank)] = attrs.evolve(earlier, outcome=Outcome.SKIPPED,
                                                                    reason=NOT_ATTEMPTED)
    return tuple(sorted(outcomes.values(), key=lambda o: (o.rank, o.signal_id)))

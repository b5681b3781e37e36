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


@attrs.define
class RestartSummary:
    """What start-up found and did, said to the operator without -v."""

    reconciled_opened: int = 0  # intents whose entry had filled: protected and followed
    reconciled_never_executed: int = 0  # intents the exchange never executed
    reconciled_other: int = 0  # filled and closed again, or still unknown
    waves_completed: int = 0  # waves a crash had left without an end
    resumed: int = 0  # open positions followed again with their stops
    unprotected: int = 0  # open positions stored without a stop: being protected now

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
            found.append(f"{self.resumed} open positions resumed with their stops")
        if self.unprotected:
            found.append(f"{self.unprotected} open positions had no stop on record: protecting them now")
        return found


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

"""The trailing stop as a pure state machine (no Trio, no I/O), in the manner of h11.

    waiting ──best crosses activation──▶ active ──price crosses the live stop──▶ triggered

Before activation the initial stop-loss stays where it is. Once active the
wanted stop is `best × (1 − callback)` for a long (`× (1 + callback)` for a
short), snapped to the tick *away* from the price so rounding never puts it
closer than the callback, and ratcheted so it never loosens. The manager asks
`move_due` whether an exchange move is worth it now (improvement of at least
`min_step_percent`, at least `min_interval` seconds since the last move) and
reports back with `moved` once the exchange has the new stop.
"""

from __future__ import annotations

from enum import StrEnum

import attrs

from engine.model import Side, TrailingRecord
from engine.sizing import ceil_to, floor_to


class TrailState(StrEnum):
    WAITING = "waiting"
    ACTIVE = "active"
    TRIGGERED = "triggered"


@attrs.frozen
class TrailingParams:
    activation_percent: float
    callback_percent: float
    min_step_percent: float = 0.0
    min_interval: float = 0.0


@attrs.frozen
class TrailingStop:
    side: Side
    entry_price: float
    activation_price: float
    callback_percent: float
    tick_size: float
    state: TrailState
    best_price: float
    wanted_stop: float  # where the stop should be (ratchets)
    live_stop: float  # where the exchange's stop is
    last_move_at: float | None = None
    activated: bool = False

    @classmethod
    def start(cls, side: Side, entry_price: float, initial_stop: float, tick_size: float,
              params: TrailingParams) -> TrailingStop:
        activation = entry_price * (1 + side.sign * params.activation_percent / 100)
        return cls(side=side, entry_price=entry_price, activation_price=activation,
                   callback_percent=params.callback_percent, tick_size=tick_size, state=TrailState.WAITING,
                   best_price=entry_price, wanted_stop=initial_stop, live_stop=initial_stop)

    def _better(self, a: float, b: float) -> bool:
        """Is price `a` more favourable than `b` for this side (higher for a long)?"""
        return a > b if self.side is Side.LONG else a < b

    def crossed(self, price: float) -> bool:
        """The price reached the live stop: the exchange's stop order fires."""
        return price <= self.live_stop if self.side is Side.LONG else price >= self.live_stop

    def observe(self, price: float) -> TrailingStop:
        """Take one price. Pure: returns the next state."""
        if self.state is TrailState.TRIGGERED:
            return self
        if self.crossed(price):
            return attrs.evolve(self, state=TrailState.TRIGGERED)
        if not self._better(price, self.best_price):
            return self  # everything else follows from the best price, which did not change
        best = price
        state = self.state
        if state is TrailState.WAITING and not self._better(self.activation_price, best):
            state = TrailState.ACTIVE
        wanted = self.wanted_stop
        if state is TrailState.ACTIVE:
            if self.side is Side.LONG:
                candidate = floor_to(best * (1 - self.callback_percent / 100), self.tick_size)
                wanted = max(wanted, candidate)
            else:
                candidate = ceil_to(best * (1 + self.callback_percent / 100), self.tick_size)
                wanted = min(wanted, candidate)
        return attrs.evolve(self, state=state, best_price=best, wanted_stop=wanted,
                            activated=self.activated or state is TrailState.ACTIVE)

    def improvement_percent(self) -> float:
        return self.side.sign * (self.wanted_stop - self.live_stop) / self.live_stop * 100

    def move_due(self, now: float, params: TrailingParams) -> float | None:
        """The stop price to send to the exchange now, or None."""
        if self.state is not TrailState.ACTIVE or self.wanted_stop == self.live_stop:
            return None
        if self.improvement_percent() < params.min_step_percent:
            return None
        # Same arithmetic as `next_move_at`, so "due at t" means due at t (no float gap to spin in).
        if self.last_move_at is not None and now < self.last_move_at + params.min_interval:
            return None
        return self.wanted_stop

    def next_move_at(self, params: TrailingParams) -> float | None:
        """When a worthwhile move held back by `min_interval` becomes due (None: nothing waits)."""
        if self.state is not TrailState.ACTIVE or self.last_move_at is None:
            return None
        if self.wanted_stop == self.live_stop or self.improvement_percent() < params.min_step_percent:
            return None
        return self.last_move_at + params.min_interval

    def moved(self, stop_price: float, now: float) -> TrailingStop:
        """The exchange now holds a stop at `stop_price`. Never loosens the wanted stop."""
        tighter = max if self.side is Side.LONG else min
        return attrs.evolve(self, live_stop=stop_price, wanted_stop=tighter(self.wanted_stop, stop_price),
                            last_move_at=now)


def to_record(ts: TrailingStop, *, position_id: int, symbol: str, stop_client_id: str | None,
              now: float) -> TrailingRecord:
    """What is stored: enough to resume after a restart without loosening the stop."""
    return TrailingRecord(position_id=position_id, symbol=symbol, side=ts.side, entry_price=ts.entry_price,
                          activation_price=ts.activation_price, callback_percent=ts.callback_percent,
                          state=ts.state.value, best_price=ts.best_price, stop_price=ts.live_stop,
                          stop_client_id=stop_client_id, updated_at=now)


def from_record(record: TrailingRecord, tick_size: float) -> TrailingStop:
    """Resume from storage: best price and live stop as stored; the wanted stop follows from them."""
    state = TrailState(record.state)
    ts = TrailingStop(side=record.side, entry_price=record.entry_price, activation_price=record.activation_price,
                      callback_percent=record.callback_percent, tick_size=tick_size, state=state,
                      best_price=record.best_price, wanted_stop=record.stop_price, live_stop=record.stop_price,
                      activated=state is not TrailState.WAITING)
    # Re-derive the wanted stop from the stored best price (never looser than the live stop).
    return ts.observe(record.best_price) if state is TrailState.ACTIVE else ts

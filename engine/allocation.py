"""Which part of what the exchange holds on a symbol belongs to which stored position.

Binance's one-way mode nets everything on a symbol into one position, while the
store may hold several positions there (one the engine opened, one the sweep
adopted when the exchange held more). The sweep and each position's follower
must agree on who owns what without talking to each other, so the split is a
pure function of the exchange's position and the stored ones:

* stored positions on the held side are served oldest first (lowest id), each up
  to its stored quantity: a position closed outside trio-bot in part shrinks the
  newest positions first, and one that has nothing left is gone;
* a stored position on the other side owns nothing (the exchange's position was
  closed and reversed behind our back);
* what is held beyond every stored position is the *excess*: the sweep adopts it
  as a position of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs

from engine.model import ExchangePosition, Position, Side
from engine.sizing import round_to


@attrs.frozen
class Allocation:
    shares: dict[int, float]  # position id -> the quantity the exchange holds for it (0: none)
    excess: float  # held beyond every stored position, on `side`
    side: Side | None  # the side the exchange holds (None: nothing held)

    def share(self, position_id: int) -> float:
        return self.shares.get(position_id, 0.0)


def allocate(held: ExchangePosition | None, positions: Iterable[Position], step: float) -> Allocation:
    """Split `held` (the exchange's position on one symbol) over the stored open `positions` there."""
    left = held.quantity if held is not None else 0.0
    shares: dict[int, float] = {}
    for position in sorted(positions, key=lambda p: p.id):
        if held is None or position.side is not held.side or left <= step / 2:
            shares[position.id] = 0.0
            continue
        take = min(position.quantity, left)
        shares[position.id] = round_to(take, step)
        left = round_to(left - take, step)
    excess = left if left > step / 2 else 0.0
    return Allocation(shares, excess, held.side if held is not None else None)


def excess_entry_price(held: ExchangePosition, positions: Iterable[Position], excess: float) -> float:
    """The entry price of the excess, from the exchange's average entry and the stored entries.

    Binance reports one average entry for the netted position; what the stored positions
    paid is known, so the rest is what the excess paid. Falls back to the exchange's average
    when that cannot be worked out (an unknown stored entry, a partial close that moved it).
    """
    rest = held.entry_price * held.quantity
    for position in positions:
        if position.side is not held.side:
            continue
        if position.entry_price is None:
            return held.entry_price
        rest -= position.entry_price * position.quantity
    price = rest / excess if excess > 0 else math.nan
    if not math.isfinite(price) or price <= 0 or abs(price - held.entry_price) > held.entry_price / 2:
        return held.entry_price
    return float(f"{price:.12g}")  # the float noise of the subtraction is not a price

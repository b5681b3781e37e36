"""Quantity and price arithmetic on exchange grids.

Decimal is used for the grid snapping so 0.1 + 0.2 style float noise never
puts a price one tick off (which on an exchange means a rejected order).
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, localcontext

from engine.checks import finite
from engine.model import Market, Side

# Enough digits for any value/step pair inside the documented ranges (1e9 / 1e-12 has 21
# integer digits), so a quantize never runs out of precision.
_CONTEXT = Context(prec=60)


def _snap(value: float, step: float, rounding: str) -> float:
    if not (finite(step) is not None and step > 0):
        raise ValueError(f"grid step must be a finite number > 0, got {step!r}")
    if finite(value) is None:
        raise ValueError(f"cannot put {value!r} on a grid")
    with localcontext(_CONTEXT):
        d_step = Decimal(repr(step))
        units = (Decimal(repr(value)) / d_step).quantize(Decimal(1), rounding=rounding)
        return float(units * d_step)


def floor_to(value: float, step: float) -> float:
    return _snap(value, step, ROUND_FLOOR)


def ceil_to(value: float, step: float) -> float:
    return _snap(value, step, ROUND_CEILING)


def round_to(value: float, step: float) -> float:
    return _snap(value, step, ROUND_HALF_EVEN)


def order_quantity(size_usdt: float, price: float, market: Market) -> float:
    """Largest quantity on the step grid whose notional does not exceed `size_usdt`."""
    return floor_to(size_usdt / price, market.step_size)


def initial_stop_price(side: Side, entry_price: float, stop_loss_percent: float, tick: float) -> float:
    """Stop-loss `stop_loss_percent` away from the entry, on the tick grid."""
    raw = entry_price * (1 - side.sign * stop_loss_percent / 100)
    return round_to(raw, tick)


def default_tick_size(price: float) -> float:
    """A plausible tick when a scenario gives none: about four significant digits."""
    return 10.0 ** (math.floor(math.log10(price)) - 3)


def default_step_size(price: float) -> float:
    """A plausible quantity step: whole contracts for cheap coins, finer for dear ones."""
    return min(1.0, 10.0 ** (-math.floor(math.log10(price))))


def realized_pnl(side: Side, entry_price: float, exit_price: float, quantity: float) -> float:
    return side.sign * (exit_price - entry_price) * quantity

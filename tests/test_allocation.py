"""Who owns what of a symbol's one netted exchange position (Binance one-way mode)."""

from engine.allocation import allocate, excess_entry_price
from engine.model import ExchangePosition, Position, PositionStatus, Side


def pos(pid, side, qty, entry=1.0):
    return Position(id=pid, signal_id=str(pid), wave_id="w1", symbol="XUSDT", side=side,
                    status=PositionStatus.OPEN, quantity=qty, entry_client_id=f"tb-{pid}-entry", entry_price=entry)


def held(side, qty, entry=1.0):
    return ExchangePosition("XUSDT", side, qty, entry)


def test_exact_match_has_no_excess():
    split = allocate(held(Side.LONG, 10.0), [pos(1, Side.LONG, 10.0)], 0.1)
    assert (split.shares, split.excess) == ({1: 10.0}, 0.0)


def test_more_held_is_excess_on_the_held_side():
    split = allocate(held(Side.LONG, 13.5), [pos(2, Side.LONG, 3.0), pos(1, Side.LONG, 10.0)], 0.1)
    assert (split.shares, split.excess, split.side) == ({1: 10.0, 2: 3.0}, 0.5, Side.LONG)


def test_less_held_shrinks_the_newest_first():
    split = allocate(held(Side.SHORT, 11.0), [pos(1, Side.SHORT, 10.0), pos(2, Side.SHORT, 3.0)], 0.1)
    assert (split.shares, split.excess) == ({1: 10.0, 2: 1.0}, 0.0)
    split = allocate(held(Side.SHORT, 4.0), [pos(1, Side.SHORT, 10.0), pos(2, Side.SHORT, 3.0)], 0.1)
    assert split.shares == {1: 4.0, 2: 0.0}


def test_nothing_held_or_the_other_side_owns_nothing():
    assert allocate(None, [pos(1, Side.LONG, 10.0)], 0.1).shares == {1: 0.0}
    split = allocate(held(Side.SHORT, 2.0), [pos(1, Side.LONG, 10.0)], 0.1)
    assert (split.shares, split.excess, split.side) == ({1: 0.0}, 2.0, Side.SHORT)


def test_float_noise_below_half_a_step_is_no_excess():
    split = allocate(held(Side.LONG, 0.30000000000000004), [pos(1, Side.LONG, 0.1), pos(2, Side.LONG, 0.2)], 0.1)
    assert split.excess == 0.0


def test_excess_entry_price_is_what_the_rest_paid():
    # 10 @ 1.0 stored, the exchange averages 15 @ 1.2: the other 5 paid 1.6.
    assert excess_entry_price(held(Side.LONG, 15.0, 1.2), [pos(1, Side.LONG, 10.0, 1.0)], 5.0) == 1.6
    # An unknown stored entry, or an implausible result: the exchange's average.
    unknown = pos(1, Side.LONG, 10.0, None)
    assert excess_entry_price(held(Side.LONG, 15.0, 1.2), [unknown], 5.0) == 1.2
    assert excess_entry_price(held(Side.LONG, 15.0, 1.0), [pos(1, Side.LONG, 10.0, 1.4)], 5.0) == 1.0

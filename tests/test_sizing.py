from hypothesis import given
from hypothesis import strategies as st

from engine.model import Market, Side
from engine.sizing import (
    default_step_size,
    default_tick_size,
    floor_to,
    initial_stop_price,
    order_quantity,
    realized_pnl,
    round_to,
)


def test_seed_numbers():
    market = Market("FORMUSDT", default_tick_size(0.8132), default_step_size(0.8132), 5.0)
    assert order_quantity(200.0, 0.8132, market) == 245.0
    assert initial_stop_price(Side.LONG, 0.8132, 2.0, market.tick_size) == 0.7969
    assert initial_stop_price(Side.SHORT, 0.8132, 2.0, market.tick_size) == 0.8295


def test_grid_snapping_has_no_float_noise():
    assert floor_to(0.3, 0.1) == 0.3
    assert round_to(0.1 + 0.2, 0.1) == 0.3
    assert floor_to(1.0, 0.001) == 1.0


@given(size=st.floats(10, 10_000), price=st.floats(0.001, 100_000),
       step=st.sampled_from([0.001, 0.01, 0.1, 1.0]))
def test_quantity_never_exceeds_the_budget(size, price, step):
    market = Market("X", 0.0001, step, 5.0)
    qty = order_quantity(size, price, market)
    assert qty * price <= size * (1 + 1e-9)
    assert (qty + step) * price > size * (1 - 1e-9)


@given(entry=st.floats(0.01, 100_000), pct=st.floats(0.1, 50))
def test_stop_is_on_the_losing_side_for_both_directions(entry, pct):
    tick = default_tick_size(entry)
    long_stop = initial_stop_price(Side.LONG, entry, pct, tick)
    short_stop = initial_stop_price(Side.SHORT, entry, pct, tick)
    assert long_stop < entry < short_stop


def test_pnl_sign_follows_side():
    assert realized_pnl(Side.LONG, 100.0, 110.0, 2.0) == 20.0
    assert realized_pnl(Side.SHORT, 100.0, 110.0, 2.0) == -20.0

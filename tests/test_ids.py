"""Client order ids: what the engine makes it can read back, and nothing else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine import ids
from engine.model import OrderKind


def test_kind_of_client_ids() -> None:
    assert ids.kind_of(ids.entry_id(7)) is OrderKind.ENTRY
    assert ids.kind_of(ids.stop_id(7, 3)) is OrderKind.STOP
    assert ids.kind_of(ids.close_id(7)) is OrderKind.CLOSE
    assert ids.kind_of(ids.close_id(7, 2)) is OrderKind.CLOSE
    assert ids.kind_of("web_abc123") is None
    assert ids.kind_of("tb-7-stop") is None  # a stop id always carries its placement count


@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=1, max_value=10**6))
def test_ids_round_trip(position_id: int, seq: int) -> None:
    for cid in (ids.entry_id(position_id), ids.stop_id(position_id, seq), ids.close_id(position_id, seq)):
        assert ids.position_of(cid) == position_id
    assert ids.stop_seq(ids.stop_id(position_id, seq)) == seq


def test_stop_seq_of_anything_else_is_the_first() -> None:
    """The next stop after a missing or foreign one is `stop2`, never a reused id."""
    for cid in (None, "", "web-stop9", ids.entry_id(3), ids.close_id(3, 4)):
        assert ids.stop_seq(cid) == 1


def test_foreign_ids_belong_to_no_position() -> None:
    for cid in ("tb-x-entry", "tb-1-open", "xtb-1-entry", "tb-1-entry-2", "web_1"):
        assert ids.position_of(cid) is None

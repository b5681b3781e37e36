"""Call points and event kinds are a public contract: scenario files name the points,
`trio-bot events` prints the kinds. Their spelling must never drift."""

from __future__ import annotations

import json
import sqlite3

import pytest

from adapters.sim.scenario import ScenarioError, parse_scenario
from engine.call_points import FAULT_POINTS, CallPoint
from engine.events import EventKind, Repair
from engine.model import OrderKind


def test_fault_points_are_the_documented_strings() -> None:
    assert [str(p) for p in FAULT_POINTS] == [
        "exchange.entry_order", "exchange.stop_order", "exchange.close_order", "exchange.cancel_order",
        "exchange.query", "exchange.stop_trigger", "storage.write", "storage.read", "storage.trailing"]
    assert CallPoint.placing(OrderKind.STOP) == "exchange.stop_order"


def test_a_scenario_fault_point_parses_into_the_enum_and_bad_ones_are_named() -> None:
    fault = parse_scenario({"faults": [{"point": "exchange.stop_order", "effect": "reject"}]}).faults[0]
    assert fault.point is CallPoint.STOP_ORDER
    with pytest.raises(ScenarioError, match=r"faults\[0\]\.point = 'exchange.stop': expected one of: exchange.entry"):
        parse_scenario({"faults": [{"point": "exchange.stop", "effect": "reject"}]})


def test_event_kinds_store_and_print_as_plain_text() -> None:
    kind = EventKind.UNPROTECTED
    assert json.dumps({"kind": kind}) == '{"kind": "UNPROTECTED"}'
    assert f"{kind}" == "UNPROTECTED"
    db = sqlite3.connect(":memory:")
    db.execute("create table e (kind text)")
    db.execute("insert into e values (?)", (EventKind.STOP_MOVED,))
    assert db.execute("select kind from e").fetchone() == ("stop_moved",)


def test_kinds_built_from_an_order_kind_or_a_repair_exist() -> None:
    assert EventKind.rejected(OrderKind.STOP) is EventKind.STOP_REJECTED
    assert EventKind.attempt_failed(OrderKind.CLOSE) is EventKind.CLOSE_ATTEMPT_FAILED
    assert {r.event for r in Repair} == {k for k in EventKind if k.startswith("sweep_") and k != "sweep_failed"}

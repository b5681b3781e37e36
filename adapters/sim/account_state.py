"""The simulated account as plain data, and the journal that keeps it.

`export_state` of `SimExchange` gives a JSON-able dict of this shape; `check_state` refuses a dict
that is not one (a hand-edited or truncated file) with one sentence saying what is wrong.

A `Journal` receives an `AccountChange` after every change of the account (an order placed,
cancelled or filled, a stop triggered by a price move, a leverage change) *before* the call that
made the change returns, so what a caller was told has happened is kept. Price moves that fill
nothing are not changes: prices ride along with the next change (and with `SimExchange.sync`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from engine.checks import PRICE, finite
from engine.model import OrderKind, OrderSide, OrderState, OrderStatus
from engine.text import shown


@attrs.frozen
class AccountChange:
    """Everything a journal needs to bring its copy up to date.

    The small parts (balance, prices, leverage, holdings: a few rows per market) come whole; the
    orders only as far as they changed: the newest state of each order stored since the last
    change, and the (client id, exchange id) of closed orders the bounded history let go.
    """

    balance: float
    next_order_id: int
    prices: Mapping[str, float]
    leverage: Mapping[str, int]
    holdings: Mapping[str, tuple[float, float]]
    orders: tuple[OrderState, ...] = ()
    forgotten: tuple[tuple[str, str | None], ...] = ()


class Journal(Protocol):
    def record(self, change: AccountChange) -> None:
        """Make `change` durable before returning; raise `TransientError` if it could not be
        (the exchange then keeps the change pending and hands it over again with the next one)."""


def order_data(order: OrderState) -> dict[str, Any]:
    """An order as JSON data (enums as their values)."""
    data = attrs.asdict(order)
    data.update(side=order.side.value, kind=order.kind.value, status=order.status.value)
    return data


def order_from_data(raw: Mapping[str, Any]) -> OrderState:
    """The inverse of `order_data`; raises ValueError/TypeError/KeyError on anything else."""
    return OrderState(**{**raw, "side": OrderSide(raw["side"]), "kind": OrderKind(raw["kind"]),
                         "status": OrderStatus(raw["status"])})


_SHAPE: dict[str, tuple[type | tuple[type, ...], str]] = {
    "balance": ((int, float), "a number"), "prices": (dict, "an object"), "leverage": (dict, "an object"),
    "holdings": (dict, "an object"), "orders": (list, "an array"), "next_order_id": (int, "an integer")}


def check_state(state: object) -> dict[str, Any]:
    """`state` if it has the shape `export_state` writes; else ValueError saying what is wrong.

    The values inside orders and holdings are checked by `import_state` (which raises ValueError,
    TypeError or KeyError on a bad one)."""
    if not isinstance(state, dict):
        raise ValueError("not a JSON object")
    for key, (kind, name) in _SHAPE.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise ValueError(f"{key!r} is missing or not {name}")
    if finite(state["balance"]) is None or state["balance"] < 0:
        raise ValueError(f"balance {shown(state['balance'])} is not a finite number >= 0")
    for symbol, price in state["prices"].items():
        if not PRICE.contains(price):
            raise ValueError(f"price of {shown(symbol, 40)} is not {PRICE.describe()}")
    return state

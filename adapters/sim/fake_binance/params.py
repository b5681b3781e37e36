"""Request parameters checked the way Binance USDⓈ-M checks them, each refusal in its shape.

Every bad value ends as a `Rejection` with Binance's code and message: a client
never sees a Python exception, whatever it sends (`quantity=1e308`, `nan`, an
empty string, a negative price).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import attrs

from adapters.sim.fake_binance.wire import Reply
from engine.model import Market, OrderKind, OrderSide

_CODED = re.compile(r"^(-\d+)\s+(.*)$", re.DOTALL)
CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
# Conditional types: refused on /fapi/v1/order since 2025-12-09 (-4120), accepted on /fapi/v1/algoOrder.
CONDITIONAL_TYPES = frozenset({"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"})
WORKING_TYPES = ("MARK_PRICE", "CONTRACT_PRICE")
# Where the simulator cannot follow Binance (LIMIT orders, closePosition, plain stops that
# may open a position), it refuses loudly rather than approximating.
UNSUPPORTED = "Invalid orderType: the simulator supports MARKET and reduce-only STOP_MARKET orders only."


class Rejection(Exception):
    """An error answer in Binance's shape: HTTP status plus {"code", "msg"}."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status = code, msg, status
        self.headers: list[tuple[str, str]] = []

    @classmethod
    def from_message(cls, message: str, default_code: int) -> Rejection:
        """A SimExchange/fault message such as "-2019 Margin is insufficient." keeps its code."""
        match = _CODED.match(message.strip())
        if match:
            return cls(int(match.group(1)), match.group(2))
        return cls(default_code, message)

    def reply(self) -> Reply:
        return Reply.json(self.status, {"code": self.code, "msg": self.msg}, headers=tuple(self.headers))


def missing(name: str) -> Rejection:
    return Rejection(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def decimal(params: dict[str, str], name: str) -> Decimal:
    """A positive finite decimal, exactly as sent (no float rounding before the checks)."""
    raw = params.get(name)
    if not raw:
        raise missing(name)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise Rejection(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                               "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.") from None
    if not value.is_finite() or value <= 0:
        raise missing(name)
    if abs(value.adjusted()) > 20:  # more digits than Binance's number pattern allows
        raise Rejection(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                               "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
    return value


def integer(params: dict[str, str], name: str) -> int:
    raw = params.get(name)
    if not raw:
        raise missing(name)
    if not raw.isdigit() or len(raw) > 20:
        raise Rejection(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(raw)


def flag(params: dict[str, str], name: str) -> bool:
    raw = params.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise Rejection(-1100, f"Illegal characters found in parameter '{name}'; legal range is 'true, false'.")
    return raw == "true"


def on_grid(value: Decimal, step: float) -> bool:
    grid = Decimal(repr(step))
    return value % grid == 0


@attrs.frozen
class Intent:
    """A new-order request, checked and classified before anything is sent to the simulator."""

    symbol: str
    side: OrderSide
    kind: OrderKind
    type: str
    quantity: float
    stop_price: float | None
    client_id: str | None
    working_type: str = "CONTRACT_PRICE"


@attrs.frozen
class Limits:
    """What exchangeInfo publishes per symbol and the order checks enforce."""

    max_qty: float  # LOT_SIZE
    market_max_qty: float  # MARKET_LOT_SIZE: every order trio-bot sends is a market order
    max_price: float


def intent(params: dict[str, str], market: Market, limits: Limits, *, algo: bool, dual_side: bool) -> Intent:
    """A new order's parameters, refused in the order Binance checks them."""
    symbol = market.symbol
    side_name = params.get("side")
    if side_name not in ("BUY", "SELL"):
        raise Rejection(-1117, "Invalid side.") if side_name else missing("side")
    position_side = params.get("positionSide", "BOTH")
    if position_side not in ("BOTH", "LONG", "SHORT"):
        raise Rejection(-4006, "Invalid position side.")
    if (position_side == "BOTH") == dual_side:
        raise Rejection(-4061, "Order's position side does not match user's setting.")
    if dual_side:  # hedge mode is checked (and refused) by trio-bot at start-up, never traded
        raise Rejection(-1116, "Hedge-mode orders are not simulated: set one-way mode (dualSidePosition=false).")
    order_type = params.get("type")
    if not order_type:
        raise missing("type")
    if not algo and order_type in CONDITIONAL_TYPES:
        raise Rejection(-4120, "Order type not supported for this endpoint. Please use the Algo Order API "
                               "endpoints instead.")
    if algo and params.get("algoType") != "CONDITIONAL":
        raise missing("algoType")
    if algo and order_type not in CONDITIONAL_TYPES:
        raise Rejection(-1116, "Invalid orderType.")
    reduce_only = flag(params, "reduceOnly")
    if flag(params, "closePosition"):
        raise Rejection(-1116, UNSUPPORTED)
    working_type = params.get("workingType", "CONTRACT_PRICE")
    if working_type not in WORKING_TYPES:
        raise Rejection(-1116 if algo else -1100, f"Invalid workingType {working_type}.")
    stop_price: float | None = None
    if order_type == "MARKET":
        kind = OrderKind.CLOSE if reduce_only else OrderKind.ENTRY
    elif order_type == "STOP_MARKET" and reduce_only:
        kind = OrderKind.STOP
        raw_stop = decimal(params, "triggerPrice")
        if raw_stop > Decimal(repr(limits.max_price)):
            raise Rejection(-4016, f"Limit price can't be higher than {limits.max_price:g}.")
        if not on_grid(raw_stop, market.tick_size):
            raise Rejection(-1111, "Precision is over the maximum defined for this asset.")
        stop_price = float(raw_stop)
    else:
        raise Rejection(-1116, UNSUPPORTED)
    raw_qty = decimal(params, "quantity")
    cap = limits.market_max_qty if kind is not OrderKind.STOP else limits.max_qty
    if raw_qty > Decimal(repr(cap)):
        raise Rejection(-4005, f"Quantity greater than max quantity ({cap:g}).")
    if not on_grid(raw_qty, market.step_size):
        raise Rejection(-1111, "Precision is over the maximum defined for this asset.")
    client_id = params.get("clientAlgoId" if algo else "newClientOrderId") or None
    if client_id is not None and not CLIENT_ID.match(client_id):
        raise Rejection(-4015, "Client order id is not valid.")
    side = OrderSide.BUY if side_name == "BUY" else OrderSide.SELL
    return Intent(symbol, side, kind, order_type, float(raw_qty), stop_price, client_id, working_type)

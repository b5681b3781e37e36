"""A scenario's faults served on the wire: which request a fault matches, and how it looks.

Faults are picked per HTTP request with the fault points and names `SimExchange` uses (POST
order/algoOrder by kind: MARKET → entry, MARKET reduceOnly → close, STOP_MARKET → stop;
DELETE → cancel; every GET → query), and answered as the live API would fail: a 502 page,
a 400 error body, silence, a response lost after the order was applied, or a 503 / -1007
whose order executes later.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from adapters.sim.exchange import position_side
from adapters.sim.fake_binance.account import Account
from adapters.sim.fake_binance.params import Rejection
from adapters.sim.fake_binance.wire import Outcome, Reply, Request, Silence
from adapters.sim.faults import FaultPlan
from adapters.sim.scenario import FaultSpec
from engine.call_points import CallPoint

ORDER, ALGO_ORDER, OPEN_ORDER = "/fapi/v1/order", "/fapi/v1/algoOrder", "/fapi/v1/openOrder"
UNKNOWN_503 = "Unknown error, please check your request or try again later."
TIMEOUT_1007 = "Timeout waiting for response from backend server. Send status unknown; execution status unknown."


def pick_fault(plan: FaultPlan, account: Account, request: Request, params: dict[str, str]) -> FaultSpec | None:
    """The fault point, symbol and position side of a request, as SimExchange names them."""
    symbol = params.get("symbol")
    algo = request.path == ALGO_ORDER
    if request.method == "GET":
        side = side_of(account, params, algo) if request.path in (ORDER, ALGO_ORDER, OPEN_ORDER) else None
        return plan.pick(CallPoint.QUERY, symbol=symbol, side=side)
    if request.path not in (ORDER, ALGO_ORDER):
        return None
    if request.method == "DELETE":
        return plan.pick(CallPoint.CANCEL_ORDER, symbol=symbol, side=side_of(account, params, algo))
    try:
        intent = account.intent(params, algo=algo)
    except Rejection:
        return None  # refused anyway: the fault is kept for a request that could succeed
    side = position_side(intent.side, intent.kind)
    return plan.pick(CallPoint.placing(intent.kind), symbol=intent.symbol, side=side.value)


def side_of(account: Account, params: dict[str, str], algo: bool) -> str | None:
    meta = account.meta_by_ref(params, algo)
    return meta.position_side.value if meta is not None else None


async def inject(fault: FaultSpec, handler: Callable[[], Awaitable[Any]], account: Account | None = None,
                 request: Request | None = None, params: dict[str, str] | None = None) -> Outcome:
    """Answer a request the way `fault` says (`handler` is the request's normal work)."""
    if fault.effect == "delay":
        await trio.sleep(fault.seconds)
        return Reply.json(200, await handler())
    if fault.effect == "error":
        return Reply(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
    if fault.effect == "reject":
        message = fault.message or f"New order rejected (injected at {fault.point})."
        return Rejection.from_message(message, -2010).reply()
    if fault.effect == "hang":
        return Silence.HANG
    if fault.effect == "lost_response":
        with contextlib.suppress(Rejection):  # a refusal is lost with the response
            await handler()
        return Silence.DROP
    if fault.effect == "unknown" and account is not None and request is not None and params is not None:
        account.accept_late(params, algo=request.path == ALGO_ORDER, fault=fault)
        if fault.message.startswith("-1007"):
            return Reply.json(408, {"code": -1007, "msg": TIMEOUT_1007})
        return Reply.json(503, {"msg": UNKNOWN_503})
    raise ValueError(f"fault effect {fault.effect!r} cannot be served at {fault.point}")

"""Idempotent order operations shared by the open, the trailing manager and the sweep.

Every operation reuses one client order id across its retries and looks the
order up by that id after any answer it did not get (error, timeout, lost
response), so a retry can never produce a second order. Protective orders
take the rate limiter's priority lane.

`protect_or_close` is the one way a filled position gets protected: a stop-loss,
else an emergency close, else an `UNPROTECTED` alarm. The open, the trailing
manager (a stop gone missing) and the sweep (an adopted position) all use it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from engine import ids
from engine.call_points import CallPoint
from engine.errors import DuplicateOrderError, PermanentError
from engine.events import EventKind
from engine.model import OrderRequest, OrderState, OrderStatus
from engine.nursery.context import EngineContext
from engine.nursery.retrying import Attempts

log = logging.getLogger("trio_bot.orders")

Emit = Callable[[EventKind, str], None]



@attrs.frozen
class Placed:
    state: OrderState | None  # the order as the exchange has it, None if it was not placed
    error: str | None = None
    refused: bool = False  # the exchange said no (a permanent error)


def fills_all(state: OrderState, quantity: float) -> bool:
    """Whether an exit order filled the whole `quantity` (a market order may fill in part: Binance
    expires what its price band stops)."""
    return state.filled_quantity >= quantity * (1 - 1e-9)


async def lookup(ctx: EngineContext, symbol: str, client_order_id: str,
                 emit: Emit) -> tuple[OrderState | None, bool]:
    """(order, known): the order with this client id; known=False if the exchange couldn't say."""
    try:
        return await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_order, symbol, client_order_id), True
    except Exception as exc:
        emit(EventKind.LOOKUP_FAILED, f"{client_order_id}: {exc}")
        return None, False


async def place(ctx: EngineContext, request: OrderRequest, emit: Emit, *, retry_refused: bool = False) -> Placed:
    """Place a protective order (stop or close) with retries (`protect_attempts`)."""
    policy = ctx.config.protect_retry
    error = "no attempt"
    async for attempt in Attempts(policy):
        try:
            return Placed(await ctx.order(CallPoint.placing(request.kind), True, request.client_order_id,
                                          ctx.exchange.place_order, request))
        except DuplicateOrderError:
            pass  # an earlier attempt landed; the look-up finds it
        except PermanentError as exc:
            error = f"rejected: {exc}"
            emit(EventKind.rejected(request.kind), str(exc))
            if not retry_refused:
                return Placed(None, error, refused=True)
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            emit(EventKind.attempt_failed(request.kind), f"attempt {attempt}/{policy.attempts}: {error}")
        found, _ = await lookup(ctx, request.symbol, request.client_order_id, emit)
        if found is not None and (found.status is OrderStatus.NEW or found.filled_quantity > 0):
            return Placed(found)
    return Placed(None, f"{policy.attempts} attempts failed, last: {error}")


async def cancel(ctx: EngineContext, symbol: str, client_order_id: str, emit: Emit) -> bool:
    """Cancel with retries; True once the order is no longer live (cancelled, filled or unknown)."""
    async for attempt in Attempts(ctx.config.cancel_retry):
        try:
            await ctx.order(CallPoint.CANCEL_ORDER, True, client_order_id, ctx.exchange.cancel_order, symbol,
                            client_order_id)
            emit(EventKind.ORDER_CANCELLED, client_order_id)
            return True
        except Exception as exc:
            emit(EventKind.CANCEL_ATTEMPT_FAILED, f"{client_order_id} attempt {attempt}: {exc}")
        found, known = await lookup(ctx, symbol, client_order_id, emit)
        if known and (found is None or found.status is not OrderStatus.NEW):
            return True
    return False


async def is_flat(ctx: EngineContext, symbol: str) -> bool | None:
    """Whether the exchange holds no position on `symbol` (None: it couldn't say)."""
    try:
        positions = await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_positions)
    except Exception:
        return None
    return not any(p.symbol == symbol for p in positions)


@attrs.frozen
class Protection:
    """How `protect_or_close` ended; exactly one of protected, stopped_out, closed, unprotected."""

    stop: OrderState | None = None  # the stop as the exchange answered (NEW, FILLED, or something else)
    stop_error: str | None = None
    closed: bool = False  # the emergency close filled, or the exchange holds nothing any more
    close_price: float | None = None
    close_error: str | None = None

    @property
    def protected(self) -> bool:
        return self.stop is not None and self.stop.status is OrderStatus.NEW

    @property
    def stopped_out(self) -> bool:
        """The stop filled at once: the position is gone, closed by its own stop."""
        return self.stop is not None and self.stop.status is OrderStatus.FILLED

    @property
    def unprotected(self) -> bool:
        return not (self.protected or self.stopped_out or self.closed)


async def protect_or_close(ctx: EngineContext, stop: OrderRequest, close: OrderRequest, emit: Emit) -> Protection:
    """Place `stop`; if no stop is live after every attempt, close at market with `close`.

    A refused close is retried too: the money is at risk until it goes through. If the close
    fails but the exchange holds no position any more, the position is closed all the same.
    Callers shield this (their own `cleanup_timeout`): it protects money.
    """
    placed = await place(ctx, stop, emit)
    result = Protection(stop=placed.state, stop_error=placed.error)
    if result.protected or result.stopped_out:
        return result
    emit(EventKind.EMERGENCY_CLOSE, placed.error or "")
    closing = await place(ctx, close, emit, retry_refused=True)
    if closing.state is not None and fills_all(closing.state, close.quantity):
        emit(EventKind.CLOSED, f"emergency close filled @ {closing.state.average_price}")
        return attrs.evolve(result, closed=True, close_price=closing.state.average_price)
    if closing.state is not None and closing.state.filled_quantity > 0:
        # Part of it is still held, with no stop: never recorded closed. The position's follower
        # takes the exchange's size and protects what is left (the repair an unprotected one gets).
        emit(EventKind.SIZE_CHANGED, f"emergency close filled {closing.state.filled_quantity:g} of "
                                     f"{close.quantity:g}; the rest expired")
        closing = attrs.evolve(closing, error=f"the close filled only {closing.state.filled_quantity:g} of "
                                              f"{close.quantity:g}")
    if await is_flat(ctx, close.symbol):
        emit(EventKind.CLOSED, "no position left on the exchange")
        return attrs.evolve(result, closed=True)
    emit(EventKind.UNPROTECTED, f"no stop-loss and close failed: {closing.error}")
    log.error("position %s on %s is UNPROTECTED: %s", ids.position_of(close.client_order_id), close.symbol,
              closing.error)
    return attrs.evolve(result, close_error=closing.error)

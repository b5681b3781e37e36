"""Finding an order by its client id, in the book the exchange keeps it in.

Binance keeps conditional orders in a separate "algo" book (ccxt 4.5 routes them to
`/fapi/v1/algoOrder` with `clientAlgoId`), so look-ups pick the book from the id's
kind (`engine.ids.kind_of`); an id the engine did not make is tried in the regular
book, then in the algo book. Bybit answers a create with ids only, and a market order
can be acknowledged before it is matched, so both are read back here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import trio
import trio_asyncio
from ccxt.base import errors as ccxt_errors

from adapters.ccxt_errors import is_not_found, map_error
from adapters.ccxt_orders import ALGO_RESOLVED_BY_FILL, algo_status, number, order_state
from engine.errors import ExchangeError, PermanentError
from engine.ids import kind_of
from engine.model import OrderKind, OrderRequest, OrderState, OrderStatus

T = TypeVar("T")

# A market order can be acknowledged before it is matched (status NEW); the port promises
# a filled answer, so it is re-read by client id a few times before giving up.
FILL_POLLS = 5
FILL_POLL_INTERVAL = 0.2


async def raw_call(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """One ccxt coroutine on the shared asyncio loop; ccxt errors pass through so the caller
    can tell "not found" apart."""
    result: T = await trio_asyncio.aio_as_trio(fn)(*args, **kwargs)
    return result


def books_for(kind: OrderKind | None) -> tuple[bool, ...]:
    """Which books to search, as `trigger` flags: stops live in the conditional book."""
    if kind is OrderKind.STOP:
        return (True,)
    if kind is not None:
        return (False,)
    return (False, True)


class OrderLookup:
    """Reads orders back by client id through one ccxt client."""

    def __init__(self, client: Any, *, binance: bool, secrets: Sequence[str]) -> None:
        self._client = client
        self._binance = binance
        self._secrets = tuple(secrets)

    def _map(self, exc: BaseException) -> ExchangeError:
        return map_error(exc, self._secrets)

    async def find(self, unified: str, client_order_id: str, trigger: bool) -> dict[str, Any] | None:
        """One book's order with this client id, or None when the exchange says there is none."""
        if self._binance:
            # GET /fapi/v1/order?origClientOrderId=… or GET /fapi/v1/algoOrder?clientAlgoId=…
            params: dict[str, Any] = {"clientOrderId": client_order_id}
            if trigger:
                params["trigger"] = True
            try:
                found: dict[str, Any] = await raw_call(self._client.fetch_order, None, unified, params)
            except ccxt_errors.BaseError as exc:
                if is_not_found(exc):
                    return None
                raise self._map(exc) from None
            return found
        return await self._find_generic(unified, client_order_id, trigger)

    async def _find_generic(self, unified: str, client_order_id: str,
                            trigger: bool) -> dict[str, Any] | None:
        """Bybit and the like: open orders, then finished ones, filtered by the client id."""
        params: dict[str, Any] = {"orderLinkId": client_order_id}
        if trigger:
            params["trigger"] = True
        for method in ("fetch_open_orders", "fetch_canceled_and_closed_orders"):
            fn = getattr(self._client, method)
            try:
                orders = await raw_call(fn, unified, None, None, params)
            except ccxt_errors.BaseError as exc:
                if is_not_found(exc):
                    continue
                raise self._map(exc) from None
            for order in orders or []:
                if order.get("clientOrderId") == client_order_id:
                    found: dict[str, Any] = order
                    return found
        return None

    async def read_back(self, unified: str, client_order_id: str, kind: OrderKind | None, *,
                         trigger: bool | None = None) -> dict[str, Any] | None:
        books = (trigger,) if trigger is not None else books_for(kind)
        for flag in books:
            found = await self.find(unified, client_order_id, flag)
            if found is not None:
                return found
        return None

    async def await_fill(self, unified: str, request: OrderRequest,
                          order: dict[str, Any]) -> dict[str, Any]:
        """A market order acknowledged as open is read back until it is no longer open."""
        for _ in range(FILL_POLLS):
            if order.get("status") != "open":
                return order
            await trio.sleep(FILL_POLL_INTERVAL)
            found = await self.find(unified, request.client_order_id, False)
            if found is not None:
                order = found
        return order

    async def cancel(self, unified: str, client_order_id: str) -> tuple[dict[str, Any], OrderKind | None, bool]:
        """Cancel by client id in the order's book: (the order as known after, its kind, whether the
        answer said too little and the order is to be taken as CANCELED unless read back)."""
        kind = kind_of(client_order_id)
        books = books_for(kind)
        for i, trigger in enumerate(books):
            params: dict[str, Any] = {"clientOrderId": client_order_id}
            if trigger:
                params["trigger"] = True
            try:
                order: dict[str, Any] = await raw_call(self._client.cancel_order, None, unified, params)
            except ccxt_errors.BaseError as exc:
                if is_not_found(exc) and i + 1 < len(books):
                    continue  # a foreign id: try the other book
                raise self._map(exc) from None
            if not order.get("side") or order.get("amount") is None:
                # Binance's algo cancel answers {algoId, clientAlgoId, code, msg} only.
                found = await self.read_back(unified, client_order_id, kind, trigger=trigger)
                return (found if found is not None else order), kind, True
            return order, kind, False
        raise PermanentError(f"-2011 Unknown order sent ({client_order_id}).")

    async def state(self, order: Mapping[str, Any], native: str, *, request: OrderRequest | None = None,
                    client_order_id: str | None = None, kind: OrderKind | None = None,
                    default_status: OrderStatus | None = None) -> OrderState:
        """The engine's view of a ccxt order, a triggered Binance stop resolved by the order it became."""
        state = order_state(order, native, request=request, client_order_id=client_order_id, kind=kind,
                            default_status=default_status)
        algo = algo_status(order)
        if algo in ALGO_RESOLVED_BY_FILL:
            # Triggered: an exit only with the fill found on the order it became. FINISHED with
            # that order unfilled (expired in the matching engine) is a stop that is gone; not
            # found, or still resting (TRIGGERED), stays UNKNOWN: the position has no working stop.
            fill = await self.triggered_fill(order)
            if fill.filled > 0:
                state = attrs.evolve(state, status=OrderStatus.FILLED, filled_quantity=fill.filled,
                                     average_price=fill.average)
            elif algo == "FINISHED" and fill.finished:
                state = attrs.evolve(state, status=OrderStatus.CANCELED)
        return state

    async def triggered_fill(self, order: Mapping[str, Any]) -> TriggeredFill:
        """A triggered Binance algo order reports no fill itself; the order it became does.

        The algo order names that order (`actualOrderId`). Nothing else counts as a fill:
        not the algo order's quantity, not its `actualPrice` (which it carries whether or not
        the order filled). A look-up that fails raises, so the caller learns nothing rather
        than something false.
        """
        info = order.get("info") or {}
        actual = info.get("actualOrderId")
        unified = order.get("symbol")
        if actual in (None, "", "0", 0) or not unified:
            return TriggeredFill(0.0, None, False)
        try:
            placed = await raw_call(self._client.fetch_order, str(actual), unified)
        except ccxt_errors.BaseError as exc:
            if is_not_found(exc):
                return TriggeredFill(0.0, None, False)
            raise self._map(exc) from None
        filled = number(placed.get("filled")) or 0.0
        average = number(placed.get("average"))
        return TriggeredFill(filled, average if filled > 0 else None,
                             placed.get("status") in ("closed", "canceled", "expired", "rejected"))


@attrs.frozen
class TriggeredFill:
    """What the order a triggered stop became shows: its fill, and whether it is over."""

    filled: float
    average: float | None
    finished: bool

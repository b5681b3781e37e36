"""An in-process USDⓈ-M futures account (one-way mode) for simulations and paper runs.

It is deliberately strict where Binance is strict, because those refusals are
what the engine must survive: reduce-only orders never open or flip a
position, a stop that would trigger at once is refused, a client order id can
be used only once. Every wait is a Trio sleep taken through the `FaultPlan`,
so under `MockClock` a simulated hour of latency and hangs costs nothing, and
every state change happens inside the plan's action so `lost_response` leaves
the exchange changed while the caller never hears back.

Rejected orders are not stored (as on Binance, where a refused order has no
order id): looking one up gives None and its client id may be sent again.

The network face is this module: latency, faults and the `Exchange` port. What the exchange
holds and how orders match is `SimAccount` (adapters.sim.matching), whose synchronous methods
(`set_price`, the snapshots, `fills`, the invariant helpers) are the simulator's view of the
truth: no latency, no faults, so the report checks what the exchange *holds*, not what a call
says. Orders live in `order_book`, money and positions in `ledger`; `account_state` is the
account as plain data and the `Journal` a paper account is kept by (every change handed to it
before the call that made it returns).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import trio

from adapters.sim.faults import FaultPlan
from adapters.sim.ledger import Fill
from adapters.sim.matching import SimAccount, market_from_spec
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from engine.call_points import CallPoint
from engine.model import Balance, ExchangePosition, Market, OrderKind, OrderRequest, OrderSide, OrderState, Side

if TYPE_CHECKING:
    from engine.ports import Exchange

__all__ = ["Fill", "SimAccount", "SimExchange", "market_from_spec", "position_side"]

T = TypeVar("T")

# Per-call latency spread (see `SimExchange._delay`): steps of 0.1 ns, below 10 µs in all.
_SPREAD_STEPS = 100_000
_SPREAD_UNIT = 1e-10


def position_side(side: OrderSide, kind: OrderKind) -> Side:
    """The side of the position an order belongs to: what scenario `match.side` names."""
    buying = side is OrderSide.BUY
    if kind is OrderKind.ENTRY:
        return Side.LONG if buying else Side.SHORT
    return Side.SHORT if buying else Side.LONG


class SimExchange(SimAccount):
    """Implements `engine.ports.Exchange` in Trio time; see the module docstring."""

    def __init__(
        self,
        markets: Mapping[str, Market] | Iterable[MarketSpec],
        prices: Mapping[str, float] | None = None,
        *,
        balance_usdt: float = 10_000.0,
        latency: float = 0.05,
        faults: FaultPlan | None = None,
        reuse_closed_ids: bool = False,
        history: int | None = None,
    ) -> None:
        """`latency`: virtual seconds per call; `faults`: what goes wrong, and when. The other
        arguments are `SimAccount`'s."""
        super().__init__(markets, prices, balance_usdt=balance_usdt, reuse_closed_ids=reuse_closed_ids,
                         history=history)
        self._latency = latency
        self._faults = faults if faults is not None else FaultPlan()

    @classmethod
    def from_spec(cls, spec: ExchangeSpec, faults: FaultPlan | None = None, *,
                  history: int | None = None) -> SimExchange:
        return cls(spec.markets, balance_usdt=spec.balance_usdt, latency=spec.latency, faults=faults,
                   history=history)

    # --- the Exchange port ---

    async def load_markets(self) -> dict[str, Market]:
        return await self._query(lambda: dict(self._markets), what="markets")

    async def fetch_prices(self, symbols: Sequence[str]) -> dict[str, float]:
        # A one-symbol read can be matched by a `symbol` fault; a batch belongs to no symbol.
        only = symbols[0] if len(symbols) == 1 else None
        return await self._query(
            lambda: {s: self._prices[s] for s in symbols if s in self._prices}, symbol=only,
            what="prices " + ",".join(symbols))

    async def fetch_balance(self) -> Balance:
        return await self._query(self._ledger.balance_now, what="balance")

    async def fetch_positions(self) -> list[ExchangePosition]:
        return await self._query(self.positions_snapshot, what="positions")

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        return await self._query(lambda: self._find(symbol, client_order_id), symbol=symbol,
                                 side=self._side_of(client_order_id), what=f"order {client_order_id}")

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        return await self._query(
            lambda: [o for o in self.open_orders_snapshot() if symbol is None or o.symbol == symbol],
            symbol=symbol, what=f"open orders {symbol}")

    async def place_order(self, request: OrderRequest) -> OrderState:
        async def action() -> OrderState:
            self._commit()  # a change an earlier call could not keep comes first
            placed = self._place(request)
            self._commit()
            return placed

        side = position_side(request.side, request.kind)
        return await self._faults.run(CallPoint.placing(request.kind), action, symbol=request.symbol,
                                      side=side.value, latency=self._delay(f"place {request.client_order_id}"))

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState:
        async def action() -> OrderState:
            self._commit()
            cancelled = self._cancel(symbol, client_order_id)
            self._commit()
            return cancelled

        return await self._faults.run(CallPoint.CANCEL_ORDER, action, symbol=symbol,
                                      side=self._side_of(client_order_id),
                                      latency=self._delay(f"cancel {client_order_id}"))

    async def stream_prices(self, on_price: Callable[[str, float], None]) -> None:
        """Every `set_price` reaches `on_price` synchronously: no buffer, so nothing to overflow."""
        self._listeners.append(on_price)
        try:
            await trio.sleep_forever()
        finally:
            self._listeners.remove(on_price)

    # --- internals ---

    async def _query(self, read: Callable[[], T], *, what: str, symbol: str | None = None,
                     side: str | None = None) -> T:
        async def action() -> T:
            self._commit()  # while a change cannot be kept, the account does not answer
            return read()

        return await self._faults.run(CallPoint.QUERY, action, symbol=symbol, side=side,
                                      latency=self._delay(what))

    def _delay(self, what: str) -> float:
        """The latency of one call: `latency` plus a spread of at most 10 µs fixed by *what* the
        call is (its kind and client order id or symbols), never by when or by whom it was sent.

        Requests that leave at the same virtual instant therefore reach the exchange, and
        their answers reach the engine, in an order set by their content instead of by Trio's
        randomised scheduling, as on a real network where no two arrive at the same instant.
        Same scenario, same report.
        """
        if not self._latency:
            return 0.0
        return self._latency + (zlib.crc32(what.encode()) % _SPREAD_STEPS) * _SPREAD_UNIT

    def _side_of(self, client_order_id: str) -> str | None:
        order = self._book.get(client_order_id)
        return position_side(order.side, order.kind).value if order else None


if TYPE_CHECKING:
    def _conforms(exchange: SimExchange) -> Exchange:
        """mypy proves here that `SimExchange` satisfies the port."""
        return exchange

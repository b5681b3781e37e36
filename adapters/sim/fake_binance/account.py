"""One Binance USDⓈ-M futures account behind the fake server: orders, the algo service, settings.

Plain orders go straight to the account's `SimExchange`. Conditional orders are
Binance *algo* orders: they rest in the simulator too, but the simulator asks
this account (its trigger gate) before executing one, and the account plays
Binance's algo service: a triggered order goes through TRIGGERING and
TRIGGERED to FINISHED, and the `exchange.stop_trigger` faults can stop it on
the way (stuck TRIGGERING, resting TRIGGERED, FINISHED without a fill,
REJECTED, EXPIRED), exactly the states a client must not mistake for a fill.

Client ids need only be unique among *open* orders (-4116 plain, -20132 algo):
the id of a finished order may be used again and makes a new order.

Market orders meet Binance's price protection: one whose counterparty's best price
(here the last price; bid = ask) is beyond the mark price times PERCENT_PRICE's
multipliers is refused (-4131), and where the book is thin (`depth`, the quantity a
market order finds inside those bounds) it fills that much and the rest expires
(status EXPIRED with an `executedQty` below `origQty`). A stop's -2021 "would
immediately trigger" is judged on the price its `workingType` names.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import trio

from adapters.sim.exchange import SimExchange, position_side
from adapters.sim.fake_binance import params as p
from adapters.sim.fake_binance import shapes, user_stream
from adapters.sim.fake_binance.params import Intent, Limits, Rejection
from adapters.sim.fake_binance.shapes import JSON, OrderMeta
from adapters.sim.faults import FaultPlan
from adapters.sim.scenario import FaultSpec, MarketSpec
from engine.call_points import CallPoint
from engine.errors import DuplicateOrderError, PermanentError
from engine.model import Market, OrderKind, OrderRequest, OrderSide, OrderState, OrderStatus

DEFAULT_LEVERAGE = 20  # what Binance gives a symbol the account never set
MARGIN_TYPES = ("CROSSED", "ISOLATED")
Spawn = Callable[[Callable[[], Any]], None]


def crossed(order: OrderState, price: float) -> bool:
    assert order.stop_price is not None
    return price <= order.stop_price if order.side is OrderSide.SELL else price >= order.stop_price


def now_ms() -> int:
    return int(time.time() * 1000)


class Account:
    """One API key's account; see the module docstring."""

    def __init__(self, markets: dict[str, Market], specs: Iterable[MarketSpec], balance_usdt: float,
                 limits: dict[str, Limits], plan: FaultPlan, *, api_key: str, api_secret: str) -> None:
        self.api_key, self.api_secret = api_key, api_secret
        self.markets, self.limits, self.plan = markets, limits, plan
        self.exchange = SimExchange(list(specs), balance_usdt=balance_usdt, latency=0.0, reuse_closed_ids=True)
        self.exchange.trigger_gate = self._gate
        self.leverages: dict[str, int] = {}
        for symbol, market in markets.items():
            self.set_leverage(symbol, min(DEFAULT_LEVERAGE, market.max_leverage))
        self.margin_type: dict[str, str] = {}
        self.dual_side = False
        self.orders: dict[str, OrderMeta] = {}  # by client id: the newest order using it
        self.late: dict[str, tuple[dict[str, str], bool]] = {}  # accepted while answering 503
        self.spawn: Spawn | None = None  # the server's nursery, for delayed outcomes
        self.mark: Callable[[str], float] = self.exchange.price  # the server's mark price
        self.emit: Callable[[JSON], None] = lambda event: None  # the account's user data stream
        self._next_actual_id = 1_000_000_001  # ids of the orders triggered algo orders become
        self._next_auto_id = 1
        self.exchange.refuse_immediate_stops = False  # judged here, on the workingType's price
        self.depth: dict[str, float] = {}  # quantity a market order fills inside the price band (absent: all)

    # --- settings ---

    def set_leverage(self, symbol: str, leverage: int) -> None:
        try:
            self.exchange.set_leverage(symbol, leverage)
        except PermanentError as exc:
            raise Rejection.from_message(str(exc), -4028) from None
        self.leverages[symbol] = leverage

    def set_margin_type(self, symbol: str, margin_type: str) -> None:
        if margin_type not in MARGIN_TYPES:
            raise Rejection(-4044, "The margin type is invalid.") if margin_type else p.missing("marginType")
        if self.margin_type.get(symbol, "CROSSED") == margin_type:
            raise Rejection(-4046, "No need to change margin type.")
        if any(o.symbol == symbol for o in self.exchange.open_orders_snapshot()):
            raise Rejection(-4047, "Margin type cannot be changed if there exists open orders.")
        if any(h.symbol == symbol for h in self.exchange.positions_snapshot()):
            raise Rejection(-4048, "Margin type cannot be changed if there exists position.")
        self.margin_type[symbol] = margin_type

    def set_dual_side(self, dual: bool) -> None:
        if dual == self.dual_side:
            raise Rejection(-4059, "No need to change position side.")
        if self.exchange.open_orders_snapshot():
            raise Rejection(-4067, "Position side cannot be changed if there exists open orders.")
        if self.exchange.positions_snapshot():
            raise Rejection(-4068, "Position side cannot be changed if there exists position.")
        self.dual_side = dual

    # --- new orders ---

    def intent(self, params: dict[str, str], *, algo: bool) -> Intent:
        symbol = self.symbol(params)
        return p.intent(params, self.markets[symbol], self.limits[symbol], algo=algo, dual_side=self.dual_side)

    def symbol(self, params: dict[str, str]) -> str:
        symbol = params.get("symbol")
        if not symbol:
            raise p.missing("symbol")
        if symbol not in self.markets:
            raise Rejection(-1121, "Invalid symbol.")
        return symbol

    def assign_client_id(self, params: dict[str, str], *, algo: bool) -> str:
        """The client id an order is known by; Binance makes one up when none is sent."""
        key = "clientAlgoId" if algo else "newClientOrderId"
        if not params.get(key):
            params[key] = f"fake_auto_{self._next_auto_id}"
            self._next_auto_id += 1
        return params[key]

    async def place(self, params: dict[str, str], *, algo: bool) -> tuple[OrderState, OrderMeta]:
        intent = self.intent(params, algo=algo)
        client_id = self.assign_client_id(params, algo=algo)
        earlier = self.orders.get(client_id)
        if earlier is not None and earlier.algo == algo and self._is_open(earlier):
            raise (Rejection(-20132, "The client algo id is duplicated.") if algo
                   else Rejection(-4116, "ClientOrderId is duplicated."))
        quantity = intent.quantity
        if algo:
            self._check_trigger(intent)
        else:
            quantity = self._market_fill(intent)
        request = OrderRequest(intent.symbol, intent.side, intent.kind, quantity, client_id, intent.stop_price)
        try:
            order = await self.exchange.place_order(request)
        except DuplicateOrderError:  # the same id open in the other book
            raise Rejection(-4116, "ClientOrderId is duplicated.") from None
        except PermanentError as exc:
            raise Rejection.from_message(str(exc), -2010) from None
        now = now_ms()
        meta = OrderMeta(client_id, order.symbol, order.side, order.kind, int(order.exchange_order_id or 0),
                         algo, intent.type, now, closed_ms=None if order.status is OrderStatus.NEW else now,
                         working_type=intent.working_type,
                         orig_qty=None if algo or quantity >= intent.quantity else intent.quantity)
        self.orders[client_id] = meta
        if algo:
            self.emit(user_stream.algo_update(order, meta, "NEW"))
        else:
            self.emit(user_stream.order_trade_update(order, meta))
            if meta.orig_qty is not None:
                self.emit(user_stream.expired_rest(order, meta))
            self.emit_position(order.symbol)
        return order, meta

    def _check_trigger(self, intent: Intent) -> None:
        """-2021: a stop already through its working price (the mark, or the last price) would fire at once."""
        assert intent.stop_price is not None
        price = self.mark(intent.symbol) if intent.working_type == "MARK_PRICE" else self.exchange.price(intent.symbol)
        immediate = intent.stop_price >= price if intent.side is OrderSide.SELL else intent.stop_price <= price
        if immediate:
            raise Rejection(-2021, "Order would immediately trigger.")

    def in_band(self, symbol: str, side: OrderSide) -> bool:
        """Whether a market order's counterparty price (the last price) is inside PERCENT_PRICE of the mark."""
        last, mark = self.exchange.price(symbol), self.mark(symbol)
        return last <= mark * shapes.MULTIPLIER_UP if side is OrderSide.BUY else last >= mark * shapes.MULTIPLIER_DOWN

    def _market_fill(self, intent: Intent) -> float:
        """How much of a market order fills now: -4131 outside the price band, else up to the book's depth."""
        if not self.in_band(intent.symbol, intent.side):
            raise Rejection(-4131, "The counterparty's best price does not meet the PERCENT_PRICE filter limit.")
        depth = self.depth.get(intent.symbol)
        if depth is None or depth >= intent.quantity:
            return intent.quantity
        step = self.markets[intent.symbol].step_size
        fillable = math.floor(depth / step + 1e-9) * step
        if fillable < step:  # nothing inside the band at all
            raise Rejection(-4131, "The counterparty's best price does not meet the PERCENT_PRICE filter limit.")
        return round(fillable, 12)

    def emit_position(self, symbol: str) -> None:
        held = {h.symbol: h for h in self.exchange.positions_snapshot()}.get(symbol)
        amount = 0.0 if held is None else held.side.sign * held.quantity
        entry = 0.0 if held is None else held.entry_price
        self.emit(user_stream.account_update(symbol, amount, entry, (self.mark(symbol) - entry) * amount,
                                             self.exchange.wallet_balance))

    def settled(self, client_id: str) -> None:
        """An algo order left the book on its own (filled or expired by the simulator): tell the stream."""
        meta, order = self.orders.get(client_id), self.exchange.order(client_id)
        if meta is None or order is None or not meta.algo:
            return
        self.emit(user_stream.algo_update(order, meta, shapes.algo_status(order, meta)))
        if meta.actual_order_id is not None:
            self.emit(user_stream.order_trade_update(order, meta, actual=True))
        if order.status is OrderStatus.FILLED:
            self.emit_position(order.symbol)

    def _is_open(self, meta: OrderMeta) -> bool:
        order = self.exchange.open_orders_snapshot()
        return any(o.client_order_id == meta.client_id for o in order)

    def accept_late(self, params: dict[str, str], *, algo: bool, fault: FaultSpec) -> None:
        """A 503/-1007 answer for an order that executes anyway: after `seconds`, else after a look-up."""
        client_id = self.assign_client_id(params, algo=algo)
        self.late[client_id] = (dict(params), algo)
        if fault.seconds > 0 and self.spawn is not None:
            async def later() -> None:
                await trio.sleep(fault.seconds)
                await self.execute_late(client_id)
            self.spawn(later)

    async def execute_late(self, client_id: str) -> None:
        pending = self.late.pop(client_id, None)
        if pending is None:
            return
        with contextlib.suppress(Rejection):  # refused when it finally ran, as Binance would
            await self.place(pending[0], algo=pending[1])

    # --- the algo service ---

    def _gate(self, order: OrderState, price: float) -> bool:
        """Asked by the simulator when a resting stop is crossed: True executes it now."""
        meta = self.orders.get(order.client_order_id)
        if meta is None or not meta.algo:
            return True
        if meta.held:
            return False
        if meta.working_type == "MARK_PRICE" and not crossed(order, self.mark(order.symbol)):
            return False  # a wick on the last price: the mark price has not reached the stop
        return self._trigger(meta, order)

    def on_mark(self, symbol: str) -> None:
        """The mark price moved on its own: fire the MARK_PRICE stops it crossed."""
        mark = self.mark(symbol)
        for order in self.exchange.open_orders_snapshot():
            meta = self.orders.get(order.client_order_id)
            if order.symbol == symbol and meta is not None and meta.algo and not meta.held \
                    and meta.working_type == "MARK_PRICE" and crossed(order, mark) and self._trigger(meta, order):
                self.exchange.release_stop(order.client_order_id, execute=True)
                meta.closed_ms = now_ms()
                self.settled(order.client_order_id)

    def _trigger(self, meta: OrderMeta, order: OrderState) -> bool:
        """Binance's algo service takes a triggered stop: True places its market order now."""
        meta.triggered_ms = now_ms()
        side = position_side(order.side, order.kind).value
        fault = self.plan.pick(CallPoint.STOP_TRIGGER, symbol=order.symbol, side=side)
        if fault is None and self.in_band(order.symbol, order.side):
            meta.actual_order_id = self._actual_id()
            return True
        meta.held = True
        # Its market order outside the price band: expired unfilled in the matching engine.
        effect = fault.effect if fault is not None else "unfilled"
        seconds = fault.seconds if fault is not None else 0.0
        if effect in ("hang", "delay"):
            meta.algo_status = "TRIGGERING"
            self.emit(user_stream.algo_update(order, meta, "TRIGGERING"))
            if effect == "delay":
                self._release_later(meta, seconds, execute=True)
            return False
        if effect == "stall":
            meta.algo_status, meta.actual_order_id = "TRIGGERED", self._actual_id()
            self.emit(user_stream.algo_update(order, meta, "TRIGGERED"))
            if seconds > 0:
                self._release_later(meta, seconds, execute=True)
            return False
        # Terminal without a fill: FINISHED (its order expired unfilled), REJECTED or EXPIRED.
        meta.algo_status = {"unfilled": "FINISHED", "reject": "REJECTED", "expire": "EXPIRED"}[effect]
        if effect == "unfilled":
            meta.actual_order_id = self._actual_id()
        meta.closed_ms = now_ms()
        gone = self.exchange.release_stop(order.client_order_id, execute=False)
        self.emit(user_stream.algo_update(gone, meta, meta.algo_status))
        if meta.actual_order_id is not None:
            self.emit(user_stream.order_trade_update(gone, meta, actual=True))
        return False

    def _actual_id(self) -> int:
        self._next_actual_id += 1
        return self._next_actual_id - 1

    def _release_later(self, meta: OrderMeta, seconds: float, *, execute: bool) -> None:
        if self.spawn is None:
            return

        async def release() -> None:
            await trio.sleep(seconds)
            if meta.actual_order_id is None:
                meta.actual_order_id = self._actual_id()
            meta.algo_status, meta.held = None, False
            self.exchange.release_stop(meta.client_id, execute=execute)
            meta.closed_ms = now_ms()
            self.settled(meta.client_id)

        self.spawn(release)

    # --- look-ups and cancels ---

    def meta_of(self, order: OrderState) -> OrderMeta:
        """Our record of an order, made up for one placed behind our back (straight on the simulator)."""
        meta = self.orders.get(order.client_order_id)
        if meta is None:
            stop = order.kind is OrderKind.STOP
            meta = OrderMeta(order.client_order_id, order.symbol, order.side, order.kind,
                             int(order.exchange_order_id or 0), stop, "STOP_MARKET" if stop else "MARKET", now_ms())
            self.orders[order.client_order_id] = meta
        if order.status is not OrderStatus.NEW and meta.closed_ms is None:
            meta.closed_ms = now_ms()
        if meta.algo and order.status is OrderStatus.FILLED and meta.actual_order_id is None:
            meta.actual_order_id = self._actual_id()
        return meta

    def meta_by_ref(self, params: dict[str, str], algo: bool) -> OrderMeta | None:
        """The order a query/cancel names, by client id or by exchange id, in its own family."""
        client_id = params.get("clientAlgoId" if algo else "origClientOrderId")
        raw_id = params.get("algoId" if algo else "orderId")
        if client_id:
            return self.orders.get(client_id)
        for meta in self.orders.values():
            if raw_id and str(meta.order_id) == raw_id and meta.algo == algo:
                return meta
        if not raw_id:
            return None
        for order in self.exchange.open_orders_snapshot():  # resting orders placed behind our back
            if order.exchange_order_id == raw_id:
                return self.meta_of(order)
        return None

    async def lookup(self, params: dict[str, str], *, algo: bool) -> tuple[OrderState, OrderMeta] | None:
        symbol = self.symbol(params)
        keys = ("algoId", "clientAlgoId") if algo else ("orderId", "origClientOrderId")
        if not any(params.get(k) for k in keys):
            raise Rejection(-1102, f"Param {keys[0]} or {keys[1]} must be sent, but both were empty/null!")
        meta = self.meta_by_ref(params, algo)
        client_id = meta.client_id if meta else params.get(keys[1]) or ""
        order = await self.exchange.fetch_order(symbol, client_id)
        if order is None:
            return None
        return order, self.meta_of(order)

    async def after_lookup(self, params: dict[str, str]) -> None:
        """A late (503) order named by this look-up executes now: after the client was told "no"."""
        for key in ("origClientOrderId", "clientAlgoId"):
            client_id = params.get(key)
            if client_id and client_id in self.late:
                await self.execute_late(client_id)

    async def actual_order(self, params: dict[str, str]) -> tuple[OrderState, OrderMeta] | None:
        """GET /fapi/v1/order also finds the market order a triggered algo order became."""
        symbol = self.symbol(params)
        for meta in list(self.orders.values()):
            if not meta.algo or meta.symbol != symbol or meta.actual_order_id is None:
                continue
            if params.get("origClientOrderId") == meta.client_id or params.get("orderId") == str(
                    meta.actual_order_id):
                order = await self.exchange.fetch_order(symbol, meta.client_id)
                if order is not None:
                    return order, self.meta_of(order)
        return None

    async def cancel(self, params: dict[str, str], *, algo: bool) -> tuple[OrderState, OrderMeta]:
        found = await self.lookup(params, algo=algo)
        if found is None or found[1].algo != algo or found[1].held:
            raise Rejection(-2011, "Unknown order sent.")  # a triggering algo order is past cancelling
        order, meta = found
        try:
            order = await self.exchange.cancel_order(order.symbol, order.client_order_id)
        except PermanentError:
            raise Rejection(-2011, "Unknown order sent.") from None
        meta.canceled = True
        meta.closed_ms = now_ms()
        if algo:
            self.emit(user_stream.algo_update(order, meta, "CANCELED"))
        else:
            self.emit(user_stream.order_trade_update(order, meta))
        return order, meta

    def resting(self, symbols: set[str], *, algo: bool) -> list[tuple[OrderState, OrderMeta]]:
        found = [(o, self.meta_of(o)) for o in self.exchange.open_orders_snapshot() if o.symbol in symbols]
        return [(o, m) for o, m in found if m.algo == algo]

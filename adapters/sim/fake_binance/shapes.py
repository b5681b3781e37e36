"""Binance USDⓈ-M JSON shapes built from the simulator's values.

Field names and string-typed numbers follow Binance, because ccxt's parsers
read exactly those keys (`executedQty`, `avgPrice`, `algoStatus`, ...) and a
missing key silently becomes `None` in the parsed order rather than an error.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import attrs

from adapters.sim.exchange import position_side
from adapters.sim.fake_binance.limits import RateLimits
from adapters.sim.fake_binance.params import Limits
from engine.model import ExchangePosition, Market, OrderKind, OrderSide, OrderState, OrderStatus, Side
from engine.sizing import floor_to

QUOTES = ("USDT", "USDC")
ONBOARD_MS = 1_569_398_400_000  # 2019-09-25, when BTCUSDT perpetual was listed
PERPETUAL_DELIVERY_MS = 4_133_404_800_000  # Binance's "never" for perpetuals
MAX_PRICE = 10_000_000
MAX_QTY = 100_000_000
MARKET_NOTIONAL_CAP = 1_000_000  # USDT a single market order may move, at the listing price
# PERCENT_PRICE: a market order whose counterparty's best price is beyond the mark price times
# these is refused (-4131), and what a thin book cannot fill inside them expires.
MULTIPLIER_UP, MULTIPLIER_DOWN = 1.05, 0.95
ORDER_TYPES = ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
               "TRAILING_STOP_MARKET"]

JSON = dict[str, Any]


def limits_for(market: Market, price: float) -> Limits:
    """Binance's MARKET_LOT_SIZE is far below LOT_SIZE (BTCUSDT: 120 vs 1000): a big close
    must be split. Here the market cap is about a million USDT at the listing price."""
    market_max = max(floor_to(MARKET_NOTIONAL_CAP / price, market.step_size), market.step_size)
    return Limits(max_qty=market_max * 10, market_max_qty=market_max, max_price=MAX_PRICE)


def fmt(value: float) -> str:
    """A plain decimal string (never exponent notation), trimmed of float noise.

    Twelve significant digits: 10000 - 9983.736 must read "16.264", as Binance's
    fixed-point figures would, not "16.26399999999876".
    """
    text = format(Decimal(f"{float(value):.12g}"), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def decimals(step: float) -> int:
    exponent = Decimal(repr(float(step))).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def split_symbol(symbol: str) -> tuple[str, str]:
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(f"{symbol}: a USDⓈ-M symbol must end in one of {', '.join(QUOTES)}")


def maint_margin_ratio(market: Market) -> float:
    """Half the initial margin at maximum leverage, as Binance's first bracket roughly is."""
    return 0.5 / market.max_leverage


@attrs.define
class OrderMeta:
    """What Binance knows about an order that the simulator's `OrderState` does not."""

    client_id: str
    symbol: str
    side: OrderSide
    kind: OrderKind
    order_id: int  # orderId of a plain order, algoId of an algo order
    algo: bool
    type: str
    created_ms: int
    closed_ms: int | None = None  # first time the server saw it filled/canceled/expired
    canceled: bool = False  # by a cancel request; a stop the simulator cancels has expired
    actual_order_id: int | None = None  # the market order a triggered algo order became
    working_type: str = "CONTRACT_PRICE"
    triggered_ms: int | None = None
    held: bool = False  # the algo service holds it: triggering, or resting in the matching engine
    algo_status: str | None = None  # set by the algo service where the simulator's status says less
    orig_qty: float | None = None  # a market order that filled only in part: what was asked (the rest expired)

    @property
    def position_side(self) -> Side:
        return position_side(self.side, self.kind)


def _status(order: OrderState, meta: OrderMeta, *, filled: str) -> str:
    """Binance's status word; a filled algo order says FINISHED where a plain one says FILLED."""
    if order.status is OrderStatus.NEW:
        return "NEW"
    if order.status is OrderStatus.FILLED:
        return filled if meta.orig_qty is None else "EXPIRED"  # partly filled, the rest expired
    return "CANCELED" if meta.canceled else "EXPIRED"


def algo_status(order: OrderState, meta: OrderMeta) -> str:
    """NEW, TRIGGERING, TRIGGERED, FINISHED (filled *or* expired in the matching engine),
    CANCELED (by the user), EXPIRED (by the system), REJECTED."""
    if meta.algo_status is not None:
        return meta.algo_status
    if order.status is OrderStatus.NEW:
        return "NEW"
    if order.status is OrderStatus.FILLED:
        return "FINISHED"
    if meta.canceled:
        return "CANCELED"
    return "FINISHED" if meta.actual_order_id is not None else "EXPIRED"


def order_json(order: OrderState, meta: OrderMeta, *, placed: bool = False) -> JSON:
    """A plain order; `placed` gives the POST answer, which has no `time` on Binance."""
    filled = order.filled_quantity
    average = order.average_price or 0.0
    data: JSON = {
        "orderId": meta.order_id, "symbol": order.symbol, "status": _status(order, meta, filled="FILLED"),
        "clientOrderId": order.client_order_id, "price": "0", "avgPrice": fmt(average) if filled else "0",
        "origQty": fmt(meta.orig_qty or order.quantity), "executedQty": fmt(filled), "cumQty": fmt(filled),
        "cumQuote": fmt(filled * average), "timeInForce": "GTC", "type": meta.type, "origType": meta.type,
        "reduceOnly": order.reduce_only, "closePosition": False, "side": order.side.value.upper(),
        "positionSide": "BOTH", "stopPrice": fmt(order.stop_price or 0.0), "workingType": meta.working_type,
        "priceProtect": False, "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0, "updateTime": meta.closed_ms or meta.created_ms,
    }
    if not placed:
        data["time"] = meta.created_ms
    return data


def actual_order_json(order: OrderState, meta: OrderMeta) -> JSON:
    """The market order a triggered algo order became (it carries the algo's client id):
    FILLED, still NEW in the matching engine (TRIGGERED), or EXPIRED there unfilled."""
    assert meta.actual_order_id is not None
    status = algo_status(order, meta)
    filled = order.filled_quantity if order.status is OrderStatus.FILLED else 0.0
    average = order.average_price or 0.0
    state = "FILLED" if filled else "NEW" if status == "TRIGGERED" else "EXPIRED"
    triggered_at = meta.triggered_ms or meta.closed_ms or meta.created_ms
    data = order_json(order, meta)
    return data | {"orderId": meta.actual_order_id, "type": "MARKET", "origType": meta.type, "stopPrice": "0",
                   "status": state, "executedQty": fmt(filled), "cumQty": fmt(filled),
                   "avgPrice": fmt(average) if filled else "0", "cumQuote": fmt(filled * average),
                   "time": triggered_at, "updateTime": meta.closed_ms or triggered_at}


def algo_json(order: OrderState, meta: OrderMeta) -> JSON:
    """A conditional algo order, field for field as Query Algo Order documents it: no
    `executedQty`/`avgPrice`; a triggered one names the order it became (`actualOrderId`)."""
    status = algo_status(order, meta)
    average = order.average_price or 0.0
    filled = order.status is OrderStatus.FILLED
    return {
        "algoId": meta.order_id, "clientAlgoId": order.client_order_id, "algoType": "CONDITIONAL",
        "orderType": meta.type, "symbol": order.symbol, "side": order.side.value.upper(),
        "positionSide": "BOTH", "timeInForce": "GTC", "quantity": fmt(order.quantity),
        "algoStatus": status,
        "actualOrderId": str(meta.actual_order_id) if meta.actual_order_id is not None else "",
        "actualPrice": fmt(average) if filled else "0", "triggerPrice": fmt(order.stop_price or 0.0),
        "price": "0", "icebergQuantity": None, "tpTriggerPrice": "0", "tpPrice": "0", "slTriggerPrice": "0",
        "slPrice": "0", "tpOrderType": "", "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": meta.working_type, "priceMatch": "NONE", "closePosition": False, "priceProtect": False,
        "reduceOnly": order.reduce_only, "createTime": meta.created_ms,
        "updateTime": meta.closed_ms or meta.triggered_ms or meta.created_ms,
        "triggerTime": meta.triggered_ms or 0, "goodTillDate": 0,
    }


def symbol_json(market: Market, limits: Limits) -> JSON:
    base, quote = split_symbol(market.symbol)
    tick, step = fmt(market.tick_size), fmt(market.step_size)
    lot = {"stepSize": step, "minQty": step, "maxQty": fmt(limits.max_qty)}
    return {
        "symbol": market.symbol, "pair": market.symbol, "contractType": "PERPETUAL",
        "deliveryDate": PERPETUAL_DELIVERY_MS, "onboardDate": ONBOARD_MS, "status": "TRADING",
        "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000", "baseAsset": base,
        "quoteAsset": quote, "marginAsset": quote, "pricePrecision": decimals(market.tick_size),
        "quantityPrecision": decimals(market.step_size), "baseAssetPrecision": 8, "quotePrecision": 8,
        "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
        "liquidationFee": "0.012500", "marketTakeBound": f"{MULTIPLIER_UP - 1:.2f}", "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "tickSize": tick, "minPrice": tick, "maxPrice": fmt(limits.max_price)},
            {"filterType": "LOT_SIZE", **lot},
            {"filterType": "MARKET_LOT_SIZE", **lot, "maxQty": fmt(limits.market_max_qty)},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": fmt(market.min_notional)},
            {"filterType": "PERCENT_PRICE", "multiplierUp": f"{MULTIPLIER_UP:.4f}",
             "multiplierDown": f"{MULTIPLIER_DOWN:.4f}", "multiplierDecimal": "4"},
        ],
        "orderTypes": ORDER_TYPES, "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def _interval(seconds: float) -> tuple[str, int]:
    for name, length in (("DAY", 86400), ("HOUR", 3600), ("MINUTE", 60)):
        if seconds >= length and seconds % length == 0:
            return name, int(seconds // length)
    return "SECOND", max(1, round(seconds))


def exchange_info(markets: list[Market], limits: dict[str, Limits], now_ms: int, rates: RateLimits) -> JSON:
    quotes = sorted({split_symbol(m.symbol)[1] for m in markets})
    return {
        "timezone": "UTC", "serverTime": now_ms, "futuresType": "U_MARGINED",
        "rateLimits": [
            {"rateLimitType": kind, "interval": _interval(window)[0], "intervalNum": _interval(window)[1],
             "limit": limit}
            for kind, window, limit in (("REQUEST_WEIGHT", rates.weight_window, rates.weight),
                                        ("ORDERS", rates.orders_window_1m, rates.orders_1m),
                                        ("ORDERS", rates.orders_window_10s, rates.orders_10s))],
        "exchangeFilters": [],
        "assets": [{"asset": q, "marginAvailable": True, "autoAssetExchange": "-10000"} for q in quotes],
        "symbols": [symbol_json(m, limits[m.symbol]) for m in markets],
    }


def ticker_24hr(symbol: str, price: float, open_price: float, now_ms: int) -> JSON:
    """One day of history is just the start price and now: enough for ccxt's `parse_ticker`."""
    change = price - open_price
    return {
        "symbol": symbol, "priceChange": fmt(change), "priceChangePercent": f"{100 * change / open_price:.3f}",
        "weightedAvgPrice": fmt(price), "lastPrice": fmt(price), "lastQty": "0", "openPrice": fmt(open_price),
        "highPrice": fmt(max(price, open_price)), "lowPrice": fmt(min(price, open_price)), "volume": "0",
        "quoteVolume": "0", "openTime": now_ms - 86_400_000, "closeTime": now_ms, "firstId": 0, "lastId": 0,
        "count": 0,
    }


def price_ticker(symbol: str, price: float, now_ms: int) -> JSON:
    return {"symbol": symbol, "price": fmt(price), "time": now_ms}


def book_ticker(symbol: str, price: float, now_ms: int) -> JSON:
    return {"symbol": symbol, "bidPrice": fmt(price), "bidQty": "0", "askPrice": fmt(price), "askQty": "0",
            "time": now_ms, "lastUpdateId": now_ms}


def premium_index(symbol: str, price: float, now_ms: int) -> JSON:
    next_funding = (now_ms // 28_800_000 + 1) * 28_800_000
    return {"symbol": symbol, "markPrice": fmt(price), "indexPrice": fmt(price),
            "estimatedSettlePrice": fmt(price), "lastFundingRate": "0.00010000", "interestRate": "0.00010000",
            "nextFundingTime": next_funding, "time": now_ms}


@attrs.frozen
class PositionFigures:
    """One symbol's position valued at the mark price: shared by account and positionRisk."""

    market: Market
    held: ExchangePosition | None
    mark: float
    leverage: int
    margin_type: str = "CROSSED"

    @property
    def isolated(self) -> bool:
        return self.margin_type == "ISOLATED"

    @property
    def amount(self) -> float:
        return 0.0 if self.held is None else self.held.side.sign * self.held.quantity

    @property
    def entry(self) -> float:
        return 0.0 if self.held is None else self.held.entry_price

    @property
    def notional(self) -> float:
        return self.amount * self.mark

    @property
    def unrealized(self) -> float:
        return (self.mark - self.entry) * self.amount

    @property
    def initial_margin(self) -> float:
        return abs(self.notional) / self.leverage

    @property
    def maint_margin(self) -> float:
        return abs(self.notional) * maint_margin_ratio(self.market)


def position_risk(fig: PositionFigures, now_ms: int, *, v2: bool) -> JSON:
    data: JSON = {
        "symbol": fig.market.symbol, "positionSide": "BOTH", "positionAmt": fmt(fig.amount),
        "entryPrice": fmt(fig.entry), "breakEvenPrice": fmt(fig.entry), "markPrice": fmt(fig.mark),
        "unRealizedProfit": fmt(fig.unrealized), "liquidationPrice": "0", "isolatedMargin": "0",
        "notional": fmt(fig.notional), "marginAsset": split_symbol(fig.market.symbol)[1], "isolatedWallet": "0",
        "initialMargin": fmt(fig.initial_margin), "maintMargin": fmt(fig.maint_margin),
        "positionInitialMargin": fmt(fig.initial_margin), "openOrderInitialMargin": "0", "adl": 0,
        "bidNotional": "0", "askNotional": "0", "updateTime": now_ms if fig.held else 0,
    }
    if v2:
        data |= {"leverage": str(fig.leverage), "marginType": "isolated" if fig.isolated else "cross",
                 "isAutoAddMargin": "false", "maxNotionalValue": fmt(MAX_QTY)}
    return data


def account_position(fig: PositionFigures, now_ms: int) -> JSON:
    return {"symbol": fig.market.symbol, "positionSide": "BOTH", "positionAmt": fmt(fig.amount),
            "unrealizedProfit": fmt(fig.unrealized), "isolatedMargin": "0", "notional": fmt(fig.notional),
            "isolatedWallet": "0", "initialMargin": fmt(fig.initial_margin),
            "maintMargin": fmt(fig.maint_margin), "updateTime": now_ms if fig.held else 0}


@attrs.frozen
class Funds:
    """The simulator's balance plus what the open positions add at the mark price.

    `available` is the simulator's `free` (wallet minus position margin, no unrealized
    profit): that is the figure its margin check refuses orders by.
    """

    asset: str
    wallet: float
    available: float
    unrealized: float
    maint_margin: float

    @property
    def used(self) -> float:
        return self.wallet - self.available

    def asset_json(self, now_ms: int) -> JSON:
        return {"asset": self.asset, "walletBalance": fmt(self.wallet), "unrealizedProfit": fmt(self.unrealized),
                "marginBalance": fmt(self.wallet + self.unrealized), "maintMargin": fmt(self.maint_margin),
                "initialMargin": fmt(self.used), "positionInitialMargin": fmt(self.used),
                "openOrderInitialMargin": "0", "crossWalletBalance": fmt(self.wallet),
                "crossUnPnl": fmt(self.unrealized), "availableBalance": fmt(self.available),
                "maxWithdrawAmount": fmt(self.available), "marginAvailable": True, "updateTime": now_ms}

    def balance_json(self, now_ms: int) -> JSON:
        return {"accountAlias": "SgsR", "asset": self.asset, "balance": fmt(self.wallet),
                "crossWalletBalance": fmt(self.wallet), "crossUnPnl": fmt(self.unrealized),
                "availableBalance": fmt(self.available), "maxWithdrawAmount": fmt(self.available),
                "marginAvailable": True, "updateTime": now_ms}

    def totals_json(self) -> JSON:
        return {"totalInitialMargin": fmt(self.used), "totalMaintMargin": fmt(self.maint_margin),
                "totalWalletBalance": fmt(self.wallet), "totalUnrealizedProfit": fmt(self.unrealized),
                "totalMarginBalance": fmt(self.wallet + self.unrealized),
                "totalPositionInitialMargin": fmt(self.used), "totalOpenOrderInitialMargin": "0",
                "totalCrossWalletBalance": fmt(self.wallet), "totalCrossUnPnl": fmt(self.unrealized),
                "availableBalance": fmt(self.available), "maxWithdrawAmount": fmt(self.available)}


def leverage_bracket(market: Market) -> JSON:
    """A single bracket: the simulator has one margin rule per market, not tiers."""
    return {"symbol": market.symbol, "notionalCoef": 1.0, "brackets": [
        {"bracket": 1, "initialLeverage": market.max_leverage, "notionalCap": MAX_QTY, "notionalFloor": 0,
         "maintMarginRatio": maint_margin_ratio(market), "cum": 0.0}]}


def is_finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0

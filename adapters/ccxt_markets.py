"""The exchange's market data (ccxt's `load_markets`) as the engine's `Market`s, range-checked.

Tick size, step size, minimum notional and quantity limits come from the exchange and
size every order the engine sends, so they are checked as strictly as a config value:
a filter that is missing, not a finite number, or outside the documented range refuses
that symbol (one line saying which figure, its value and what was expected), and the
engine never trades it, rather than rounding orders onto a nonsense grid.

ccxt uses TICK_SIZE precision for both exchanges, so `precision['price']` is the tick and
`precision['amount']` the step (Binance: PRICE_FILTER.tickSize and LOT_SIZE.stepSize);
the minimum notional is `limits['cost']['min']` (MIN_NOTIONAL), the largest market order
`limits['market']['max']` (Binance's MARKET_LOT_SIZE maxQty, far below LOT_SIZE's).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from ccxt.base import errors as ccxt_errors

from adapters.ccxt_errors import ExchangeAuthError, map_error
from adapters.ccxt_lookup import raw_call
from adapters.ccxt_orders import DEFAULT_MAX_LEVERAGE, SETTLE, number
from engine.checks import GRID_STEP, Range
from engine.errors import TransientError
from engine.model import Market

log = logging.getLogger("trio_bot.ccxt")

NOTIONAL = Range(0.0, 1e9)  # USDT: minimum notional
QUANTITY = Range(0.0, 1e12, low_open=True)  # a quantity cap (max qty), in contracts
MIN_QUANTITY = Range(0.0, 1e12)


@attrs.frozen
class MarketBook:
    """The tradable markets, keyed by native id, and what else the adapter needs per market."""

    markets: dict[str, Market]
    unified: dict[str, str]  # native id -> ccxt symbol
    market_max_qty: dict[str, float]  # native id -> the largest market order (absent: no cap known)
    refused: dict[str, str]  # native id -> why its market data was refused


def order_windows(exchange_info: Mapping[str, Any]) -> list[tuple[int, float]]:
    """Binance's published order-rate windows (exchangeInfo `rateLimits`, type ORDERS)
    as (limit, seconds)."""
    seconds = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}
    return [(int(w["limit"]), seconds[w["interval"]] * int(w.get("intervalNum", 1)))
            for w in exchange_info.get("rateLimits", [])
            if w.get("rateLimitType") == "ORDERS" and w.get("interval") in seconds]


def market_leverage(raw: Mapping[str, Any]) -> dict[str, int]:
    """Highest leverage per ccxt symbol where the market itself says (Bybit)."""
    found: dict[str, int] = {}
    for symbol, m in raw.items():
        top = number(((m.get("limits") or {}).get("leverage") or {}).get("max"))
        if top:
            found[symbol] = int(top)
    return found


def tier_leverage(tiers: Mapping[str, Any] | None) -> dict[str, int]:
    """Highest leverage per ccxt symbol from leverage tiers (Binance's brackets)."""
    found: dict[str, int] = {}
    for symbol, entries in (tiers or {}).items():
        values = [number(t.get("maxLeverage")) for t in entries or []]
        best = max((v for v in values if v), default=None)
        if best:
            found[symbol] = int(best)
    return found


async def max_leverage(client: Any, raw: Mapping[str, Any], secrets: Sequence[str]) -> dict[str, int]:
    """Highest leverage per ccxt symbol: from the market (Bybit) or the brackets (Binance).

    Binance's brackets are a signed call (`GET /fapi/v1/leverageBracket`), so a wrong key
    shows up here, at start-up. A server without the endpoint just leaves the default.
    """
    found = market_leverage(raw)
    if found or not client.has.get("fetchLeverageTiers"):
        return found
    try:
        tiers = await raw_call(client.fetch_leverage_tiers)
    except ccxt_errors.BaseError as exc:
        mapped = map_error(exc, secrets)
        if isinstance(mapped, ExchangeAuthError | TransientError):
            raise mapped from None
        log.warning("no leverage brackets (%s); using %d", mapped, DEFAULT_MAX_LEVERAGE)
        return found
    return tier_leverage(tiers)


class _Refused(Exception):
    pass


def _figure(native: str, name: str, raw: Any, allowed: Range, *, required: bool) -> float | None:
    if raw is None and not required:
        return None
    value = number(raw)
    if value is None or not allowed.contains(value):
        shown = "missing" if raw is None else repr(raw)
        raise _Refused(f"{native}: the exchange's {name} is {shown}, expected {allowed.describe()}; "
                       "the symbol is not traded")
    return value


def _checked(native: str, m: Mapping[str, Any], leverage: int, *, strict: bool) -> tuple[Market, float | None]:
    """One market's figures, or `_Refused` naming the first one out of range."""
    precision, limits = m.get("precision") or {}, m.get("limits") or {}
    tick = _figure(native, "tick size", precision.get("price"), GRID_STEP, required=True)
    step = _figure(native, "step size", precision.get("amount"), GRID_STEP, required=True)
    min_notional = _figure(native, "minimum notional", (limits.get("cost") or {}).get("min"), NOTIONAL,
                           required=strict) or 0.0
    amount, market = limits.get("amount") or {}, limits.get("market") or {}
    min_qty = _figure(native, "minimum quantity", amount.get("min"), MIN_QUANTITY, required=False)
    max_qty = _figure(native, "maximum quantity", amount.get("max"), QUANTITY, required=False)
    market_max = _figure(native, "maximum market order quantity", market.get("max"), QUANTITY, required=False)
    assert tick is not None and step is not None
    for name, cap in (("maximum quantity", max_qty), ("maximum market order quantity", market_max)):
        if cap is not None and (cap < step or (min_qty is not None and cap < min_qty)):
            raise _Refused(f"{native}: the exchange's {name} is {cap:g}, below its step size {step:g} or minimum "
                           f"quantity {min_qty or 0:g}; the symbol is not traded")
    return Market(native, tick, step, min_notional, leverage), market_max


def tradable_markets(raw: Mapping[str, Any], leverage: Mapping[str, int], *, strict: bool = True) -> MarketBook:
    """USDT-settled linear perpetuals that trade, with their figures checked (see the module
    docstring). `strict`: the minimum notional must be published too (Binance always does)."""
    book = MarketBook({}, {}, {}, {})
    for symbol, m in raw.items():
        if not (m.get("swap") and m.get("linear") and m.get("settle") == SETTLE):
            continue
        if m.get("active") is False:
            continue
        native = str(m["id"])
        try:
            market, market_max = _checked(native, m, leverage.get(symbol, DEFAULT_MAX_LEVERAGE), strict=strict)
        except _Refused as refused:
            book.refused[native] = str(refused)
            continue
        book.markets[native] = market
        book.unified[native] = symbol
        if market_max is not None:
            book.market_max_qty[native] = market_max
    return book

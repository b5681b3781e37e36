"""Does the installed ccxt send Binance USDⓈ-M stops where Binance takes them?

Since 2025-12-09 Binance refuses conditional orders (STOP_MARKET, TAKE_PROFIT_MARKET,
TRAILING_STOP_MARKET...) on `/fapi/v1/order` with -4120 STOP_ORDER_SWITCH_ALGO; they
go to the algo endpoints (`/fapi/v1/algoOrder`, `/fapi/v1/openAlgoOrders`) with
`clientAlgoId`. Older ccxt versions send stops to the order endpoint, and some send
them to the algo endpoint but look them up or cancel them through the regular one.
With such a version every live stop fails while everything else works, so live
mode refuses to start on it, saying which call goes where.

The check watches ccxt build the four requests trio-bot makes for a stop (place,
look up by client id, cancel by client id, list open) without sending anything:
the client's `fetch` is replaced by a recorder. It uses ccxt's synchronous
`binanceusdm`, which is generated from the same source as the asyncio one the
adapter uses, so no event loop is needed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import ccxt

from engine.errors import PermanentError

MIN_CCXT = "4.5.27"  # the first release that fetches and cancels algo orders through the algo endpoints
_SYMBOL = "BTC/USDT:USDT"
_CID = "probe-stop1"
_FILTERS = [
    {"filterType": "PRICE_FILTER", "tickSize": "0.1", "minPrice": "0.1", "maxPrice": "1000000"},
    {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "1000"},
    {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "120"},
    {"filterType": "MIN_NOTIONAL", "notional": "100"},
]
_EXCHANGE_INFO = {
    "timezone": "UTC", "serverTime": 0, "rateLimits": [], "exchangeFilters": [], "assets": [],
    "symbols": [{
        "symbol": "BTCUSDT", "pair": "BTCUSDT", "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000, "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
        "marginAsset": "USDT", "pricePrecision": 1, "quantityPrecision": 3, "baseAssetPrecision": 8,
        "quotePrecision": 8, "underlyingType": "COIN", "filters": _FILTERS,
        "orderTypes": ["MARKET", "STOP_MARKET"], "timeInForce": ["GTC"],
    }],
}


class _Sent(Exception):
    """Raised by the recorder so ccxt stops right after building a request."""


class CcxtRoutingError(PermanentError):
    """The installed ccxt would route Binance conditional orders where Binance refuses them."""


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def _watch(client: Any, sent: list[tuple[str, str, dict[str, list[str]]]]) -> None:
    def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        parts = urlsplit(url)
        if parts.path.endswith("/exchangeInfo"):
            return _EXCHANGE_INFO
        fields = parse_qs(parts.query)
        fields.update(parse_qs(body or ""))
        sent.append((method, parts.path, fields))
        raise _Sent(parts.path)

    client.fetch = fetch


def routing_problems(client_class: Any = None) -> list[str]:
    """What the installed (or given) ccxt `binanceusdm` gets wrong about stops; [] when nothing."""
    cls = client_class or ccxt.binanceusdm
    client = cls({"apiKey": "probe", "secret": "probe", "enableRateLimit": False,
                  "options": {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False,
                              "fetchMargins": False, "defaultType": "swap", "defaultSubType": "linear",
                              "adjustForTimeDifference": False, "warnOnFetchOpenOrdersWithoutSymbol": False}})
    sent: list[tuple[str, str, dict[str, list[str]]]] = []
    _watch(client, sent)
    client.load_markets()
    calls = {
        "create_order (a reduce-only stop)": (
            "POST", "/fapi/v1/algoOrder", "clientAlgoId",
            lambda: client.create_order(_SYMBOL, "market", "sell", 0.01, None,
                                        {"triggerPrice": 50_000, "reduceOnly": True, "clientOrderId": _CID})),
        "fetch_order (a stop, by client id)": (
            "GET", "/fapi/v1/algoOrder", "clientAlgoId",
            lambda: client.fetch_order(None, _SYMBOL, {"trigger": True, "clientOrderId": _CID})),
        "cancel_order (a stop, by client id)": (
            "DELETE", "/fapi/v1/algoOrder", "clientAlgoId",
            lambda: client.cancel_order(None, _SYMBOL, {"trigger": True, "clientOrderId": _CID})),
        "fetch_open_orders (stops)": (
            "GET", "/fapi/v1/openAlgoOrders", None,
            lambda: client.fetch_open_orders(_SYMBOL, None, None, {"trigger": True})),
    }
    problems = []
    call: Callable[[], Any]
    for name, (method, path, id_field, call) in calls.items():
        sent.clear()
        try:
            call()
        except _Sent:
            pass
        except Exception as exc:  # ccxt refused to build the request at all
            problems.append(f"{name} fails before sending: {type(exc).__name__}: {exc}")
            continue
        if not sent:
            problems.append(f"{name} sends nothing")
            continue
        got_method, got_path, fields = sent[-1]
        if (got_method, got_path) != (method, path):
            problems.append(f"{name} goes to {got_method} {got_path}, Binance takes it at {method} {path}")
        elif id_field is not None and fields.get(id_field) != [_CID]:
            problems.append(f"{name} does not send the client id as {id_field}")
    return problems


@functools.cache
def check_ccxt_routing() -> None:
    """Raise `CcxtRoutingError` naming the version and each wrong route; cached per process."""
    version = getattr(ccxt, "__version__", "unknown")
    problems = routing_problems()
    if _version_tuple(version) < _version_tuple(MIN_CCXT):
        problems.insert(0, f"ccxt {version} is older than {MIN_CCXT}")
    if problems:
        raise CcxtRoutingError(
            f"the installed ccxt ({version}) cannot trade Binance USDⓈ-M stops (conditional orders go to "
            f"the algo order endpoints since 2025-12-09): " + "; ".join(problems)
            + f". Install ccxt>={MIN_CCXT}.")

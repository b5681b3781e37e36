"""How to point a `ccxt.async_support.binanceusdm` client at another base URL: the local
Binance-compatible server (`trio-bot fake-exchange`) or any other USDⓈ-M-compatible endpoint.

Three things are needed, and each is a trap if missed:

* URLs: every key of `client.urls['api']` is replaced, not only the fapi ones, so a
  call nobody expected reaches the fake (and gets a 404 it records) instead of
  the real Binance.
* Options: `fetchCurrencies` is on by default and, with keys set, makes
  `load_markets` call the spot wallet endpoint `sapi/v1/capital/config/getall`.
* Error mapping: ccxt picks its USDⓈ-M error table (-2019 → InsufficientFunds,
  -4116/-2022/-4164 → InvalidOrder, -2021 → OrderImmediatelyFillable) by the URL
  starting with `https://fapi.binance.com/`; on any other URL those codes fall
  through to a plain ExchangeError. `configure_ccxt` merges that table into the
  client's general one so the fake is mapped as the live exchange would be.
"""

from __future__ import annotations

from typing import Any

# Every API section ccxt's binanceusdm knows, with the path its live URL has.
_PATHS = {
    "fapiPublic": "/fapi/v1", "fapiPublicV2": "/fapi/v2", "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1", "fapiPrivateV2": "/fapi/v2", "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "public": "/api/v3", "private": "/api/v3", "v1": "/api/v1",
    "sapi": "/sapi/v1", "sapiV2": "/sapi/v2", "sapiV3": "/sapi/v3", "sapiV4": "/sapi/v4",
    "dapiPublic": "/dapi/v1", "dapiPrivate": "/dapi/v1", "dapiPrivateV2": "/dapi/v2", "dapiData": "/futures/data",
    "eapiPublic": "/eapi/v1", "eapiPrivate": "/eapi/v1", "papi": "/papi/v1", "papiV2": "/papi/v2",
}

CCXT_OPTIONS: dict[str, Any] = {
    "fetchMarkets": {"types": ["linear"]},  # exchangeInfo of fapi only (binanceusdm's default too)
    "fetchCurrencies": False,  # else load_markets calls sapi capital/config/getall when keys are set
    "fetchMargins": False,  # else spot margin pairs are fetched from sapi
    "defaultType": "swap",
    "defaultSubType": "linear",
    "adjustForTimeDifference": False,  # when True, load_markets also calls GET /fapi/v1/time
    "warnOnFetchOpenOrdersWithoutSymbol": False,  # else fetch_open_orders() without symbol raises
}


def ccxt_urls(base_url: str) -> dict[str, str]:
    """`client.urls['api']` for a fake at `base_url` (e.g. "http://127.0.0.1:PORT")."""
    base = base_url.rstrip("/")
    return {key: base + path for key, path in _PATHS.items()}


def configure_ccxt(client: Any, base_url: str) -> None:
    """Point an existing binanceusdm client at the fake: URLs, options and error table."""
    client.urls["api"] = ccxt_urls(base_url)
    client.options.update(CCXT_OPTIONS)
    exceptions = dict(client.exceptions)
    linear = exceptions.get("linear", {})
    for kind in ("exact", "broad"):
        exceptions[kind] = {**exceptions.get(kind, {}), **linear.get(kind, {})}
    client.exceptions = exceptions

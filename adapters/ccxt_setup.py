"""How the adapter's ccxt client is built (`new_client`), and how to point a
`ccxt.async_support.binanceusdm` client at another base URL: the local Binance-compatible
server (`trio-bot fake-exchange`) or any other USDⓈ-M-compatible endpoint.

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

import logging
from collections.abc import Sequence
from typing import Any

import ccxt.async_support as ccxt_async

from adapters.ccxt_errors import ScrubbingLogger
from adapters.ccxt_ratelimit import install_retry_after

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


def new_client(exchange_id: str, *, api_key: str, api_secret: str, base_url: str | None,
               options: dict[str, Any] | None, secrets: Sequence[str]) -> Any:
    """A ccxt client for USDⓈ-M linear perpetuals, its rate limiter off, its log scrubbed.

    The engine rate-limits and applies deadlines itself, so ccxt's limiter would only add
    invisible queueing; `options` are merged into ccxt's `options` last, so they win.
    """
    ccxt_options: dict[str, Any] = {
        "fetchMargins": False,
        "defaultType": "swap",
        "defaultSubType": "linear",
        "fetchMarkets": {"types": ["linear"]},
    }
    if exchange_id == "binanceusdm":
        # Without a symbol Binance weighs the call 40x; ccxt refuses unless told we know.
        ccxt_options["warnOnFetchOpenOrdersWithoutSymbol"] = False
    ccxt_options.update(options or {})
    config: dict[str, Any] = {
        "apiKey": api_key,
        "secret": api_secret,
        "enableRateLimit": False,
        "options": ccxt_options,
        # Currencies need a wallet permission (sapi / asset endpoints) the engine never uses.
        "has": {"fetchCurrencies": False},
        "logger": ScrubbingLogger(logging.getLogger("trio_bot.ccxt.client"), secrets),
    }
    if base_url is not None:
        if exchange_id != "binanceusdm":
            raise ValueError(f"base_url is supported for binanceusdm only, not {exchange_id!r}")
        if base_url.startswith("http://"):
            config["timeout_on_exit"] = 0  # the wait is for TLS shutdown; plain HTTP has none
    client = getattr(ccxt_async, exchange_id)(config)
    install_retry_after(client)
    if base_url is not None:
        # Moves every URL section (not only fapi, so nothing can reach the real exchange),
        # sets the options that keep ccxt off sapi, and merges Binance's USDⓈ-M error table,
        # which ccxt otherwise applies only to the real fapi host names.
        configure_ccxt(client, base_url)
        client.options.update(options or {})
    return client

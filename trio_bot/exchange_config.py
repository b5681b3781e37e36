"""Which exchange `trio-bot run` trades on: the `[exchange]` table of a run config.

Paper trading is the default. Anything else places real orders and must say
so with `live = true`. Keys never live in the config file itself: it names the
environment variables (or a secret file) to read them from, so a config can be
shared, committed and logged without leaking anything.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import attrs

from adapters.textfile import read_text
from engine.checks import SYMBOL_ALPHABET, Range, identifier_problem
from engine.errors import ConfigError

POLL_INTERVAL = Range(0.05, 3_600.0)
EXCHANGES = ("paper", "binanceusdm", "bybit")
_KEYS = {"name", "live", "api_key_env", "api_secret_env", "api_secret_file", "base_url", "symbols",
         "price_poll_interval", "account", "margin_type", "ws_url", "account_settings", "stop_working_type"}
MARGIN_TYPES = ("cross", "isolated")
ACCOUNT_SETTINGS = ("set", "check")
WORKING_TYPES = ("MARK_PRICE", "CONTRACT_PRICE")


@attrs.frozen
class ExchangeSettings:
    name: str = "paper"
    live: bool = False
    api_key_env: str = "TRIO_BOT_API_KEY"
    api_secret_env: str = "TRIO_BOT_API_SECRET"
    api_secret_file: str | None = None
    base_url: str | None = None  # e.g. a local fake-exchange server
    ws_url: str | None = None  # its market streams; default: Binance's own without base_url, else polling
    symbols: tuple[str, ...] = ()
    price_poll_interval: float = 1.0
    account: str | None = None
    margin_type: str = "cross"
    account_settings: str = "set"  # "set": make leverage, margin type, one-way mode as configured; "check": refuse
    # The price a stop triggers on. The mark price (a fair price from several spot venues) does
    # not follow one trade's wick the way the last price does, so a wick cannot stop a position out.
    stop_working_type: str = "MARK_PRICE"

    @property
    def is_paper(self) -> bool:
        return self.name == "paper"


@attrs.frozen
class Credentials:
    api_key: str = attrs.field(repr=False)
    api_secret: str = attrs.field(repr=False)

    def __repr__(self) -> str:
        return "Credentials(***)"


def parse_exchange_settings(table: Mapping[str, Any], where: str) -> ExchangeSettings:
    for key, value in table.items():
        if key not in _KEYS:
            raise ConfigError(f"exchange.{key}", value, f"one of: {', '.join(sorted(_KEYS))}", where=where)
    name = table.get("name", "paper")
    if name not in EXCHANGES:
        raise ConfigError("exchange.name", name, f"one of: {', '.join(EXCHANGES)}", where=where)
    live = table.get("live", False)
    if not isinstance(live, bool):
        raise ConfigError("exchange.live", live, "true or false", where=where)
    if name != "paper" and live is not True:
        raise ConfigError("exchange.live", live, f"true to trade on {name} with real orders "
                          "(without it, remove `name` to paper-trade)", where=where)
    for key in ("api_key_env", "api_secret_env", "api_secret_file", "base_url", "account", "ws_url"):
        if key in table and (not isinstance(table[key], str) or not table[key]):
            raise ConfigError(f"exchange.{key}", table[key], "a non-empty string", where=where)
    for key in ("api_key_env", "api_secret_env", "api_secret_file", "base_url", "account"):
        if len(table.get(key, "")) > 1000:
            raise ConfigError(f"exchange.{key}", table[key], "at most 1000 characters", where=where)
    base_url = table.get("base_url")
    if base_url is not None and (not base_url.startswith(("http://", "https://")) or
                                 not base_url.isprintable() or " " in base_url):
        raise ConfigError("exchange.base_url", base_url, "an http:// or https:// URL", where=where)
    ws_url = table.get("ws_url")
    if ws_url is not None and (not ws_url.startswith(("ws://", "wss://")) or not ws_url.isprintable()
                               or " " in ws_url or len(ws_url) > 1000):
        raise ConfigError("exchange.ws_url", ws_url, "a ws:// or wss:// URL", where=where)
    symbols = table.get("symbols", [])
    if not isinstance(symbols, list) or len(symbols) > 1000 or not all(
            isinstance(s, str) and identifier_problem(s, what="symbol") is None for s in symbols):
        raise ConfigError("exchange.symbols", symbols, f'a list of exchange symbols like ["BTCUSDT"] '
                          f"({SYMBOL_ALPHABET}, at most 1000)", where=where)
    poll = POLL_INTERVAL.check("exchange.price_poll_interval", table.get("price_poll_interval", 1.0), where=where)
    choices = {"margin_type": MARGIN_TYPES, "account_settings": ACCOUNT_SETTINGS,
               "stop_working_type": WORKING_TYPES}
    defaults = {"margin_type": "cross", "account_settings": "set", "stop_working_type": "MARK_PRICE"}
    for key, allowed in choices.items():
        if table.get(key, defaults[key]) not in allowed:
            raise ConfigError(f"exchange.{key}", table[key], f"one of: {', '.join(allowed)}", where=where)
    return ExchangeSettings(
        margin_type=table.get("margin_type", "cross"), account_settings=table.get("account_settings", "set"),
        stop_working_type=table.get("stop_working_type", "MARK_PRICE"),
        name=name, live=live, api_key_env=table.get("api_key_env", "TRIO_BOT_API_KEY"),
        api_secret_env=table.get("api_secret_env", "TRIO_BOT_API_SECRET"),
        api_secret_file=table.get("api_secret_file"), base_url=table.get("base_url"), ws_url=table.get("ws_url"),
        symbols=tuple(symbols), price_poll_interval=poll, account=table.get("account"))


def load_credentials(settings: ExchangeSettings, environ: Mapping[str, str] = os.environ) -> Credentials:
    """Read the keys named by the config. Errors name the variable or file, never a value."""
    key = environ.get(settings.api_key_env, "")
    if not key:
        raise ConfigError("exchange.api_key_env", settings.api_key_env,
                          "the name of a set, non-empty environment variable holding the API key")
    if settings.api_secret_file is not None:
        secret = read_text(settings.api_secret_file, key="exchange.api_secret_file", where="config",
                           what="file holding the API secret", limit=64 * 1024).strip()
        if not secret:
            raise ConfigError("exchange.api_secret_file", settings.api_secret_file,
                              "a file holding the API secret (it is empty)")
    else:
        secret = environ.get(settings.api_secret_env, "")
        if not secret:
            raise ConfigError("exchange.api_secret_env", settings.api_secret_env,
                              "the name of a set, non-empty environment variable holding the API secret")
    return Credentials(key, secret)


def account_name(settings: ExchangeSettings, credentials: Credentials | None) -> str:
    """What the one-instance lease is keyed by: the exchange and a digest of the key (never the key)."""
    if settings.account:
        return settings.account
    if settings.is_paper or credentials is None:
        return "paper"
    digest = hashlib.sha256(credentials.api_key.encode()).hexdigest()[:12]
    return f"{settings.name}:{digest}"

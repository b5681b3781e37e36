"""Where `trio-bot run` takes its waves from: the `[signals]` table of a run config.

    [signals]
    source = "websocket"            # demo (default) | file | websocket | webhook | nats

Each source has its own keys (see README: Signals); a key that does not belong
to the chosen source is an error, so a typo cannot silently fall back to a
default. Secrets (the websocket token, the webhook secret) are named by
environment variable and never appear in the config, a log or an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from engine.checks import Range, integer
from engine.errors import ConfigError

SOURCES = ("demo", "file", "websocket", "webhook", "nats")
_COMMON = {"source"}
_KEYS: dict[str, set[str]] = {
    "demo": set(),
    "file": {"path"},
    "websocket": {"url", "token_env", "heartbeat", "idle_timeout", "connect_timeout", "reconnect_min",
                  "reconnect_max", "wave_window"},
    "webhook": {"secret_env", "max_lag", "rate_limit", "burst", "wave_window"},
    "nats": {"url", "stream", "subject", "durable", "ack_wait", "max_lag", "create_stream", "connect_timeout",
             "reconnect_min", "reconnect_max"},
}


@attrs.frozen
class SignalSettings:
    source: str = "demo"
    path: str | None = None
    url: str | None = None
    token_env: str | None = None
    heartbeat: float = 10.0
    idle_timeout: float = 30.0
    connect_timeout: float = 10.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    wave_window: float = 2.0
    secret_env: str = "TRIO_BOT_WEBHOOK_SECRET"
    max_lag: float = 60.0
    rate_limit: float = 100.0
    burst: int = 200
    stream: str = "SIGNALS"
    subject: str = "signals.waves"
    durable: str | None = None
    ack_wait: float = 30.0
    create_stream: bool = False


_DAY = 86_400.0  # the longest any of these waits or windows may be


def _seconds(table: Mapping[str, Any], key: str, default: float, where: str, *, minimum: float = 0.0) -> float:
    return Range(minimum, _DAY, low_open=True).check(f"signals.{key}", table.get(key, default), where=where)


def _text(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"signals.{key}", value, "a non-empty string", where=where)
    return value


def _url(table: Mapping[str, Any], schemes: tuple[str, ...], default: str | None, where: str) -> str:
    value = table.get("url", default)
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in schemes or not parts.hostname:
        raise ConfigError("signals.url", value, f"a {' or '.join(s + '://' for s in schemes)} URL", where=where)
    if parts.password:
        raise ConfigError("signals.url", "***", "a URL without a password (use token_env)", where=where)
    return str(value)


def parse_signal_settings(table: Mapping[str, Any], where: str) -> SignalSettings:
    source = table.get("source", "demo")
    if source not in SOURCES:
        raise ConfigError("signals.source", source, f"one of: {', '.join(SOURCES)}", where=where)
    allowed = _COMMON | _KEYS[source]
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(f"signals.{key}", value, f"a key of the {source} source: "
                              f"{', '.join(sorted(allowed))}", where=where)
    d = SignalSettings()
    common: dict[str, Any] = {"source": source}
    if source == "file":
        path = _text(table, "path", where)
        if path is None:
            raise ConfigError("signals.path", None, "the JSON Lines file of waves to trade", where=where)
        return SignalSettings(source=source, path=path)
    if source in ("websocket", "nats"):
        common["connect_timeout"] = _seconds(table, "connect_timeout", d.connect_timeout, where)
        common["reconnect_min"] = _seconds(table, "reconnect_min", d.reconnect_min, where)
        common["reconnect_max"] = _seconds(table, "reconnect_max", d.reconnect_max, where)
        if common["reconnect_max"] < common["reconnect_min"]:
            raise ConfigError("signals.reconnect_max", common["reconnect_max"],
                              f"at least reconnect_min ({common['reconnect_min']:g})", where=where)
    if source == "websocket":
        heartbeat = _seconds(table, "heartbeat", d.heartbeat, where)
        idle = _seconds(table, "idle_timeout", d.idle_timeout, where)
        if idle <= heartbeat:
            raise ConfigError("signals.idle_timeout", table.get("idle_timeout"),
                              f"more than heartbeat ({heartbeat:g})", where=where)
        return SignalSettings(url=_url(table, ("ws", "wss"), None, where), token_env=_text(table, "token_env", where),
                              heartbeat=heartbeat, idle_timeout=idle,
                              wave_window=_seconds(table, "wave_window", d.wave_window, where), **common)
    if source == "webhook":
        burst = integer(1, 1_000_000).check_int("signals.burst", table.get("burst", d.burst), where=where)
        return SignalSettings(secret_env=_text(table, "secret_env", where) or d.secret_env,
                              max_lag=_seconds(table, "max_lag", d.max_lag, where),
                              rate_limit=_seconds(table, "rate_limit", d.rate_limit, where), burst=burst,
                              wave_window=_seconds(table, "wave_window", d.wave_window, where), **common)
    if source == "nats":
        create = table.get("create_stream", False)
        if not isinstance(create, bool):
            raise ConfigError("signals.create_stream", create, "true or false", where=where)
        names = {}
        for key in ("stream", "durable"):
            name = _text(table, key, where)
            if name is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ConfigError(f"signals.{key}", name, "a name of letters, digits, _ and -", where=where)
            names[key] = name
        subject = _text(table, "subject", where) or d.subject
        if any(c.isspace() for c in subject):
            raise ConfigError("signals.subject", subject, "a NATS subject without spaces", where=where)
        return SignalSettings(url=_url(table, ("nats", "tls"), "nats://127.0.0.1:4222", where),
                              stream=names["stream"] or d.stream, subject=subject, durable=names["durable"],
                              ack_wait=_seconds(table, "ack_wait", d.ack_wait, where, minimum=1.0),
                              max_lag=_seconds(table, "max_lag", d.max_lag, where),
                              create_stream=create, **common)
    return SignalSettings(**common)


def durable_for(settings: SignalSettings, account: str) -> str:
    """The NATS durable consumer name: configured, or derived from the account (one per account)."""
    return settings.durable or "trio-bot-" + re.sub(r"[^A-Za-z0-9_-]", "_", account)


def read_secret(settings: SignalSettings, key: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The token (websocket) or secret (webhook) named by the config; errors name the variable only."""
    name = settings.token_env if key == "token_env" else settings.secret_env
    if name is None:
        return None
    value = environ.get(name, "")
    if not value:
        raise ConfigError(f"signals.{key}", name, "the name of a set, non-empty environment variable")
    return value

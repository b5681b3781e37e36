"""Webhook bodies: what TradingView, 3Commas-style bots and plain services post, made into signals.

Pure functions. A body is one signal, a list of signals, or `{"wave": KEY, "signals": [...]}`.
Field spellings are mapped to trio-bot's (`docs/SIGNALS.md`):

* symbol: `symbol`, TradingView's `ticker` (`BINANCE:BTCUSDT.P` → `BTCUSDT`), a ccxt symbol
  (`BTC/USDT:USDT`), or a 3Commas `pair` (`USDT_BTC` → `BTCUSDT`);
* side: `side`, or `action` (TradingView's `{{strategy.order.action}}`: buy → long, sell → short);
* id: `id` (or `alert_id`); without one, a digest of the alert's fields, so a re-posted alert has
  the same id and is answered as a duplicate;
* score: `score`, default 1 (alerts rarely rank themselves);
* timestamp: `timestamp` or `time` (ISO 8601 such as TradingView's `{{timenow}}`, or epoch seconds
  or milliseconds), refused when older than `max_lag` (TradingView re-sends what timed out).

The shared secret may ride in the body (`secret`, since TradingView cannot set headers); it is taken
out of every signal here, so it never reaches the engine, the store or a log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from engine.checks import loads_untrusted

DEFAULT_SCORE = 1.0
_SIDES = {"buy": "long", "long": "long", "sell": "short", "short": "short"}
_ID_FIELDS = ("id", "alert_id")


class BodyError(ValueError):
    """The body as a whole cannot be read (HTTP 400)."""


@attrs.frozen
class Posted:
    """A parsed body: the signals as sent (secret still inside), whether it was a whole wave, its key."""

    signals: list[Mapping[str, Any]]
    whole_wave: bool
    key: str | None
    secret: str | None  # the body's top-level secret, if any


@attrs.frozen
class Mapped:
    signal: dict[str, Any] | None  # in trio-bot's spelling; None when rejected
    signal_id: str
    reason: str | None = None


def parse_body(raw: bytes) -> Posted:
    try:
        data = loads_untrusted(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BodyError(f"the body is not JSON ({exc})") from None
    if isinstance(data, list):
        if not data:
            raise BodyError("the list of signals is empty")
        return Posted(data, whole_wave=True, key=None, secret=None)
    if not isinstance(data, dict):
        raise BodyError("expected a signal object, a list of signals, or {\"wave\": KEY, \"signals\": [...]}")
    secret = data.get("secret") if isinstance(data.get("secret"), str) else None
    if "signals" in data:
        signals = data["signals"]
        if not isinstance(signals, list) or not signals:
            raise BodyError('"signals" must be a non-empty list')
        key = data.get("wave")
        if key is not None and (isinstance(key, bool) or not isinstance(key, str | int) or not str(key)):
            raise BodyError(f'"wave" {key!r} is not a non-empty string or integer')
        return Posted(signals, whole_wave=True, key=None if key is None else str(key), secret=secret)
    key = data.get("wave")
    return Posted([data], whole_wave=False, key=str(key) if isinstance(key, str | int) and str(key) else None,
                  secret=secret)


def symbol_of(signal: Mapping[str, Any]) -> str | None:
    for field in ("symbol", "ticker", "pair"):
        value = signal.get(field)
        if isinstance(value, str) and value.strip():
            return _normalize_symbol(field, value.strip())
    return None


def _normalize_symbol(field: str, text: str) -> str:
    if field == "pair" and "_" in text:  # 3Commas: QUOTE_BASE
        quote, base = text.split("_", 1)
        return (base + quote).upper()
    text = text.rsplit(":", 1)[-1] if field == "ticker" else text
    text = text.split(":", 1)[0] if "/" in text else text  # ccxt BTC/USDT:USDT
    text = text.upper().removesuffix(".P").removesuffix("PERP")
    return text.replace("/", "").replace("-", "")


def timestamp_of(signal: Mapping[str, Any]) -> float | None:
    """Epoch seconds; raises ValueError for a value that is there but unreadable."""
    value = signal.get("timestamp", signal.get("time"))
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value) / 1000.0 if value > 1e12 else float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"timestamp {value!r} is neither ISO 8601 nor epoch seconds") from None
            if moment.tzinfo is None:
                raise ValueError(f"timestamp {value!r} has no time zone (add Z for UTC)") from None
            return moment.timestamp()
        if math.isfinite(number):
            return number / 1000.0 if number > 1e12 else number
    raise ValueError(f"timestamp {value!r} is neither ISO 8601 nor epoch seconds")


def derived_id(signal: Mapping[str, Any]) -> str:
    """An id for an alert that has none: the same alert posted again gets the same id."""
    fields = {k: v for k, v in signal.items() if k != "secret"}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
    return f"wh-{digest[:20]}"


def map_signal(signal: Any, *, now: float, max_lag: float) -> Mapped:
    """One posted signal in trio-bot's spelling, or the reason it cannot be taken."""
    if not isinstance(signal, Mapping):
        return Mapped(None, "", f"not an object: {str(signal)[:40]!r}")
    raw_id = next((signal[f] for f in _ID_FIELDS if f in signal), None)
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id)):
        return Mapped(None, str(raw_id), f"id {raw_id!r} is not a non-empty string or integer")
    signal_id = str(raw_id) if raw_id is not None else derived_id(signal)
    symbol = symbol_of(signal)
    if symbol is None:
        return Mapped(None, signal_id, "no symbol (send symbol, ticker or pair)")
    side_text = signal.get("side", signal.get("action"))
    side = _SIDES.get(side_text.strip().lower()) if isinstance(side_text, str) else None
    if side is None:
        return Mapped(None, signal_id, f"side {side_text!r} is not one of long, short, buy, sell")
    score = signal.get("score", DEFAULT_SCORE)
    if isinstance(score, str):
        with contextlib.suppress(ValueError):
            score = float(score)
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        return Mapped(None, signal_id, f"score {score!r} is not a finite number")
    try:
        sent_at = timestamp_of(signal)
    except ValueError as exc:
        return Mapped(None, signal_id, str(exc))
    if sent_at is not None and abs(now - sent_at) > max_lag:
        when = f"{now - sent_at:.0f}s ago" if now >= sent_at else f"{sent_at - now:.0f}s in the future"
        return Mapped(None, signal_id, f"stale: sent {when}, more than max_lag ({max_lag:g}s)")
    return Mapped({"id": signal_id, "symbol": symbol, "side": side, "score": float(score)}, signal_id)

"""The signal wire format shared by the websocket feed and NATS messages (docs/SIGNALS.md).

Pure parsing: a frame becomes a whole wave, one signal of a keyed wave, a
control message, or a `Malformed` with the reason. Nothing here raises on bad
input, because a malformed frame must never stop the feed, let alone the engine;
signals inside a well-formed frame are passed on unvalidated (the engine
rejects a bad one with its reason).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from adapters.signals.arrival import RawWave
from engine.checks import identifier_problem, loads_untrusted
from engine.text import shown


@attrs.frozen
class WaveFrame:
    key: str | None
    signals: RawWave


@attrs.frozen
class SignalFrame:
    key: str
    signal: Mapping[str, Any]


@attrs.frozen
class Control:
    """`subscribed`, `heartbeat`, `error` and anything else that carries no signal."""

    type: str
    message: str = ""


@attrs.frozen
class Malformed:
    reason: str
    excerpt: str


Frame = WaveFrame | SignalFrame | Control | Malformed


def _excerpt(text: str | bytes) -> str:
    shown = text if isinstance(text, str) else text.decode("utf-8", "replace")
    return shown[:80]


def _key(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 200:
        value = str(value)
    if isinstance(value, str) and identifier_problem(value) is None:
        return value
    raise ValueError(f"wave key {shown(value, 80)} is not a string or integer of 1-64 letters, digits "
                     "and . _ : / @ # + = -")


def parse_frame(text: str | bytes) -> Frame:
    """One websocket text frame or one NATS message body."""
    try:
        data = loads_untrusted(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Malformed(f"not JSON ({exc})", _excerpt(text))
    except RecursionError:
        return Malformed("nested too deeply", _excerpt(text))
    return frame_from_json(data, _excerpt(text))


def frame_from_json(data: Any, excerpt: str = "") -> Frame:
    if isinstance(data, list):
        return WaveFrame(None, data)
    if not isinstance(data, dict):
        return Malformed("expected an object or a list of signals", excerpt)
    kind = data.get("type")
    try:
        if kind in (None, "wave") and "signals" in data:
            signals = data["signals"]
            if not isinstance(signals, list):
                return Malformed('"signals" is not a list', excerpt)
            return WaveFrame(_key(data.get("wave")), signals)
        if kind == "signal":
            key, signal = _key(data.get("wave")), data.get("signal")
            if key is None:
                return Malformed('a "signal" frame needs its "wave" key', excerpt)
            if not isinstance(signal, dict):
                return Malformed('"signal" is not an object', excerpt)
            return SignalFrame(key, signal)
    except ValueError as exc:
        return Malformed(str(exc), excerpt)
    if isinstance(kind, str) and kind not in ("wave", "signal"):
        message = data.get("message")
        return Control(kind, message if isinstance(message, str) else "")
    return Malformed('expected a "wave" frame with "signals", a "signal" frame, or a control "type"', excerpt)


def wave_frame(key: str, signals: RawWave) -> str:
    return json.dumps({"type": "wave", "wave": key, "signals": list(signals)})


def signal_frame(key: str, signal: Mapping[str, Any]) -> str:
    return json.dumps({"type": "signal", "wave": key, "signal": dict(signal)})

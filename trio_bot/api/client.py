"""`trio-bot status | pause | resume | close`: talk to the running instance's operator API.

Where: `--url` (the server, or the dashboard link printed at start, whose
`#token=` fragment is then used), else the run config's `[api] listen`, else
127.0.0.1:8080. The token: the `#token=` of `--url`, else the variable named by
`[api] token_env` (default `TRIO_BOT_API_TOKEN`). Every request has a deadline.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import attrs

from engine.errors import ConfigError, TrioBotError
from trio_bot.api.settings import ApiSettings

TIMEOUT = 15.0


class ApiError(TrioBotError):
    """The API answered with an error, or could not be reached."""


@attrs.frozen
class Target:
    base: str
    token: str | None = attrs.field(repr=False)


def target(url: str | None, settings: ApiSettings, environ: dict[str, str] | None = None) -> Target:
    env = dict(os.environ) if environ is None else environ
    token = env.get(settings.token_env) or None
    if url is None:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        return Target(f"http://{host}:{settings.port}", token)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("--url", url.split("#")[0], "an address like http://127.0.0.1:8080")
    if parts.fragment.startswith("token="):
        token = parts.fragment.removeprefix("token=")
    return Target(f"{parts.scheme}://{parts.netloc}", token)


def call(t: Target, method: str, path: str, body: dict[str, Any] | None = None,
         timeout: float = TIMEOUT) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(t.base + path, data=data, method=method)
    request.add_header("accept", "application/json")
    if data is not None:
        request.add_header("content-type", "application/json")
    if t.token:
        request.add_header("authorization", f"Bearer {t.token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        if exc.code == 401:
            message = (f"{message} (set the token in the variable named by [api] token_env, or pass the "
                       "dashboard link as --url)")
        raise ApiError(f"{method} {path}: HTTP {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(f"no trio-bot API at {t.base} ({reason}); is `trio-bot run` running?") from None


def status_text(status: dict[str, Any]) -> str:
    lines = [f"state: {status['state']}" + (f" ({status['paused']['reason']})"
                                             if status.get("paused") and status["paused"].get("reason") else ""),
             f"account: {status['account']} on {status['exchange']}, up {status['uptime']:.0f}s",
             f"open positions: {status['open_positions']}"
             + (f", UNPROTECTED: {status['unprotected_positions']}" if status.get("unprotected_positions") else "")]
    wave = status.get("last_wave")
    if wave:
        c = wave["counts"]
        lines.append(f"last wave {wave['id']}: {c['opened']} opened, {c['failed']} failed, {c['timed_out']} timed out,"
                     f" {c['skipped']} skipped, {c['rejected']} rejected of {c['candidates']}")
    for p in status.get("positions", []):
        upnl = p.get("unrealized_pnl")
        lines.append(f"  #{p['id']} {p['symbol']} {p['side']} qty {p['quantity']} entry {p['entry_price']} "
                     f"stop {p['stop_price']} trailing {p.get('trailing_state')} best {p.get('best_price')}"
                     + (f" uPnL {upnl:+.4f}" if upnl is not None else ""))
    return "\n".join(lines)

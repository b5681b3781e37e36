"""The `[api]` table of a run config: where the operator's HTTP server listens and how it is guarded.

Loopback by default. A non-loopback `listen` is allowed only when a token is
configured (its variable set), because a generated token is printed to the
terminal and a server reachable from other machines must not depend on that.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import tomllib
from collections.abc import Mapping
from typing import Any

import attrs

from engine.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
_KEYS = {"enabled", "listen", "token_env", "metrics_public", "max_body_bytes", "request_timeout"}


@attrs.frozen
class ApiSettings:
    enabled: bool = True
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    listen_given: bool = False  # an explicit address is never swapped for another port
    token_env: str = "TRIO_BOT_API_TOKEN"
    metrics_public: bool = False
    max_body_bytes: int = 64 * 1024
    request_timeout: float = 10.0  # every handler's storage/engine work is bounded by this

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_listen(value: Any, key: str = "api.listen") -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`); port 0 asks the system for a free one."""
    expected = "an address like 127.0.0.1:8080"
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(key, value, expected)
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(key, value, expected)
    return host, int(port_text)


def parse_api_settings(table: Mapping[str, Any], where: str = "config") -> ApiSettings:
    for key, value in table.items():
        if key not in _KEYS:
            raise ConfigError(f"api.{key}", value, f"one of: {', '.join(sorted(_KEYS))}", where=where)
    settings = ApiSettings()
    if "enabled" in table:
        if not isinstance(table["enabled"], bool):
            raise ConfigError("api.enabled", table["enabled"], "true or false", where=where)
        settings = attrs.evolve(settings, enabled=table["enabled"])
    if "listen" in table:
        try:
            host, port = parse_listen(table["listen"])
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.value, exc.expected, where=where) from None
        settings = attrs.evolve(settings, host=host, port=port, listen_given=True)
    if "token_env" in table:
        name = table["token_env"]
        if not isinstance(name, str) or not name:
            raise ConfigError("api.token_env", name, "the name of an environment variable", where=where)
        settings = attrs.evolve(settings, token_env=name)
    if "metrics_public" in table:
        if not isinstance(table["metrics_public"], bool):
            raise ConfigError("api.metrics_public", table["metrics_public"], "true or false", where=where)
        settings = attrs.evolve(settings, metrics_public=table["metrics_public"])
    if "max_body_bytes" in table:
        size = table["max_body_bytes"]
        if isinstance(size, bool) or not isinstance(size, int) or not 1024 <= size <= 16 * 1024 * 1024:
            raise ConfigError("api.max_body_bytes", size, "an integer between 1024 and 16777216", where=where)
        settings = attrs.evolve(settings, max_body_bytes=size)
    if "request_timeout" in table:
        t = table["request_timeout"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= 300:
            raise ConfigError("api.request_timeout", t, "a number of seconds in (0, 300]", where=where)
        settings = attrs.evolve(settings, request_timeout=float(t))
    return settings


def load_api_settings(path: str | None) -> ApiSettings:
    """Only the `[api]` table of a run config (for the client commands, which need nothing else)."""
    if path is None:
        return ApiSettings()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError("--config", path, f"a readable TOML file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", path, f"valid TOML ({exc})") from None
    table = data.get("api", {})
    if not isinstance(table, dict):
        raise ConfigError("api", table, "a table", where=path)
    return parse_api_settings(table, path)


@attrs.frozen
class Token:
    value: str = attrs.field(repr=False)
    generated: bool

    def __repr__(self) -> str:
        return f"Token(***, generated={self.generated})"


def resolve_token(settings: ApiSettings, environ: Mapping[str, str] | None = None) -> Token:
    """The bearer token: from `token_env`, or generated now (printed once with the dashboard link).

    A server that listens beyond loopback needs a configured token.
    """
    env = os.environ if environ is None else environ
    configured = env.get(settings.token_env, "")
    if configured:
        if len(configured) < 16:
            raise ConfigError(settings.token_env, "(hidden)", "a token of at least 16 characters")
        return Token(configured, generated=False)
    if not settings.loopback:
        raise ConfigError("api.listen", f"{settings.host}:{settings.port}",
                          f"a loopback address unless a token is set in ${settings.token_env}")
    return Token(secrets.token_urlsafe(24), generated=True)

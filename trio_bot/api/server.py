"""Binding and serving: hypercorn's Trio worker, on a socket trio-bot binds itself.

trio-bot binds the listening socket first so it can apply the port rule: the
default address (127.0.0.1:8080) moves on to the next free port when busy, an
explicitly configured address that is busy is a start-up error. Hypercorn then
serves on that socket (`fd://`). Lifetime: the server runs until its caller's
nursery is cancelled; open connections are dropped with it.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Sequence
from functools import partial
from typing import Any, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from engine.errors import ConfigError
from trio_bot.api.guard import ASGIApp
from trio_bot.api.settings import ApiSettings

log = logging.getLogger("trio_bot.api")

PORT_ATTEMPTS = 20  # how far past a busy default port to look


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_listener(settings: ApiSettings) -> socket.socket:
    """The listening socket for `settings`, under the port rule above."""
    ports: Sequence[int] = [settings.port]
    if not settings.listen_given and settings.port != 0:
        ports = range(settings.port, settings.port + PORT_ATTEMPTS)
    last: OSError | None = None
    for port in ports:
        try:
            return _bind(settings.host, port)
        except OSError as exc:
            last = exc
            if exc.errno != errno.EADDRINUSE:
                break
    where = f"{settings.host}:{settings.port}"
    reason = last.strerror if last is not None else "unavailable"
    if settings.listen_given or last is None or last.errno != errno.EADDRINUSE:
        raise ConfigError("api.listen", where, f"an address trio-bot can listen on ({reason})")
    raise ConfigError("api.listen", where, f"a free port ({ports[0]}..{ports[-1]} are all in use)")


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def hypercorn_config(sock: socket.socket, settings: ApiSettings) -> Config:
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None  # requests are not logged: no bearer token or query can end up in a log
    config.errorlog = logging.getLogger("trio_bot.api.server")
    config.keep_alive_timeout = 30
    config.read_timeout = int(max(1, settings.request_timeout))
    config.graceful_timeout = 1.0
    config.h11_max_incomplete_size = 16 * 1024
    config.websocket_max_message_size = settings.max_body_bytes
    config.include_server_header = False
    return config


async def serve_api(app: ASGIApp, settings: ApiSettings, *,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` until cancelled; `task_status.started(url)` once it accepts connections."""
    sock = bind_listener(settings)
    url = url_of(sock)
    config = hypercorn_config(sock, settings)
    sock.detach()  # hypercorn owns the file descriptor from here on

    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve, cast(Any, app), config))  # hypercorn's own ASGI types
        log.info("operator API listening on %s", url)
        task_status.started(url)

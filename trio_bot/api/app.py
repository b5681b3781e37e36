"""The operator's ASGI app: routes under `/api/v1`, the dashboard at `/`, metrics at `/metrics`.

Every handler's work is bounded by `request_timeout` (a slow store answers 503,
never a hung request). Errors are JSON `{"error": ...}`: 400 for a bad query
parameter (naming it), 401 without the token (see `guard.py`), 404 for an
unknown id, 409 for a request that does not fit the state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from engine.errors import TrioBotError
from trio_bot.api import dashboard, openapi
from trio_bot.api.guard import ASGIApp, BodyTooLarge, Guard
from trio_bot.api.metrics import Metrics
from trio_bot.api.operator import Conflict, Failed, NotFound, Operator
from trio_bot.api.settings import ApiSettings
from trio_bot.api.stream import EventHub

log = logging.getLogger("trio_bot.api")

Handler = Callable[[Request], Awaitable[Any]]


class BadParameter(Exception):
    def __init__(self, key: str, value: object, expected: str) -> None:
        super().__init__(f"{key} = {value!r}: expected {expected}")


def _bool(request: Request, key: str) -> bool:
    raw = request.query_params.get(key)
    if raw is None:
        return False
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise BadParameter(key, raw, "true or false")


def _int(request: Request, key: str, *, minimum: int = 0) -> int | None:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < minimum:
        raise BadParameter(key, raw, f"an integer >= {minimum}")
    return int(raw)


def parse_since(raw: str | None, key: str = "since") -> float | None:
    """Epoch seconds, or an ISO 8601 date/time (UTC unless it says otherwise)."""
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(key, raw, "epoch seconds or an ISO 8601 date like 2026-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def build_app(operator: Operator, settings: ApiSettings, token: str, *, hub: EventHub, metrics: Metrics,
              extra_routes: Sequence[BaseRoute] = ()) -> ASGIApp:
    timeout = settings.request_timeout

    def endpoint(handler: Handler, status: int = 200,
                 bound: float | None = None) -> Callable[[Request], Awaitable[Response]]:
        limit = bound or timeout

        async def run(request: Request) -> Response:
            try:
                with trio.fail_after(limit):
                    body = await handler(request)
            except BadParameter as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except NotFound as exc:
                return JSONResponse({"error": str(exc)}, status_code=404)
            except Conflict as exc:
                return JSONResponse({"error": str(exc)}, status_code=409)
            except Failed as exc:
                return JSONResponse({"error": str(exc)}, status_code=502)
            except BodyTooLarge as exc:
                return JSONResponse({"error": str(exc)}, status_code=413)
            except trio.TooSlowError:
                return JSONResponse({"error": f"no answer within {limit:g}s"}, status_code=503)
            except TrioBotError as exc:
                return JSONResponse({"error": str(exc)}, status_code=503)
            if isinstance(body, Response):
                return body
            return JSONResponse(body, status_code=status)
        return run

    async def ping(request: Request) -> Any:
        return {"status": "pong"}

    async def status(request: Request) -> Any:
        return await operator.status()

    async def waves(request: Request) -> Any:
        return await operator.waves(_int(request, "last"))

    async def wave(request: Request) -> Any:
        return await operator.wave(request.path_params["wave_id"])

    async def positions(request: Request) -> Any:
        return await operator.positions(_bool(request, "all"))

    async def position(request: Request) -> Any:
        return await operator.position(request.path_params["position_id"])

    async def events(request: Request) -> Any:
        q = request.query_params
        return await operator.events(wave_id=q.get("wave") or None, signal_id=q.get("signal") or None,
                                     position_id=_int(request, "position"), since=parse_since(q.get("since")))

    async def pause(request: Request) -> Any:
        reason = ""
        raw = await request.body()
        if raw.strip():
            try:
                data = json.loads(raw)
            except ValueError:
                raise BadParameter("body", raw[:80].decode(errors="replace"), 'JSON like {"reason": "..."}') from None
            if not isinstance(data, dict) or not isinstance(data.get("reason", ""), str):
                raise BadParameter("reason", data, "a string")
            reason = data.get("reason", "").strip()[:500]
        return await operator.pause(reason)

    async def resume(request: Request) -> Any:
        return await operator.resume()

    async def close(request: Request) -> Any:
        return await operator.close(request.path_params["position_id"])

    async def spec(request: Request) -> Any:
        return openapi.document()

    async def page(request: Request) -> Any:
        return Response(dashboard.html(), media_type="text/html; charset=utf-8",
                        headers={"cache-control": "no-store", "content-security-policy": dashboard.csp(),
                                 "referrer-policy": "no-referrer", "x-content-type-options": "nosniff"})

    async def metrics_page(request: Request) -> Any:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    routes: list[BaseRoute] = [
        Route("/", endpoint(page)),
        Route("/api/v1/ping", endpoint(ping)),
        Route("/api/v1/openapi.json", endpoint(spec)),
        Route("/api/v1/status", endpoint(status)),
        Route("/api/v1/waves", endpoint(waves)),
        Route("/api/v1/waves/{wave_id}", endpoint(wave)),
        Route("/api/v1/positions", endpoint(positions)),
        Route("/api/v1/positions/{position_id:int}", endpoint(position)),
        Route("/api/v1/positions/{position_id:int}/close", endpoint(close, bound=operator.close_bound(timeout)),
              methods=["POST"]),
        Route("/api/v1/events", endpoint(events)),
        Route("/api/v1/pause", endpoint(pause), methods=["POST"]),
        Route("/api/v1/resume", endpoint(resume), methods=["POST"]),
        WebSocketRoute("/api/v1/ws", hub.endpoint(token)),
        Route("/metrics", endpoint(metrics_page)),
        *extra_routes,
    ]
    app = Starlette(routes=routes)
    return Guard(app, token=token, max_body_bytes=settings.max_body_bytes,
                 metrics_public=settings.metrics_public)

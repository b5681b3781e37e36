"""`POST /api/v1/signals` on the operator's HTTP server: the HTTP face of the webhook's logic.

Only transport here: the body is read up to `MAX_BODY + 1` bytes (a larger
Content-Length is refused before reading), the `Authorization` header is
passed on, and `adapters.signals.webhook.WebhookIntake` decides the answer.
The route is public to the operator's token guard: a webhook sender
(TradingView) cannot set headers, so it proves itself with the signal secret.
"""

from __future__ import annotations

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.signals.webhook import MAX_BODY, WebhookIntake

PATH = "/api/v1/signals"
TOO_LARGE = {"error": f"the body is over {MAX_BODY // 1024} KiB"}


def webhook_route(intake: WebhookIntake, *, timeout: float = 5.0) -> Route:
    async def post(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            return JSONResponse(TOO_LARGE, status_code=413)
        body = bytearray()
        try:
            with trio.fail_after(timeout):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_BODY:
                        return JSONResponse(TOO_LARGE, status_code=413)
                answer = await intake.handle(bytes(body), request.headers.get("authorization"))
        except trio.TooSlowError:
            return JSONResponse({"error": f"no answer within {timeout:g}s"}, status_code=503)
        return JSONResponse(answer.body, status_code=answer.status, headers=dict(answer.headers))

    return Route(PATH, post, methods=["POST"])

"""The operator's HTTP server: JSON API, event stream, dashboard and metrics, in the engine's nursery.

Stack: Starlette (ASGI, runs on Trio through anyio) served by hypercorn's Trio
worker. `serve_api` binds, prints nothing itself and reports the address it
listens on through `task_status`; `trio_bot.run` starts it next to the engine.

Routes from elsewhere in the wiring (e.g. a signal webhook) are added with
`extra_routes=[starlette.routing.Route(...)]`: everything under `/api/v1`
except `ping` and `openapi.json` then requires the bearer token.
"""

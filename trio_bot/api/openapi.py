"""The OpenAPI 3.1 description served at `/api/v1/openapi.json` (kept beside the routes it describes;
a test checks that every route of the app is described and vice versa)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

_JSON = "application/json"


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {_JSON: {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


_ERR = {"$ref": "#/components/schemas/Error"}
_401 = {"description": "missing or wrong bearer token", "content": {_JSON: {"schema": _ERR}}}
_404 = {"description": "unknown id", "content": {_JSON: {"schema": _ERR}}}
_400 = {"description": "a bad query parameter (the message names it)", "content": {_JSON: {"schema": _ERR}}}
_503 = {"description": "the store or the engine did not answer in time", "content": {_JSON: {"schema": _ERR}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/ping": {"get": {"summary": "Liveness (no token needed)", "security": [],
                             "responses": {"200": _ok("pong")}}},
    "/api/v1/status": {"get": {
        "summary": "State (running/paused), account, exchange, open positions with live trailing, last wave, uptime",
        "responses": {"200": _ok("status", {"$ref": "#/components/schemas/Status"}), "401": _401, "503": _503}}},
    "/api/v1/waves": {"get": {
        "summary": "Stored waves, oldest first (as `trio-bot waves --json`)",
        "parameters": [_query("last", {"type": "integer", "minimum": 0}, "only the newest N")],
        "responses": {"200": _ok("waves"), "400": _400, "401": _401, "503": _503}}},
    "/api/v1/waves/{wave_id}": {"get": {
        "summary": "One wave with each signal's outcome", "parameters": [_path("wave_id", {"type": "string"})],
        "responses": {"200": _ok("wave"), "401": _401, "404": _404}}},
    "/api/v1/positions": {"get": {
        "summary": "Positions (as `trio-bot positions --json`)",
        "parameters": [_query("all", {"type": "boolean"}, "include closed positions")],
        "responses": {"200": _ok("positions"), "400": _400, "401": _401}}},
    "/api/v1/positions/{position_id}": {"get": {
        "summary": "One position (an open one with its live trailing state)",
        "parameters": [_path("position_id", {"type": "integer"})],
        "responses": {"200": _ok("position"), "401": _401, "404": _404}}},
    "/api/v1/positions/{position_id}/close": {"post": {
        "summary": "Close an open position: reduce-only market order, exit_reason `operator`; the stop is "
                   "cancelled only after the close filled",
        "parameters": [_path("position_id", {"type": "integer"})],
        "responses": {"200": _ok("the closed position"), "401": _401, "404": _404,
                      "409": {"description": "the position is not open", "content": {_JSON: {"schema": _ERR}}},
                      "502": {"description": "the close did not go through; the stop stays in place",
                              "content": {_JSON: {"schema": _ERR}}}}}},
    "/api/v1/events": {"get": {
        "summary": "The stored timeline (as `trio-bot events --json`); filters combine",
        "parameters": [_query("wave", {"type": "string"}, "a wave's events, its signals' and their positions'"),
                       _query("signal", {"type": "string"}, "one signal's events"),
                       _query("position", {"type": "integer"}, "one position's events"),
                       _query("since", {"type": "string"}, "epoch seconds or ISO 8601 (UTC if no zone)")],
        "responses": {"200": _ok("events"), "400": _400, "401": _401, "503": _503}}},
    "/api/v1/pause": {"post": {
        "summary": "Pause new entries (persisted across restarts); valid signals are then `skipped`",
        "requestBody": {"required": False, "content": {_JSON: {"schema": {
            "type": "object", "properties": {"reason": {"type": "string", "maxLength": 500}}}}}},
        "responses": {"200": _ok("status after pausing", {"$ref": "#/components/schemas/Status"}),
                      "400": _400, "401": _401, "413": {"description": "body too large"}}}},
    "/api/v1/resume": {"post": {
        "summary": "Resume new entries",
        "responses": {"200": _ok("status after resuming", {"$ref": "#/components/schemas/Status"}),
                      "401": _401}}},
    "/api/v1/ws": {"get": {
        "summary": "Websocket: every timeline event, in order, as `{\"type\": \"events\", \"events\": [...]}`; "
                   "authenticate "
                   "with the Authorization header or a first message `{\"token\": \"...\"}`",
        "responses": {"101": {"description": "switching protocols"}}}},
    "/metrics": {"get": {
        "summary": "Prometheus metrics (token required unless [api] metrics_public = true)",
        "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {}}},
                      "401": _401}}},
    "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                     "responses": {"200": _ok("OpenAPI 3.1")}}},
}


def _version() -> str:
    try:
        return version("trio-bot")
    except PackageNotFoundError:
        return "0"


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "trio-bot operator API", "version": _version(),
                 "description": "The running engine's state and the operator's actions. JSON shapes match "
                                "the CLI's --json output."},
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
                "Status": {"type": "object", "required": ["state", "account", "exchange", "uptime",
                                                          "open_positions", "last_wave", "positions"],
                           "properties": {
                               "state": {"enum": ["running", "paused"]},
                               "paused": {"type": ["object", "null"]},
                               "account": {"type": "string"}, "exchange": {"type": "string"},
                               "uptime": {"type": "number"}, "started_at": {"type": "number"},
                               "open_positions": {"type": "integer"},
                               "unprotected_positions": {"type": "integer"},
                               "wave_running": {"type": ["string", "null"]},
                               "last_wave": {"type": ["object", "null"]},
                               "positions": {"type": "array", "items": {"type": "object"}}}},
            },
        },
    }

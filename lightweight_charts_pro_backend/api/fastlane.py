"""A shortcut to the history route, the one request a scrolling chart sends over and over.

The route stays declared on the router, which documents it and serves it when the lane is not
installed. The lane matches its path with one regular expression and builds the same body with
the same function, skipping FastAPI's route scan, dependency resolution and request/response
objects: with the chunk already encoded, those cost more than the lookup itself.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..auth import READ
from ..errors import ChartsError
from .charts import history_chunk_json
from .errors import render_charts_error

HISTORY_TEMPLATE = "/api/charts/{chart_id}/history/{pane_id}/{series_id}"
_HISTORY_PATH = re.compile(r"/api/charts/([^/]+)/history/([^/]+)/([^/]+)")


class HistoryLane:
    """Pure ASGI; install innermost so request ids, logging, metrics and limits still apply."""

    def __init__(self, app: ASGIApp, *, route: APIRoute) -> None:
        if route.path != HISTORY_TEMPLATE:
            raise ValueError(f"HistoryLane serves {HISTORY_TEMPLATE}, not {route.path}")
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        match = _HISTORY_PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        chart_id, pane_id, series_id = match.groups()
        path = {"chart_id": chart_id, "pane_id": pane_id, "series_id": series_id}
        scope["route"] = self.route
        scope["path_params"] = path
        query = (
            dict(parse_qsl(scope["query_string"].decode("latin-1")))
            if scope["query_string"]
            else {}
        )
        state = scope["app"].state
        try:
            if state.authenticator.enforce:
                await state.authenticator.require(Headers(scope=scope), chart_id, READ)
            body = await history_chunk_json(state.charts, path, query, scope)
        except ChartsError as exc:
            await render_charts_error(exc)(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

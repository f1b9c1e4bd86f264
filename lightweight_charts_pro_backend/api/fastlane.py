"""A shortcut to the history route, the one request a scrolling chart sends over and over.

The route stays declared on the router, which documents it and serves it when the lane is not
installed. The lane matches its path with one regular expression and calls the same endpoint,
skipping FastAPI's route scan and dependency resolution: with the chunk already encoded, those
cost more than the lookup itself.
"""

from __future__ import annotations

import re

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ChartsError
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
        scope["route"] = self.route
        scope["path_params"] = {"chart_id": chart_id, "pane_id": pane_id, "series_id": series_id}
        try:
            response = await self.route.endpoint(Request(scope, receive))
        except ChartsError as exc:
            response = render_charts_error(exc)
        await response(scope, receive, send)

"""UDF routes, mounted at ``UDF_PATH``: ``/config``, ``/symbols``, ``/search``, ``/history``,
``/marks``, ``/timescale_marks``, ``/time``.

The stock adapter parses every answer as JSON whatever its status, and reads only ``s`` and
``errmsg`` when something is wrong; so every refusal is ``{"s": "error", "errmsg"}``, with
``errorCode`` and ``requestId`` beside it and its own status: 422 for a parameter, 404 for an
unknown symbol, 401/403 for credentials, 503 for an outage. Parameters are read by hand, so that
no input becomes FastAPI's 422 envelope (without ``s``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from ..api.deps import authorize
from ..auth import READ, Authenticator, Principal, http_credentials
from ..errors import ChartsError
from ..request_context import EXCHANGE_KEY, Exchange, current_request_id
from .service import UdfService

JSON: Final = "application/json"


class UdfErrorBody(BaseModel):
    """A refusal as the UDF adapter reads it (``s`` and ``errmsg``), with the service's code."""

    s: Literal["error"]
    errmsg: str
    errorCode: str | None = None
    requestId: str | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": UdfErrorBody} for code in (401, 403, 404, 422, 429, 503)
}

Answer = Callable[[UdfService, Principal, QueryParams], Awaitable[bytes]]
#: Who asks without credentials where the datafeed answers anyway (``/config``): no chart.
NOBODY: Final = Principal("", frozenset(), frozenset(), kind="anonymous")


def _query(name: str, description: str, type_: str = "string") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": type_},
        "description": description,
    }


_SYMBOL = _query("symbol", "A ticker (chart~pane~series), a symbol name, or EXCHANGE:NAME.")


def get_udf(request: Request) -> UdfService:
    udf: UdfService = request.app.state.udf
    return udf


async def _serve(
    request: Request, answer: Answer, media_type: str = JSON, *, open_without: bool = False
) -> Response:
    """``answer`` for the request's caller, or for ``NOBODY`` when ``open_without`` and the
    request carries no credentials at all (auth on); refusals as the module says."""
    try:
        if open_without and not _presents_credentials(request):
            caller = NOBODY
        else:
            caller = await authorize(request, READ)
        body = await answer(get_udf(request), caller, request.query_params)
    except ChartsError as exc:
        refusal = {
            "s": "error",
            "errmsg": exc.detail,
            "errorCode": exc.error_code,
            "requestId": current_request_id(),
        }
        return Response(
            orjson.dumps(refusal), status_code=exc.status_code, media_type=JSON, headers=exc.headers
        )
    return Response(body, media_type=media_type)


async def udf_config(request: Request) -> Response:
    """The datafeed's configuration: what it supports, and the exchanges and symbol types of the
    caller's symbols. Answered without credentials too (then without exchanges and types): the
    stock adapter asks for it from its constructor, before a page can give it a header."""

    async def answer(udf: UdfService, caller: Principal, query: QueryParams) -> bytes:
        return await udf.config(caller)

    return await _serve(request, answer, open_without=True)


async def udf_symbols(request: Request) -> Response:
    """One symbol's info (the library's ``resolveSymbol``); with ``min_version``, from no older
    version of its chart."""

    async def answer(udf: UdfService, caller: Principal, query: QueryParams) -> bytes:
        return await udf.symbol_info(
            caller,
            query.get("symbol"),
            min_version=query.get("min_version") or query.get("minVersion"),
        )

    return await _serve(request, answer)


async def udf_search(request: Request) -> Response:
    """Symbols matching a query, case-insensitively."""

    async def answer(udf: UdfService, caller: Principal, query: QueryParams) -> bytes:
        return await udf.search(
            caller, query.get("query"), query.get("type"), query.get("exchange"), query.get("limit")
        )

    return await _serve(request, answer)


async def udf_history(request: Request) -> Response:
    """Bars as UDF arrays (``t``, ``o``, ``h``, ``l``, ``c``, ``v``), ``no_data`` with
    ``nextTime`` when the window holds none; with ``min_version``, of no older version of the
    chart (503 rather than older bars when the database cannot be read)."""

    async def answer(udf: UdfService, caller: Principal, query: QueryParams) -> bytes:
        body, bars = await udf.history(
            caller,
            query.get("symbol"),
            query.get("resolution"),
            start=query.get("from"),
            end=query.get("to"),
            countback=query.get("countback"),
            min_version=query.get("min_version") or query.get("minVersion"),
        )
        _served_history(request, bars)
        return body

    return await _serve(request, answer)


async def udf_marks(request: Request) -> Response:
    """The caller's markers of the symbol's series as bar marks."""

    async def answer(udf: UdfService, caller: Principal, query: QueryParams) -> bytes:
        return await udf.marks(
            caller,
            query.get("symbol"),
            start=query.get("from"),
            end=query.get("to"),
            resolution=query.get("resolution"),
        )

    return await _serve(request, answer)


async def udf_timescale_marks(request: Request) -> Response:
    """The caller's vertical lines on the symbol's pane as time-scale marks."""

    async def answer(udf: UdfService, caller: Principal, query: QueryParams) -> bytes:
        return await udf.timescale_marks(
            caller,
            query.get("symbol"),
            start=query.get("from"),
            end=query.get("to"),
            resolution=query.get("resolution"),
        )

    return await _serve(request, answer)


async def udf_time(request: Request) -> Response:
    """The server's time, unix seconds as plain text."""

    async def answer(udf: UdfService, caller: Principal, query: QueryParams) -> bytes:
        return b"%d" % int(time.time())

    return await _serve(request, answer, "text/plain")


def _presents_credentials(request: Request) -> bool:
    authenticator: Authenticator = request.app.state.authenticator
    if not authenticator.enforce:
        return True  # everyone is the anonymous caller
    return http_credentials(request.headers, authenticator.api_key_header).present


def _served_history(request: Request, bars: int) -> None:
    """Count the bars with the REST history metrics, as the REST history routes do."""
    exchange: Exchange | None = request.scope.get(EXCHANGE_KEY)
    if exchange is not None:
        exchange.points = bars
    else:
        request.app.state.metrics.history_served("rest", bars)


_SEARCH_PARAMETERS = [
    _query("query", "Text to find in names (prefix first), descriptions and tickers."),
    _query("type", "Only symbols of this type."),
    _query("exchange", "Only symbols of this exchange."),
    _query("limit", "At most this many results (default 30).", "integer"),
]
_MIN_VERSION = _query(
    "min_version",
    "Answer with no older version of the chart than this (a write's version).",
    "integer",
)
_HISTORY_PARAMETERS = [
    _SYMBOL,
    _query("resolution", "TradingView resolution: 30S, 1, 60, 240, 1D, 1W, 1M..."),
    _query("from", "Unix seconds, inclusive (ignored with countback).", "integer"),
    _query("to", "Unix seconds, exclusive.", "integer"),
    _query("countback", "This many bars ending before to.", "integer"),
    _MIN_VERSION,
]

_MARKS_PARAMETERS = [
    _SYMBOL,
    _query("from", "Unix seconds, inclusive.", "integer"),
    _query("to", "Unix seconds, inclusive.", "integer"),
    _query("resolution", "Marks at the times of the bars of this resolution."),
]


def router_at(path: str) -> APIRouter:
    """The datafeed's routes under ``path`` (``UDF_PATH``)."""
    router = APIRouter(prefix=path, tags=["udf"])
    router.add_api_route("/config", udf_config, methods=["GET"], responses=_ERRORS)
    router.add_api_route(
        "/symbols",
        udf_symbols,
        methods=["GET"],
        responses=_ERRORS,
        openapi_extra={"parameters": [_SYMBOL, _MIN_VERSION]},
    )
    router.add_api_route(
        "/search",
        udf_search,
        methods=["GET"],
        responses=_ERRORS,
        openapi_extra={"parameters": _SEARCH_PARAMETERS},
    )
    router.add_api_route(
        "/history",
        udf_history,
        methods=["GET"],
        responses=_ERRORS,
        openapi_extra={"parameters": _HISTORY_PARAMETERS},
    )
    router.add_api_route(
        "/marks",
        udf_marks,
        methods=["GET"],
        responses=_ERRORS,
        openapi_extra={"parameters": _MARKS_PARAMETERS},
    )
    router.add_api_route(
        "/timescale_marks",
        udf_timescale_marks,
        methods=["GET"],
        responses=_ERRORS,
        openapi_extra={"parameters": _MARKS_PARAMETERS},
    )
    router.add_api_route(
        "/time", udf_time, methods=["GET"], response_class=Response, responses=_ERRORS
    )
    return router


class HistoryLane:
    """``GET <UDF_PATH>/history`` without FastAPI's routing, the request a scrolling Charting
    Library sends over and over (as ``api.fastlane.HistoryLane`` does for REST history).

    Pure ASGI; install innermost, so request ids, logging, metrics and limits still apply. The
    route stays declared, documented, and serving when the lane is not installed.
    """

    def __init__(self, app: ASGIApp, *, route: APIRoute) -> None:
        if route.endpoint is not udf_history:
            raise ValueError(f"HistoryLane serves the UDF history route, not {route.path}")
        self.app = app
        self.route = route
        self.path = route.path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        response = await udf_history(Request(scope, receive))
        await response(scope, receive, send)


def history_route(router: APIRouter) -> APIRoute:
    """The UDF history route of a router made by ``router_at``."""
    return next(
        route
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint is udf_history
    )

"""`/api/charts`: charts, series data and history.

The data routes read their bodies by hand and the history route parses its own parameters: a
million-point body must not go through per-item model validation, and the history chunk is the
hot path, where FastAPI's parameter validation would cost more than the lookup itself. Their
OpenAPI entries are declared explicitly so the schema still documents them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response, status
from fastapi.routing import APIRoute
from starlette.types import Scope

from ..auth import READ
from ..charts.memory import release_freed_memory
from ..charts.service import ChartsService, ReplaceResult, UpsertResult, check_id
from ..config import Settings
from ..errors import InvalidRequest
from ..request_context import EXCHANGE_KEY, Exchange
from . import render
from .body import check_point_count, read_json_object
from .deps import ChartReader, ChartsDep, ChartWriter, SettingsDep, authorize
from .schemas import (
    ChartCreated,
    ChartData,
    ChartList,
    ChartSummary,
    ErrorBody,
    HistoryChunk,
    HistoryQuery,
    PointsWrite,
    PointsWritten,
    RangeData,
    SeriesData,
    SeriesWrite,
    SeriesWritten,
)

router = APIRouter(prefix="/api/charts", tags=["charts"])

JSON = "application/json"
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 415, 422, 429)
}
_LARGE_WRITE = 50_000  # points; after such a write, freed heap pages go back to the OS
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_RESOLUTION_DOC = (
    "TradingView resolution of the bars to serve instead of the stored points: <n>S seconds, "
    "<n> minutes, <n>H hours (answered in minutes), <n>D, <n>W, <n>M."
)
_NUMBER = re.compile(r"-?[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?")


def _body_schema(model: type[SeriesWrite | PointsWrite | HistoryQuery]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    return {"requestBody": {"required": True, "content": {JSON: {"schema": schema}}}}


def _fields(body: dict[str, Any], accepted: dict[str, str]) -> dict[str, Any]:
    """Map camelCase or snake_case keys of ``body`` to snake_case; refuse unknown keys."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        name = accepted.get(key)
        if name is None:
            raise InvalidRequest(
                f"Unknown field {key!r}; expected {', '.join(sorted(set(accepted.values())))}."
            )
        if name in out:
            raise InvalidRequest(f"Field {name} is given twice (camelCase and snake_case).")
        out[name] = value
    return out


def _accepting(*names: str) -> dict[str, str]:
    accepted = {}
    for name in names:
        head, *rest = name.split("_")
        accepted[name] = name
        accepted[head + "".join(part.title() for part in rest)] = name
    return accepted


_SERIES_FIELDS = _accepting("pane_id", "series_type", "data", "options", "market", "aggregation")
_UPSERT_FIELDS = _accepting("pane_id", "series_type", "data")
_HISTORY_FIELDS = _accepting(
    "pane_id", "series_id", "before_time", "after_time", "count", "min_version", "resolution"
)
MinVersion = Annotated[
    int | None,
    Query(
        ge=0,
        description="Answer with no older version of the chart than this (a write's version).",
    ),
]
#: The chart's version after a write, on every write response (a 204 has no body to carry it).
VERSION_HEADER = "X-Chart-Version"


def _written(body: dict[str, Any], version: int, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps({**body, "version": version}),
        status_code=status_code,
        media_type=JSON,
        headers={VERSION_HEADER: str(version)},
    )


def _deleted(version: int) -> Response:
    return Response(status_code=204, headers={VERSION_HEADER: str(version)})


def _min_version(query: Mapping[str, str]) -> int | None:
    """The ``min_version`` (or ``minVersion``) query parameter: read no older version than it."""
    value = query.get("min_version") or query.get("minVersion")
    if value is None:
        return None
    if not _INTEGER.fullmatch(value) or value.startswith("-"):
        raise InvalidRequest(f"min_version must be an integer >= 0; got {value[:40]!r}.")
    return int(value)


def _pane(value: object) -> int:
    if type(value) is int and 0 <= value <= 100:
        return value
    raise InvalidRequest(f"paneId must be an integer from 0 to 100; got {str(value)[:40]!r}.")


def _options(value: object) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise InvalidRequest("options must be a JSON object.")


def _require(fields: dict[str, Any], name: str, wire: str) -> Any:
    if name not in fields:
        raise InvalidRequest(f"Field {wire} is required.")
    return fields[name]


@router.get("", response_model=ChartList, responses=_ERRORS)
async def list_charts(
    charts: ChartsDep, caller: ChartReader, min_version: MinVersion = None
) -> Response:
    # Accepted like on every read; the listing comes from the database when it is shared.
    listing = [
        ChartSummary(
            chart_id=chart.chart_id,
            options=chart.options,
            series_count=chart.series_count,
            updated_at=datetime.fromtimestamp(chart.updated_at, UTC).isoformat(),
        ).model_dump(by_alias=True)
        for chart in await charts.charts()
        if caller.may_see(chart.chart_id)
    ]
    return Response(orjson.dumps({"charts": listing}), media_type=JSON)


@router.post(
    "/{chart_id}",
    response_model=ChartCreated,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ChartCreated, "description": "The chart already existed"}, **_ERRORS},
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {JSON: {"schema": {"type": "object", "description": "Chart options"}}},
        }
    },
)
async def create_chart(
    chart_id: str, request: Request, charts: ChartsDep, caller: ChartWriter
) -> Response:
    options = await read_json_object(request, optional=True)
    chart, created = await charts.create_chart(chart_id, options)
    return _written(
        {"chartId": chart.chart_id, "options": chart.options},
        chart.version,
        status_code=201 if created else 200,
    )


@router.get("/{chart_id}", response_model=ChartData, responses=_ERRORS)
async def get_chart(
    chart_id: str, charts: ChartsDep, caller: ChartReader, min_version: MinVersion = None
) -> Response:
    view = await charts.get_chart(check_id(chart_id, "chartId"), min_version=min_version)
    return Response(render.chart_json(view.chart, view.series), media_type=JSON)


@router.delete("/{chart_id}", status_code=204, responses=_ERRORS)
async def delete_chart(chart_id: str, charts: ChartsDep, caller: ChartWriter) -> Response:
    return _deleted(await charts.delete_chart(check_id(chart_id, "chartId")))


@router.post(
    "/{chart_id}/data/{series_id}",
    response_model=SeriesWritten,
    responses=_ERRORS,
    openapi_extra=_body_schema(SeriesWrite),
)
async def replace_series(
    chart_id: str,
    series_id: str,
    request: Request,
    charts: ChartsDep,
    settings: SettingsDep,
    caller: ChartWriter,
) -> Response:
    result = await _replace(charts, settings, chart_id, series_id, request)
    series = result.series
    if series.count >= _LARGE_WRITE:
        release_freed_memory()  # the parsed body is garbage by now
    return _written(
        {"seriesId": series.series_id, "seriesType": series.series_type, "count": series.count},
        result.version,
    )


async def _replace(
    charts: ChartsService, settings: Settings, chart_id: str, series_id: str, request: Request
) -> ReplaceResult:
    body = _fields(await read_json_object(request) or {}, _SERIES_FIELDS)
    check_point_count(body.get("data"), settings)
    return await charts.replace_series(
        chart_id,
        _pane(body.get("pane_id", 0)),
        series_id,
        _require(body, "series_type", "seriesType"),
        _require(body, "data", "data"),
        _options(body.get("options")),
        from_json=True,
        market=body.get("market"),
        aggregation=body.get("aggregation"),
    )


@router.patch(
    "/{chart_id}/data/{series_id}",
    response_model=PointsWritten,
    responses=_ERRORS,
    openapi_extra=_body_schema(PointsWrite),
)
async def upsert_points(
    chart_id: str,
    series_id: str,
    request: Request,
    charts: ChartsDep,
    settings: SettingsDep,
    caller: ChartWriter,
) -> Response:
    result = await _upsert(charts, settings, chart_id, series_id, request)
    if result.count >= _LARGE_WRITE:
        release_freed_memory()
    return _written(
        {"seriesId": series_id, "count": result.count, "totalCount": result.total_count},
        result.version,
    )


async def _upsert(
    charts: ChartsService, settings: Settings, chart_id: str, series_id: str, request: Request
) -> UpsertResult:
    body = _fields(await read_json_object(request) or {}, _UPSERT_FIELDS)
    check_point_count(body.get("data"), settings)
    check_id(chart_id, "chartId")
    check_id(series_id, "seriesId")
    return await charts.upsert_points(
        chart_id,
        _pane(body.get("pane_id", 0)),
        series_id,
        _require(body, "data", "data"),
        series_type=body.get("series_type"),
        from_json=True,
    )


@router.get("/{chart_id}/data/{pane_id}/{series_id}", response_model=SeriesData, responses=_ERRORS)
async def get_series(
    chart_id: str,
    pane_id: int,
    series_id: str,
    charts: ChartsDep,
    caller: ChartReader,
    min_version: MinVersion = None,
    resolution: Annotated[str | None, Query(description=_RESOLUTION_DOC)] = None,
) -> Response:
    check_id(chart_id, "chartId")
    if resolution:
        view, parsed = await charts.series_at(
            chart_id, _pane(pane_id), series_id, resolution, min_version=min_version
        )
        return Response(render.series_json(view, parsed.text), media_type=JSON)
    view = await charts.get_series(chart_id, _pane(pane_id), series_id, min_version=min_version)
    return Response(render.series_json(view), media_type=JSON)


@router.delete("/{chart_id}/data/{pane_id}/{series_id}", status_code=204, responses=_ERRORS)
async def delete_series(
    chart_id: str, pane_id: int, series_id: str, charts: ChartsDep, caller: ChartWriter
) -> Response:
    return _deleted(
        await charts.delete_series(check_id(chart_id, "chartId"), _pane(pane_id), series_id)
    )


def _query_time(value: str | None) -> object:
    if value is None or value == "":
        return None
    if _INTEGER.fullmatch(value):
        return int(value)
    if _NUMBER.fullmatch(value):
        return float(value)
    return value


def _query_count(value: str | None) -> int | None:
    if value is None:
        return None
    if not _INTEGER.fullmatch(value):
        raise InvalidRequest(f"count must be an integer from 1 to 10000; got {value[:40]!r}.")
    return int(value)


MIN_VERSION_PARAMETER: dict[str, Any] = {
    "name": "min_version",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 0},
    "description": "Answer with no older version of the chart than this (a write's version).",
}
_HISTORY_PARAMETERS = [
    {"name": "chart_id", "in": "path", "required": True, "schema": {"type": "string"}},
    {
        "name": "pane_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    {"name": "series_id", "in": "path", "required": True, "schema": {"type": "string"}},
    {
        "name": "before_time",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Exclusive upper bound: UTC seconds, milliseconds, YYYY-MM-DD or ISO-8601.",
    },
    {
        "name": "after_time",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Exclusive lower bound, in the same forms as before_time.",
    },
    {
        "name": "count",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 500},
    },
    MIN_VERSION_PARAMETER,
    {
        "name": "resolution",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": _RESOLUTION_DOC,
    },
]


@router.get(
    "/{chart_id}/history/{pane_id}/{series_id}",
    response_model=HistoryChunk,
    responses=_ERRORS,
    openapi_extra={"parameters": _HISTORY_PARAMETERS},
)
async def history(request: Request) -> Response:
    await authorize(request, READ)
    state = request.app.state
    body = await history_chunk_json(
        state.charts, request.path_params, request.query_params, request.scope
    )
    return Response(body, media_type=JSON)


async def history_chunk_json(
    charts: ChartsService, path: Mapping[str, str], query: Mapping[str, str], scope: Scope
) -> bytes:
    """The history chunk for the route's path and query parameters (shared with the lane).

    The number of points served is reported with the request's metrics.
    """
    pane = path["pane_id"]
    series_id = path["series_id"]
    resolution = query.get("resolution")
    if resolution:
        chunk, parsed = await charts.history_at(
            path["chart_id"],
            _pane(int(pane) if _INTEGER.fullmatch(pane) else pane),
            series_id,
            resolution,
            before_time=_query_time(query.get("before_time") or query.get("beforeTime")),
            after_time=_query_time(query.get("after_time") or query.get("afterTime")),
            count=_query_count(query.get("count")),
            min_version=_min_version(query),
        )
        _served_history(scope, chunk.count)
        return render.history_json(series_id, chunk, resolution=parsed.text)
    chunk = await charts.history(
        path["chart_id"],
        _pane(int(pane) if _INTEGER.fullmatch(pane) else pane),
        series_id,
        before_time=_query_time(query.get("before_time") or query.get("beforeTime")),
        after_time=_query_time(query.get("after_time") or query.get("afterTime")),
        count=_query_count(query.get("count")),
        min_version=_min_version(query),
    )
    _served_history(scope, chunk.count)
    return render.history_json(series_id, chunk)


def _served_history(scope: Scope, points: int) -> None:
    """Report a REST history chunk: with the request's metrics when the outermost middleware
    is there to (it reads the request's Exchange), else at once."""
    exchange: Exchange | None = scope.get(EXCHANGE_KEY)
    if exchange is not None:
        exchange.points = points
    else:
        scope["app"].state.metrics.history_served("rest", points)


history_route = next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is history)


@router.post(
    "/{chart_id}/history",
    response_model=HistoryChunk,
    responses=_ERRORS,
    openapi_extra=_body_schema(HistoryQuery),
)
async def history_by_body(
    chart_id: str, request: Request, charts: ChartsDep, caller: ChartReader
) -> Response:
    body = _fields(await read_json_object(request) or {}, _HISTORY_FIELDS)
    series_id = _require(body, "series_id", "seriesId")
    if not isinstance(series_id, str):
        raise InvalidRequest("seriesId must be a string.")
    count = body.get("count")
    if body.get("resolution") is not None:
        chunk, parsed = await charts.history_at(
            chart_id,
            _pane(body.get("pane_id", 0)),
            series_id,
            body["resolution"],
            before_time=body.get("before_time"),
            after_time=body.get("after_time"),
            count=count,
            min_version=body.get("min_version"),
        )
        _served_history(request.scope, chunk.count)
        body_json = render.history_json(series_id, chunk, resolution=parsed.text)
        return Response(body_json, media_type=JSON)
    chunk = await charts.history(
        chart_id,
        _pane(body.get("pane_id", 0)),
        series_id,
        before_time=body.get("before_time"),
        after_time=body.get("after_time"),
        count=count,
        min_version=body.get("min_version"),
    )
    _served_history(request.scope, chunk.count)
    return Response(render.history_json(series_id, chunk), media_type=JSON)


_RANGE_PARAMETERS = [
    *_HISTORY_PARAMETERS[:3],
    {
        "name": "from",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Inclusive start (any time form history accepts); default: the first point.",
    },
    {
        "name": "to",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Exclusive end; default: after the last point.",
    },
    {
        "name": "max_points",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 2, "maximum": 20000, "default": 2000},
    },
    MIN_VERSION_PARAMETER,
]


@router.get(
    "/{chart_id}/range/{pane_id}/{series_id}",
    response_model=RangeData,
    responses=_ERRORS,
    openapi_extra={"parameters": _RANGE_PARAMETERS},
)
async def series_range(request: Request, charts: ChartsDep, caller: ChartReader) -> Response:
    """At most ``max_points`` points of a time range, for a zoomed-out view: the stored points
    when they fit, else bars (OHLC series) or each stretch's extremes (value series)."""
    path, query = request.path_params, request.query_params
    pane = path["pane_id"]
    max_points = query.get("max_points") or query.get("maxPoints")
    if max_points is not None and not _INTEGER.fullmatch(max_points):
        raise InvalidRequest(f"max_points must be an integer; got {max_points[:40]!r}.")
    view = await charts.range_view(
        check_id(path["chart_id"], "chartId"),
        _pane(int(pane) if _INTEGER.fullmatch(pane) else pane),
        path["series_id"],
        start=_query_time(query.get("from")),
        end=_query_time(query.get("to")),
        max_points=2000 if max_points is None else int(max_points),
        min_version=_min_version(query),
    )
    return Response(render.range_json(path["series_id"], view), media_type=JSON)

"""`/api/charts/{chart_id}/annotations` and `/api/charts/{chart_id}/markers`.

Every route authorizes reading the chart; the service asks for write access where the change
touches what everyone sees (a ``chart`` annotation). Bodies are read within
``MAX_ANNOTATION_BYTES``; responses are built from the stored JSON of each annotation.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Depends, Request, Response, status

from ..api.body import check_depth, read_body
from ..api.deps import ChartReader, SettingsDep
from ..api.schemas import ErrorBody
from ..charts.points import normalize_time
from ..charts.service import MAX_PANE, check_id
from ..config import Settings
from ..errors import InvalidData, InvalidRequest, PayloadTooLarge
from .errors import AnnotationTooLarge
from .schemas import KINDS
from .service import AnnotationsService

JSON: Final = "application/json"
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 413, 422, 429)
}
_INTEGER: Final = re.compile(r"-?[0-9]{1,20}")
_NUMBER: Final = re.compile(r"-?[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?")
_ANNOTATION_SCHEMA: Final = {
    "type": "object",
    "required": ["kind", "points"],
    "properties": {
        "annotationId": {"type": "string", "description": "Optional; generated when absent"},
        "kind": {
            "type": "string",
            "enum": list(KINDS),
        },
        "paneId": {"type": "integer", "minimum": 0, "maximum": MAX_PANE, "default": 0},
        "seriesId": {"type": "string", "description": "Required for markers"},
        "points": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"time": {}, "price": {"type": "number"}},
            },
        },
        "style": {"type": "object"},
        "text": {"type": "string"},
        "visibility": {"type": "string", "enum": ["chart", "private"], "default": "chart"},
    },
}


def get_annotations(request: Request) -> AnnotationsService:
    service: AnnotationsService = request.app.state.annotations
    return service


AnnotationsDep = Annotated[AnnotationsService, Depends(get_annotations)]

router = APIRouter(prefix="/api/charts", tags=["annotations"])


def _body(required: bool = True) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": required,
            "content": {JSON: {"schema": _ANNOTATION_SCHEMA}},
        }
    }


@router.post(
    "/{chart_id}/annotations",
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
    openapi_extra=_body(),
)
async def create_annotation(
    chart_id: str,
    request: Request,
    annotations: AnnotationsDep,
    settings: SettingsDep,
    caller: ChartReader,
) -> Response:
    check_id(chart_id, "chartId")
    body = await read_annotation_body(request, settings)
    record = await annotations.create(chart_id, caller, body)
    return Response(record.body, status_code=201, media_type=JSON)


@router.get("/{chart_id}/annotations", responses=_ERRORS)
async def list_annotations(
    chart_id: str, request: Request, annotations: AnnotationsDep, caller: ChartReader
) -> Response:
    """Annotations whose anchors' time span overlaps ``[from, to)``, ordered by first time."""
    query = request.query_params
    pane = query.get("pane_id") or query.get("paneId")
    series = query.get("series_id") or query.get("seriesId")
    bodies = await annotations.listing(
        check_id(chart_id, "chartId"),
        caller,
        start=_time(query.get("from"), "from"),
        end=_time(query.get("to"), "to"),
        pane_id=None if pane is None else _pane(pane),
        series_id=None if series is None else check_id(series, "seriesId"),
    )
    return Response(b'{"annotations":[' + b",".join(bodies) + b"]}", media_type=JSON)


@router.get("/{chart_id}/annotations/{annotation_id}", responses=_ERRORS)
async def get_annotation(
    chart_id: str, annotation_id: str, annotations: AnnotationsDep, caller: ChartReader
) -> Response:
    record = await annotations.get(check_id(chart_id, "chartId"), annotation_id, caller)
    return Response(record.body, media_type=JSON)


@router.patch("/{chart_id}/annotations/{annotation_id}", responses=_ERRORS, openapi_extra=_body())
async def update_annotation(
    chart_id: str,
    annotation_id: str,
    request: Request,
    annotations: AnnotationsDep,
    settings: SettingsDep,
    caller: ChartReader,
) -> Response:
    """Change the fields given; ``version`` (required) is the version the change was made on."""
    check_id(chart_id, "chartId")
    body = await read_annotation_body(request, settings)
    record = await annotations.update(chart_id, annotation_id, caller, body)
    return Response(record.body, media_type=JSON)


@router.delete("/{chart_id}/annotations/{annotation_id}", status_code=204, responses=_ERRORS)
async def delete_annotation(
    chart_id: str,
    annotation_id: str,
    request: Request,
    annotations: AnnotationsDep,
    caller: ChartReader,
) -> Response:
    version = request.query_params.get("version")
    if version is not None and not (version.isascii() and version.isdigit() and len(version) < 19):
        raise InvalidRequest(f"version must be an integer >= 1; got {version[:40]!r}.")
    await annotations.delete(
        check_id(chart_id, "chartId"),
        annotation_id,
        caller,
        None if version is None else int(version),
    )
    return Response(status_code=204)


@router.get("/{chart_id}/markers/{pane_id}/{series_id}", responses=_ERRORS)
async def list_markers(
    chart_id: str,
    pane_id: str,
    series_id: str,
    request: Request,
    annotations: AnnotationsDep,
    caller: ChartReader,
) -> Response:
    """The series' markers in ``[from, to)``, sorted by time, ready for ``createSeriesMarkers``;
    with ``resolution`` (``5``, ``60``, ``1D``, ...), each time is that of its bar at that
    resolution, by the series' market (outside the sessions: the nearest session's bar)."""
    query = request.query_params
    markers = await annotations.markers(
        check_id(chart_id, "chartId"),
        _pane(pane_id),
        series_id,
        caller,
        start=_time(query.get("from"), "from"),
        end=_time(query.get("to"), "to"),
        resolution=query.get("resolution") or None,
    )
    return Response(orjson.dumps({"seriesId": series_id, "markers": markers}), media_type=JSON)


async def read_annotation_body(request: Request, settings: Settings) -> dict[str, Any]:
    """The JSON object of an annotation write, at most ``MAX_ANNOTATION_BYTES`` long."""
    limit = settings.max_annotation_bytes
    try:
        body = await read_body(request, limit)
    except PayloadTooLarge:
        raise AnnotationTooLarge(
            f"An annotation write may carry at most {limit} bytes (MAX_ANNOTATION_BYTES)."
        ) from None
    if not body.strip(b" \t\r\n"):
        raise InvalidRequest("The request body is empty; send the annotation as a JSON object.")
    check_depth(body, settings.max_json_depth)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"The request body must be a JSON object, not {type(value).__name__}.")
    return value


def _time(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    given: object = value
    if _INTEGER.fullmatch(value):
        given = int(value)
    elif _NUMBER.fullmatch(value):
        given = float(value)
    try:
        return normalize_time(given)
    except InvalidData as exc:
        raise InvalidRequest(f"{name}: {exc.detail}") from None


def _pane(value: str) -> int:
    if value.isascii() and value.isdigit() and int(value) <= MAX_PANE:
        return int(value)
    raise InvalidRequest(f"paneId must be an integer from 0 to {MAX_PANE}; got {value[:40]!r}.")

"""Annotations on the wire: what a client may send, how it is checked, and the stored form.

An annotation is anchored in time and price, never in bar indexes, so it stays where it was drawn
when the chart switches timeframe. Its anchors' times are normalized like point times (seconds,
milliseconds, ``YYYY-MM-DD``, ISO-8601, ``{year, month, day}`` all become UTC seconds).

Each kind fixes how many points it has and which coordinates they need. A marker also needs a
``seriesId`` and a ``style`` shaped like Lightweight Charts' ``SeriesMarker`` (``position``,
``shape``, ``color``, optional ``size``), so that the markers route can hand it to
``createSeriesMarkers`` as it is.

A record keeps its wire JSON encoded once (``body``): listings join stored bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

from ..charts.points import MAX_TIME, MIN_TIME, normalize_time
from ..charts.service import ID_PATTERN, MAX_PANE
from ..errors import InvalidData, InvalidRequest
from .errors import AnnotationTooLarge

Visibility = Literal["chart", "private"]
VISIBILITIES: Final = ("chart", "private")


@dataclass(frozen=True, slots=True)
class PointRule:
    """How many points a kind has and whether each needs a time and a price."""

    min_points: int
    max_points: int
    time: bool
    price: bool
    #: Extends without end in time (a horizontal line is visible in every range).
    unbounded: bool = False


MAX_CUSTOM_POINTS: Final = 1000
KINDS: Final[dict[str, PointRule]] = {
    "marker": PointRule(1, 1, time=True, price=False),
    "price_line": PointRule(1, 1, time=False, price=True, unbounded=True),
    "horizontal_line": PointRule(1, 1, time=False, price=True, unbounded=True),
    "vertical_line": PointRule(1, 1, time=True, price=False),
    "trend_line": PointRule(2, 2, time=True, price=True),
    "ray": PointRule(2, 2, time=True, price=True),
    "rectangle": PointRule(2, 2, time=True, price=True),
    "text": PointRule(1, 1, time=True, price=True),
    "fib_retracement": PointRule(2, 2, time=True, price=True),
    "custom": PointRule(1, MAX_CUSTOM_POINTS, time=True, price=False),
}
#: ``SeriesMarker.position`` and ``SeriesMarker.shape`` of Lightweight Charts v5.
MARKER_POSITIONS: Final = frozenset(
    {"aboveBar", "belowBar", "inBar", "atPriceTop", "atPriceBottom", "atPriceMiddle"}
)
MARKER_SHAPES: Final = frozenset({"circle", "square", "arrowUp", "arrowDown"})
MARKER_STYLE: Final = frozenset({"position", "shape", "color", "size"})
MAX_COLOR_LENGTH: Final = 64
MAX_MARKER_SIZE: Final = 100


def _accepting(*names: str) -> dict[str, str]:
    accepted = {}
    for name in names:
        head, *rest = name.split("_")
        accepted[name] = name
        accepted[head + "".join(part.title() for part in rest)] = name
    return accepted


_DRAFT_FIELDS: Final = _accepting(
    "annotation_id", "kind", "pane_id", "series_id", "points", "style", "text", "visibility"
)
#: Fields of an annotation as the server returns it, accepted back in a PATCH when unchanged.
_SERVER_FIELDS: Final = _accepting("owner", "created_at", "updated_at")
_PATCH_FIELDS: Final = {**_DRAFT_FIELDS, **_SERVER_FIELDS, **_accepting("version")}


@dataclass(frozen=True, slots=True)
class Draft:
    """A checked annotation, before the server gives it an owner, a version and times."""

    kind: str
    pane_id: int
    series_id: str | None
    points: list[dict[str, Any]]
    style: dict[str, Any]
    text: str | None
    visibility: Visibility
    annotation_id: str | None = None

    def span(self) -> tuple[int, int]:
        """The time range the anchors cover, ends included; unbounded ends are the extremes
        of valid times."""
        rule = KINDS[self.kind]
        if rule.unbounded:
            return MIN_TIME, MAX_TIME
        times = [p["time"] for p in self.points if "time" in p]
        if self.kind == "ray":
            first, second = times
            return (first, MAX_TIME) if second >= first else (MIN_TIME, first)
        return min(times), max(times)


@dataclass(frozen=True, slots=True)
class AnnotationRecord:
    """A stored annotation: the columns queries filter on, and its wire JSON."""

    chart_id: str
    annotation_id: str
    kind: str
    pane_id: int
    series_id: str | None
    visibility: Visibility
    owner: str
    version: int
    start_time: int
    end_time: int
    created_at: float
    updated_at: float
    body: bytes

    def visible_to(self, viewer: str) -> bool:
        return self.visibility == "chart" or self.owner == viewer

    def wire(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.body)
        return value


def build_record(
    chart_id: str,
    annotation_id: str,
    draft: Draft,
    *,
    owner: str,
    version: int,
    created_at: float,
    updated_at: float,
    max_bytes: int,
) -> AnnotationRecord:
    """The record of ``draft``; 413 when its JSON is larger than ``max_bytes``."""
    wire: dict[str, Any] = {"annotationId": annotation_id, "kind": draft.kind}
    wire["paneId"] = draft.pane_id
    if draft.series_id is not None:
        wire["seriesId"] = draft.series_id
    wire["points"] = draft.points
    wire["style"] = draft.style
    if draft.text is not None:
        wire["text"] = draft.text
    wire |= {
        "visibility": draft.visibility,
        "owner": owner,
        "version": version,
        "createdAt": _iso(created_at),
        "updatedAt": _iso(updated_at),
    }
    body = orjson.dumps(wire)
    if len(body) > max_bytes:
        raise AnnotationTooLarge(
            f"The annotation takes {len(body)} bytes; the limit is {max_bytes} "
            "(MAX_ANNOTATION_BYTES)."
        )
    start, end = draft.span()
    return AnnotationRecord(
        chart_id,
        annotation_id,
        draft.kind,
        draft.pane_id,
        draft.series_id,
        draft.visibility,
        owner,
        version,
        start,
        end,
        created_at,
        updated_at,
        body,
    )


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def record_from_body(chart_id: str, body: bytes) -> AnnotationRecord:
    """The record whose JSON is ``body`` (as :func:`build_record` encoded it, e.g. carried by an
    event); times of creation and change to the millisecond. Raises ``ValueError``,
    ``KeyError`` or ``TypeError`` for anything else."""
    wire = orjson.loads(body)
    draft = Draft(
        wire["kind"],
        int(wire["paneId"]),
        wire.get("seriesId"),
        wire["points"],
        wire["style"],
        wire.get("text"),
        wire["visibility"],
    )
    start, end = draft.span()
    return AnnotationRecord(
        chart_id,
        wire["annotationId"],
        draft.kind,
        draft.pane_id,
        draft.series_id,
        draft.visibility,
        wire["owner"],
        int(wire["version"]),
        start,
        end,
        datetime.fromisoformat(wire["createdAt"]).timestamp(),
        datetime.fromisoformat(wire["updatedAt"]).timestamp(),
        body,
    )


def parse_draft(body: dict[str, Any]) -> Draft:
    """The annotation a POST body describes; 422 naming the first thing wrong."""
    fields = _fields(body, _DRAFT_FIELDS, "an annotation")
    return _draft(fields)


@dataclass(frozen=True, slots=True)
class Patch:
    version: int
    changes: dict[str, Any]


def parse_patch(body: dict[str, Any]) -> Patch:
    """The fields a PATCH body changes and the ``version`` it was read at."""
    fields = _fields(body, _PATCH_FIELDS, "an annotation update")
    version = fields.pop("version", None)
    if version is None:
        raise InvalidRequest(
            "Field version is required: send the version of the annotation you read, so that "
            "a change made meanwhile is not overwritten."
        )
    if type(version) is not int or version < 1:
        raise InvalidRequest(f"version must be an integer >= 1; got {_short(version)}.")
    return Patch(version, fields)


def apply_patch(current: AnnotationRecord, changes: dict[str, Any]) -> Draft:
    """``current`` with ``changes`` applied, checked as a whole like a new annotation."""
    wire = current.wire()
    if "annotation_id" in changes and changes["annotation_id"] != current.annotation_id:
        raise InvalidRequest("annotationId cannot change; it names the annotation in the path.")
    if "kind" in changes and changes["kind"] != current.kind:
        raise InvalidRequest(
            f"kind cannot change (the annotation is a {current.kind}); delete it and create "
            "another."
        )
    if "owner" in changes and changes["owner"] != current.owner:
        raise InvalidRequest("owner cannot change; it is the caller who created the annotation.")
    merged: dict[str, Any] = {
        "kind": current.kind,
        "pane_id": current.pane_id,
        "series_id": current.series_id,
        "points": wire["points"],
        "style": wire["style"],
        "text": wire.get("text"),
        "visibility": current.visibility,
    }
    for name, value in changes.items():
        if name in merged:
            merged[name] = value
    if merged["series_id"] is None:
        del merged["series_id"]
    if merged["text"] is None:
        del merged["text"]
    return _draft(merged)


def _fields(body: dict[str, Any], accepted: dict[str, str], what: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in body.items():
        name = accepted.get(key)
        if name is None:
            expected = ", ".join(sorted(k for k in accepted if "_" not in k or k == k.lower()))
            raise InvalidRequest(f"Unknown field {key[:64]!r} in {what}; expected {expected}.")
        if name in fields:
            raise InvalidRequest(f"Field {name} is given twice (camelCase and snake_case).")
        fields[name] = value
    return fields


def _draft(fields: dict[str, Any]) -> Draft:
    kind = fields.get("kind")
    if kind is None:
        raise InvalidRequest(f"Field kind is required: one of {', '.join(KINDS)}.")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}; got {_short(kind)}.")
    rule = KINDS[kind]
    annotation_id = fields.get("annotation_id")
    if annotation_id is not None:
        annotation_id = check_identifier(annotation_id, "annotationId")
    pane_id = fields.get("pane_id", 0)
    if type(pane_id) is not int or not 0 <= pane_id <= MAX_PANE:
        raise InvalidRequest(
            f"paneId must be an integer from 0 to {MAX_PANE}; got {pane_id!r:.40}."
        )
    series_id = fields.get("series_id")
    if series_id is not None:
        series_id = check_identifier(series_id, "seriesId")
    elif kind == "marker":
        raise InvalidRequest("A marker needs the seriesId of the series it marks.")
    style = fields.get("style", {})
    if not isinstance(style, dict):
        raise InvalidRequest(f"style must be a JSON object; got {_short(style)}.")
    text = fields.get("text")
    if text is not None and not isinstance(text, str):
        raise InvalidRequest(f"text must be a string; got {_short(text)}.")
    if kind == "text" and not text:
        raise InvalidRequest("A text annotation needs a non-empty text.")
    visibility = fields.get("visibility", "chart")
    if visibility not in VISIBILITIES:
        raise InvalidRequest(f"visibility must be 'chart' or 'private'; got {_short(visibility)}.")
    price_needed = rule.price
    if kind == "marker":
        _check_marker_style(style)
        price_needed = style["position"].startswith("atPrice")
    points = _points(fields.get("points"), kind, rule, price_needed)
    return Draft(kind, pane_id, series_id, points, style, text, visibility, annotation_id)


def check_identifier(value: object, what: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value) or ".." in value:
        raise InvalidRequest(
            f"{what} {_short(value)} is invalid: use 1-128 letters, digits, '_', '-' or '.', "
            "without '..'."
        )
    return value


def _check_marker_style(style: dict[str, Any]) -> None:
    unknown = set(style) - MARKER_STYLE
    if unknown:
        raise InvalidRequest(
            f"A marker's style takes {', '.join(sorted(MARKER_STYLE))}; "
            f"{_short(sorted(unknown)[0])} is not one of them."
        )
    position = style.get("position")
    if position not in MARKER_POSITIONS:
        raise InvalidRequest(
            f"A marker's style.position must be one of {', '.join(sorted(MARKER_POSITIONS))}; "
            f"got {_short(position)}."
        )
    shape = style.get("shape")
    if shape not in MARKER_SHAPES:
        raise InvalidRequest(
            f"A marker's style.shape must be one of {', '.join(sorted(MARKER_SHAPES))}; "
            f"got {_short(shape)}."
        )
    color = style.get("color")
    if not isinstance(color, str) or not 0 < len(color) <= MAX_COLOR_LENGTH:
        raise InvalidRequest(
            f"A marker's style.color must be a CSS color string of 1-{MAX_COLOR_LENGTH} "
            f"characters; got {_short(color)}."
        )
    if "size" in style:
        size = style["size"]
        if (
            type(size) not in (int, float)
            or not math.isfinite(size)
            or not 0 < size <= MAX_MARKER_SIZE
        ):
            raise InvalidRequest(
                f"A marker's style.size must be a number above 0 and at most {MAX_MARKER_SIZE}; "
                f"got {_short(size)}."
            )


def _points(raw: object, kind: str, rule: PointRule, price_needed: bool) -> list[dict[str, Any]]:
    if raw is None:
        raise InvalidRequest(f"Field points is required: a {kind} has {_count(rule)}.")
    if not isinstance(raw, list) or not rule.min_points <= len(raw) <= rule.max_points:
        got = f"{len(raw)} points" if isinstance(raw, list) else _short(raw)
        raise InvalidRequest(f"A {kind} has {_count(rule)}; got {got}.")
    points = []
    for index, point in enumerate(raw):
        if not isinstance(point, dict):
            raise InvalidRequest(f"points[{index}] must be an object with time and price.")
        unknown = set(point) - {"time", "price"}
        if unknown:
            raise InvalidRequest(
                f"points[{index}] has {_short(sorted(unknown)[0])}; a point has only time and "
                "price."
            )
        normalized: dict[str, Any] = {}
        if "time" in point:
            try:
                normalized["time"] = normalize_time(point["time"])
            except InvalidData as exc:
                raise InvalidRequest(f"points[{index}]: {exc.detail}") from None
        elif rule.time:
            raise InvalidRequest(f"points[{index}] needs a time: a {kind} is anchored in time.")
        if "price" in point:
            price = point["price"]
            if type(price) not in (int, float) or not math.isfinite(price):
                raise InvalidRequest(
                    f"points[{index}].price must be a finite number; got {_short(price)}."
                )
            normalized["price"] = price
        elif price_needed:
            why = "its position is at a price" if kind == "marker" else f"a {kind} needs one"
            raise InvalidRequest(f"points[{index}] needs a price: {why}.")
        points.append(normalized)
    return points


def _count(rule: PointRule) -> str:
    if rule.min_points == rule.max_points:
        return f"{rule.min_points} point{'s' if rule.min_points > 1 else ''}"
    return f"{rule.min_points} to {rule.max_points} points"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

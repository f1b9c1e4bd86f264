"""What an annotation may be: kinds and their points, marker styles, times, sizes."""

from __future__ import annotations

from typing import Any

import pytest

from lightweight_charts_pro_backend.annotations.errors import AnnotationTooLarge
from lightweight_charts_pro_backend.annotations.schemas import (
    KINDS,
    apply_patch,
    build_record,
    parse_draft,
    parse_patch,
)
from lightweight_charts_pro_backend.charts.points import MAX_TIME, MIN_TIME
from lightweight_charts_pro_backend.errors import InvalidRequest

MARKER_STYLE = {"position": "aboveBar", "shape": "arrowDown", "color": "#f00"}


def marker(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "marker",
        "seriesId": "price",
        "points": [{"time": 1_700_000_000}],
        "style": dict(MARKER_STYLE),
        "text": "sell",
    }
    body.update(changes)
    return body


def test_a_marker_is_checked_and_keeps_its_style() -> None:
    draft = parse_draft(marker(paneId=1, visibility="private"))
    assert (draft.kind, draft.pane_id, draft.series_id) == ("marker", 1, "price")
    assert draft.style == MARKER_STYLE and draft.text == "sell"
    assert draft.visibility == "private"
    assert draft.span() == (1_700_000_000, 1_700_000_000)


def test_times_are_normalized_like_point_times() -> None:
    for given in (1_700_000_000_000, "2023-11-14T22:13:20Z", 1_700_000_000.9):
        draft = parse_draft(marker(points=[{"time": given}]))
        assert draft.points == [{"time": 1_700_000_000}]
    day = parse_draft(marker(points=[{"time": {"year": 2024, "month": 1, "day": 2}}]))
    assert day.points == [{"time": 1_704_153_600}]
    assert parse_draft(marker(points=[{"time": "2024-01-02"}])).points == day.points


@pytest.mark.parametrize(
    ("kind", "points"),
    [
        ("trend_line", [{"time": 10, "price": 1.0}, {"time": 5, "price": 2}]),
        ("rectangle", [{"time": 10, "price": 1.0}, {"time": 20, "price": 2}]),
        ("fib_retracement", [{"time": 10, "price": 1.0}, {"time": 20, "price": 2}]),
        ("ray", [{"time": 10, "price": 1.0}, {"time": 20, "price": 2}]),
        ("text", [{"time": 10, "price": 1.5}]),
        ("vertical_line", [{"time": 10}]),
        ("horizontal_line", [{"price": 1.5}]),
        ("price_line", [{"price": 1.5}]),
        ("custom", [{"time": t} for t in range(5)]),
    ],
)
def test_every_kind_takes_its_points(kind: str, points: list[dict[str, Any]]) -> None:
    draft = parse_draft({"kind": kind, "points": points, "text": "note"})
    assert draft.kind == kind and len(draft.points) == len(points)


def test_spans_cover_the_anchors_and_extend_lines_without_end() -> None:
    two = [{"time": 20, "price": 1.0}, {"time": 10, "price": 2}]
    assert parse_draft({"kind": "trend_line", "points": two}).span() == (10, 20)
    assert parse_draft({"kind": "ray", "points": two}).span() == (MIN_TIME, 20)
    assert parse_draft({"kind": "ray", "points": two[::-1]}).span() == (10, MAX_TIME)
    line = parse_draft({"kind": "horizontal_line", "points": [{"price": 3}]})
    assert line.span() == (MIN_TIME, MAX_TIME)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"points": []}, "kind is required"),
        ({"kind": "circle", "points": []}, "kind must be one of"),
        ({"kind": "trend_line", "points": [{"time": 1, "price": 1}]}, "has 2 points; got 1"),
        ({"kind": "trend_line"}, "points is required"),
        ({"kind": "trend_line", "points": [{"time": 1}, {"time": 2}]}, "needs a price"),
        ({"kind": "text", "points": [{"time": 1, "price": 1}]}, "non-empty text"),
        ({"kind": "vertical_line", "points": [{"price": 1}]}, "needs a time"),
        ({"kind": "vertical_line", "points": [{"time": "soon"}]}, "points[0]: time 'soon'"),
        ({"kind": "vertical_line", "points": [{"time": 1, "bar": 3}]}, "only time and price"),
        ({"kind": "horizontal_line", "points": [{"price": "1"}]}, "finite number"),
        ({"kind": "horizontal_line", "points": [{"price": 1}], "paneId": 101}, "paneId"),
        ({"kind": "horizontal_line", "points": [{"price": 1}], "style": []}, "style must be"),
        ({"kind": "horizontal_line", "points": [{"price": 1}], "visibility": "me"}, "visibility"),
        ({"kind": "horizontal_line", "points": [{"price": 1}], "owner": "x"}, "Unknown field"),
        ({"kind": "custom", "points": [{"time": 1}] * 1001}, "1 to 1000 points"),
        ({"kind": "custom", "points": [5]}, "points[0] must be an object"),
        ({"kind": "custom", "points": [{"time": 1}], "annotationId": "a/b"}, "annotationId"),
        ({"kind": "custom", "points": [{"time": 1}], "pane_id": 0, "paneId": 0}, "twice"),
    ],
)
def test_bad_annotations_are_refused_with_a_reason(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_draft(body)
    assert message in refused.value.detail


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seriesId": None}, "needs the seriesId"),
        ({"style": {**MARKER_STYLE, "position": "over"}}, "style.position must be one of"),
        ({"style": {**MARKER_STYLE, "shape": "star"}}, "style.shape must be one of"),
        ({"style": {**MARKER_STYLE, "color": ""}}, "style.color"),
        ({"style": {**MARKER_STYLE, "size": 0}}, "style.size"),
        ({"style": {**MARKER_STYLE, "postion": "x"}}, "'postion' is not one of them"),
        ({"style": {**MARKER_STYLE, "position": "atPriceTop"}}, "its position is at a price"),
        ({"points": [{"time": 1}, {"time": 2}]}, "A marker has 1 point; got 2"),
    ],
)
def test_markers_follow_lightweight_charts_series_marker(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_draft(marker(**changes))
    assert message in refused.value.detail


def test_a_marker_at_a_price_keeps_it() -> None:
    style = {**MARKER_STYLE, "position": "atPriceTop", "size": 2}
    draft = parse_draft(marker(style=style, points=[{"time": 5, "price": 101.5}]))
    assert draft.points == [{"time": 5, "price": 101.5}]


def test_records_carry_their_wire_json_and_refuse_to_grow_too_large() -> None:
    draft = parse_draft(marker())
    record = build_record(
        "c", "m1", draft, owner="alice", version=1, created_at=0.0, updated_at=1.5, max_bytes=4096
    )
    assert record.wire() == {
        "annotationId": "m1",
        "kind": "marker",
        "paneId": 0,
        "seriesId": "price",
        "points": [{"time": 1_700_000_000}],
        "style": MARKER_STYLE,
        "text": "sell",
        "visibility": "chart",
        "owner": "alice",
        "version": 1,
        "createdAt": "1970-01-01T00:00:00.000+00:00",
        "updatedAt": "1970-01-01T00:00:01.500+00:00",
    }
    with pytest.raises(AnnotationTooLarge, match="MAX_ANNOTATION_BYTES"):
        build_record(
            "c", "m1", draft, owner="a", version=1, created_at=0, updated_at=0, max_bytes=100
        )


def test_a_patch_needs_the_version_and_is_checked_as_a_whole() -> None:
    record = build_record(
        "c", "m1", parse_draft(marker()), owner="a", version=3, created_at=0, updated_at=0,
        max_bytes=4096,
    )  # fmt: skip
    patch = parse_patch({"version": 3, "text": "buy", "owner": "a", "updatedAt": "x"})
    draft = apply_patch(record, patch.changes)
    assert (patch.version, draft.text, draft.style) == (3, "buy", MARKER_STYLE)
    with pytest.raises(InvalidRequest, match="version is required"):
        parse_patch({"text": "buy"})
    with pytest.raises(InvalidRequest, match="integer >= 1"):
        parse_patch({"version": "3"})
    with pytest.raises(InvalidRequest, match="kind cannot change"):
        apply_patch(record, {"kind": "text"})
    with pytest.raises(InvalidRequest, match="owner cannot change"):
        apply_patch(record, {"owner": "b"})
    with pytest.raises(InvalidRequest, match=r"style\.color"):
        apply_patch(record, {"style": {"position": "inBar", "shape": "circle"}})
    assert apply_patch(record, {"text": None}).text is None


def test_every_kind_is_documented() -> None:
    assert set(KINDS) == {
        "marker", "price_line", "horizontal_line", "vertical_line", "trend_line", "ray",
        "rectangle", "text", "fib_retracement", "custom",
    }  # fmt: skip

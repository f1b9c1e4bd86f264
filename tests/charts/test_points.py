from __future__ import annotations

from typing import Any

import orjson
import pytest

from lightweight_charts_pro_backend.charts.points import (
    normalize_series_type,
    normalize_time,
    prepare_points,
)
from lightweight_charts_pro_backend.errors import DuplicateTime, InvalidData, InvalidRequest


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1_700_000_000, 1_700_000_000),
        (1_700_000_000_123, 1_700_000_000),
        (1_700_000_000.9, 1_700_000_000),
        ("2024-01-02", 1_704_153_600),
        ("2024-01-02T03:04:05Z", 1_704_164_645),
        ("2024-01-02T04:04:05+01:00", 1_704_164_645),
        ("2024-01-02T03:04:05", 1_704_164_645),
        ({"year": 2024, "month": 1, "day": 2}, 1_704_153_600),
        (0, 0),
        (-86_400, -86_400),
    ],
)
def test_time_forms_become_utc_seconds(value: object, seconds: int) -> None:
    assert normalize_time(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2024-13-01",
        {"year": 2024, "month": 2, "day": 30},
        {"year": "2024", "month": 1, "day": 1},
        None,
        True,
        [2024, 1, 1],
        float("nan"),
        10**18,
        -(10**12),
    ],
)
def test_bad_times_are_refused(value: object) -> None:
    with pytest.raises(InvalidData):
        normalize_time(value)


def decoded(points: list[dict[str, Any]], series_type: str) -> list[dict[str, Any]]:
    return orjson.loads(prepare_points(points, series_type).json_array())  # type: ignore[no-any-return]


def test_points_are_sorted_and_keep_extra_fields() -> None:
    points = [
        {"time": "2024-01-03", "value": 2, "color": "#f00"},
        {"time": 1_704_153_600_000, "value": 1, "customValues": {"a": [1, {"b": 2}]}},
        {"time": 1_704_067_200},
    ]
    assert decoded(points, "line") == [
        {"time": 1_704_067_200},
        {"time": 1_704_153_600, "value": 1, "customValues": {"a": [1, {"b": 2}]}},
        {"time": 1_704_240_000, "value": 2, "color": "#f00"},
    ]


def test_nested_objects_that_look_like_point_boundaries_are_encoded_correctly() -> None:
    points = [
        {"time": 1, "customValues": {"x": [{"a": 1}, {"b": 2}]}},
        {"time": 2, "customValues": {"y": "},{"}},
    ]
    encoded = prepare_points(points, "custom")
    assert orjson.loads(encoded.json_array()) == points
    assert len(encoded.offsets) == 3


def test_candles_with_gaps_are_valid() -> None:
    points = [
        {"time": 1, "open": 1, "high": 2, "low": 0.5, "close": 1.5, "wickColor": "#000"},
        {"time": 2},
        {"time": 3, "open": 1.5, "high": 1.5, "low": 1.5, "close": 1.5},
    ]
    assert decoded(points, "candlestick") == points


def test_a_gap_is_a_point_without_its_types_value_fields() -> None:
    lines = [{"time": 1, "value": 1}, {"time": 2, "color": "#f00"}, {"time": 3, "value": 2}]
    assert decoded(lines, "area") == lines
    candles = [
        {"time": 1, "color": "#f00"},
        {"time": 2, "open": 1, "high": 1, "low": 1, "close": 1},
    ]
    assert decoded(candles, "bar") == candles
    custom = [{"time": 1, "value": 1}, {"time": 2, "open": 1}]
    assert decoded(custom, "custom") == custom


@pytest.mark.parametrize(
    ("series_type", "points", "message"),
    [
        ("line", [{"time": 1, "value": "1.5"}], "data[0].value must be a number"),
        ("line", [{"time": 1, "value": True}], "data[0].value must be a number"),
        ("line", [{"time": 1, "value": None}], "data[0].value must be a number"),
        ("line", [{"time": 1, "value": float("nan")}], "must be finite"),
        ("line", [{"time": 1, "value": 1, "extra": float("inf")}], "must be finite"),
        ("line", [{"value": 1}], "data[0] has no time"),
        ("line", [{"time": 1, "value": 1}, 5], "data[1] is not an object"),
        (
            "candlestick",
            [{"time": 1, "open": 1, "high": 0.5, "low": 0.4, "close": 1}],
            "consistent",
        ),
        ("bar", [{"time": 1, "open": 1, "high": 2, "low": 1.5, "close": 1.8}], "consistent"),
        ("candlestick", [{"time": 1, "open": 1, "high": 2, "low": 0.5}], "missing close"),
        (
            "bar",
            [{"time": 1, "open": 1, "high": "2", "low": 0.5, "close": 1}],
            "high must be a number",
        ),
        ("line", [{"time": "2024-02-30", "value": 1}], "data[0]: time"),
        (
            "candlestick",
            [
                {"time": 1, "open": 1, "high": 2, "low": 0.5, "close": 1},
                {"time": 2},
                {"time": 3, "value": 1.5},
                {"time": 4, "value": 2},
            ],
            "data[2] has value but no open, high, low or close",
        ),
        ("bar", [{"time": 1, "value": 1.5}], "a bar point needs all four"),
        (
            "line",
            [{"time": 1, "value": 1}, {"time": 2}, {"time": 3, "open": 1, "close": 2}],
            "data[2] has open, close but no value",
        ),
        ("histogram", [{"time": 1, "high": 2}], "a histogram point needs value"),
    ],
)
def test_invalid_points_are_refused_with_a_sentence(
    series_type: str, points: list[Any], message: str
) -> None:
    with pytest.raises(InvalidData) as caught:
        prepare_points(points, series_type)
    assert message in caught.value.detail


def test_duplicate_times_are_refused_naming_the_time() -> None:
    with pytest.raises(DuplicateTime) as caught:
        prepare_points([{"time": 5, "value": 1}, {"time": 3, "value": 1}, {"time": 5}], "line")
    assert "time 5 appears more than once" in caught.value.detail
    with pytest.raises(DuplicateTime):
        prepare_points([{"time": "2024-01-01", "value": 1}, {"time": 1_704_067_200}], "line")


def test_series_types() -> None:
    assert normalize_series_type("Candlestick") == "candlestick"
    with pytest.raises(InvalidRequest):
        normalize_series_type("candelstick")

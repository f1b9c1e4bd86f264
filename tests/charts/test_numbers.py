"""Numeric fields read from the JSON bytes equal those of the parsed objects."""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightweight_charts_pro_backend.charts.numbers import FieldReader, fields_of
from lightweight_charts_pro_backend.charts.points import encode_points
from lightweight_charts_pro_backend.charts.repository import encoded_from_rows
from lightweight_charts_pro_backend.charts.store import SeriesStore
from lightweight_charts_pro_backend.charts.timeframes import Columns

NAMES = ("open", "high", "low", "close", "volume")

numbers = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.1, -0.0, 1e-7, 123456.789, 1e22, 5e-324, 2.5, 100.0]),
)
others = st.one_of(
    st.none(),
    st.booleans(),
    st.text(alphabet='ab,:}"{ ', max_size=6),
    st.lists(st.integers(0, 9), max_size=3),
)


@st.composite
def points(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for time in range(draw(st.integers(1, 30))):
        point: dict[str, Any] = {"time": time}
        for name in draw(st.permutations(["open", "high", "low", "close", "volume", "color"])):
            kind = draw(st.integers(0, 3))
            if kind == 0:
                continue
            point[name] = draw(numbers) if kind < 3 else draw(others)
        out.append(point)
    return out


@settings(max_examples=150, deadline=None)
@given(points())
def test_fields_from_bytes_equal_fields_from_objects(data: list[dict[str, Any]]) -> None:
    encoded_json = orjson.dumps(data)
    found = fields_of(encoded_json, len(data), NAMES)
    flat = b"\\" not in encoded_json and encoded_json.count(b"{") == len(data)
    assert (found is not None) == flat
    times = np.arange(len(data), dtype=np.int64)
    expected = Columns.parse("ohlc", times, data)
    encoded = encode_points(data, array("q", range(len(data))))
    columns = Columns.of_store("ohlc", SeriesStore(encoded), page=7)
    assert np.array_equal(columns.values, expected.values, equal_nan=True)
    assert np.array_equal(columns.extra, expected.extra)
    assert np.array_equal(columns.integral, expected.integral)
    if found is not None:
        assert np.array_equal(found.values, expected.values, equal_nan=True)


def test_prices_with_up_to_nine_decimals_are_exact() -> None:
    rng = np.random.default_rng(5)
    prices = rng.uniform(-1e6, 1e6, 20_000).tolist()
    digits = rng.integers(0, 9, 20_000).tolist()
    data = [
        {"time": i, "value": round(p, d)}
        for i, (p, d) in enumerate(zip(prices, digits, strict=True))
    ]
    found = fields_of(orjson.dumps(data), len(data), ("value",))
    assert found is not None
    assert np.array_equal(found.values[0], [p["value"] for p in data])


@st.composite
def series(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Points that mostly share a few layouts (keys in one order), as series do."""
    keys = ["open", "high", "low", "close", "volume", "color"]
    layouts = draw(
        st.lists(st.permutations(keys).map(lambda k: k[: len(k) // 2 + 1]), min_size=1, max_size=3)
    )
    out = []
    for time in range(draw(st.integers(1, 40))):
        layout = layouts[draw(st.integers(0, len(layouts) - 1))]
        point: dict[str, Any] = {"time": time}
        for name in layout:
            point[name] = draw(numbers) if draw(st.integers(0, 5)) else draw(others)
        out.append(point)
    return out


def assert_same_columns(data: list[dict[str, Any]], page: int) -> None:
    expected = Columns.parse("ohlc", np.arange(len(data), dtype=np.int64), data)
    encoded = encode_points(data, array("q", range(len(data))))
    columns = Columns.of_store("ohlc", SeriesStore(encoded), page=page)
    assert np.array_equal(columns.values, expected.values, equal_nan=True)
    assert np.array_equal(np.signbit(columns.values), np.signbit(expected.values))
    assert np.array_equal(columns.extra, expected.extra)
    assert np.array_equal(columns.integral, expected.integral)


@settings(max_examples=150, deadline=None)
@given(series(), st.integers(1, 50))
def test_series_of_a_few_layouts_read_as_parsed(data: list[dict[str, Any]], page: int) -> None:
    assert_same_columns(data, page)


def test_one_reader_reads_pages_of_any_size_in_turn() -> None:
    pages = [
        [{"time": t, "open": 1234.5 + t, "close": -t, "volume": 10**9 + t} for t in range(50)],
        [{"time": 1, "close": 2.25}],
        [{"time": t, "close": 7, "note": "a:b"} for t in range(3)],
        [{"time": t, "high": 0.1 * t} for t in range(20)],
    ]
    reader = FieldReader(NAMES)
    for points in pages:
        text = orjson.dumps(points)
        reader.buffer(len(text))[:] = text
        found = reader.read(len(points))
        expected = fields_of(text, len(points), NAMES)
        assert found is not None and expected is not None
        assert np.array_equal(found.values, expected.values, equal_nan=True)
        assert np.array_equal(found.present, expected.present)
        assert np.array_equal(found.keys, expected.keys)
        assert np.array_equal(found.integral, expected.integral)
        parsed = Columns.parse("ohlc", np.arange(len(points), dtype=np.int64), points)
        assert np.array_equal(found.values, parsed.values, equal_nan=True)


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "7",
        "-0.0",
        "1.5",
        "-1.5",
        "100.0",
        "99.99",
        "12345678",
        "-1234567",
        "1234567.5",
        "123456789",
        "-12345678",
        "0.000001",
        "1234.5678",
        "1e-07",
        "1.5e+300",
        "-2.5E-5",
        "123456789012345678",
        "18446744073709551615",
        "0.30000000000000004",
        "null",
        "true",
        '"12"',
        '":"',
        '""',
        '"-"',
        "[1]",
    ],
)
def test_each_form_of_number_reads_as_float_does(text: str) -> None:
    body = f'[{{"time":1,"close":{text}}},{{"time":2,"open":{text},"close":{text}}}]'.encode()
    data = orjson.loads(body)
    expected = Columns.parse("ohlc", np.arange(2, dtype=np.int64), data)
    found = fields_of(body, 2, NAMES)
    assert found is not None
    assert np.array_equal(found.values, expected.values, equal_nan=True)
    assert np.array_equal(np.signbit(found.values), np.signbit(expected.values))
    assert np.array_equal(found.integral, expected.integral)
    assert_same_columns(data, 1)


def test_gaps_other_fields_and_odd_points_beside_regular_ones() -> None:
    regular = [
        {"time": t, "open": t + 0.5, "high": t + 1, "low": t, "close": t + 0.25} for t in range(30)
    ]
    odd: list[dict[str, Any]] = [
        {"time": 100},  # a gap (whitespace point)
        {"time": 101, "close": 2, "open": 1, "low": 1, "high": 2},  # keys in another order
        {"time": 102, "open": 1, "high": 1, "low": 1, "close": 1, "color": "#fff"},
        {"time": 103, "open": 1, "high": 2, "low": 1, "close": 2, "note": "09:30"},
        {"time": 104, "open": 1, "high": 2, "low": 1, "close": 2, "empty": {}},
        {"time": 105, "open": 1, "high": 2, "low": 1, "close": "2"},
    ]
    for at in range(0, 31, 6):
        data = [*regular[:at], *odd, *regular[at:]]
        for i, point in enumerate(data):
            point["time"] = i
        assert_same_columns(data, 7)
        assert_same_columns(data, 100)


def test_points_holding_objects_are_parsed_as_objects() -> None:
    data = [
        {"time": 0, "open": 1, "high": 2, "low": 1, "close": 2},
        {"time": 1, "open": 1, "high": 2, "low": 1, "close": 2, "meta": {"a": 1}},
    ]
    assert fields_of(orjson.dumps(data), 2, NAMES) is None
    assert_same_columns(data, 2)


def test_points_reformatted_with_spaces_are_parsed_as_objects() -> None:
    """As a database that normalizes JSON (MySQL's JSON type) returns them."""
    data = [{"time": t, "open": t + 0.5, "close": t, "volume": 3} for t in range(5)]
    texts = [orjson.dumps(p).decode().replace(":", ": ").replace(",", ", ") for p in data]
    store = SeriesStore(encoded_from_rows(range(5), texts))
    assert fields_of(store.all_json(), 5, NAMES) is None
    expected = Columns.parse("ohlc", np.arange(5, dtype=np.int64), data)
    columns = Columns.of_store("ohlc", store, page=2)
    assert np.array_equal(columns.values, expected.values, equal_nan=True)
    assert np.array_equal(columns.integral, expected.integral)

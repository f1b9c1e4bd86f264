"""Numeric fields read from the JSON bytes equal those of the parsed objects."""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from lightweight_charts_pro_backend.charts.numbers import fields_of
from lightweight_charts_pro_backend.charts.points import encode_points
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

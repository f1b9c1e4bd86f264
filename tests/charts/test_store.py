"""The series store against the obvious model: a sorted list of point dicts."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from lightweight_charts_pro_backend.charts.points import prepare_points
from lightweight_charts_pro_backend.charts.store import SeriesStore

times = st.integers(min_value=-50, max_value=50)
point = st.builds(
    lambda t, v, extra: {"time": t, "value": v, **extra},
    times,
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.dictionaries(st.sampled_from(["color", "tag"]), st.text(max_size=3), max_size=1),
)
batch = st.lists(point, max_size=12, unique_by=lambda p: p["time"])
write = st.tuples(st.sampled_from(["replace", "upsert"]), batch)
query = st.tuples(st.sampled_from(["before", "after", "newest"]), times, st.integers(1, 15))


def model_upsert(model: list[dict[str, Any]], points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_time = {p["time"]: p for p in model}
    by_time.update({p["time"]: p for p in points})
    return [by_time[t] for t in sorted(by_time)]


def model_chunk(model: list[dict[str, Any]], kind: str, time: int, count: int) -> tuple[int, int]:
    if kind == "before":
        end = sum(1 for p in model if p["time"] < time)
        return max(0, end - count), end
    if kind == "after":
        start = sum(1 for p in model if p["time"] <= time)
        return start, min(len(model), start + count)
    return max(0, len(model) - count), len(model)


@settings(max_examples=300, deadline=None)
@given(st.lists(write, max_size=8), st.lists(query, min_size=1, max_size=5))
def test_any_writes_then_any_chunk_match_a_sorted_list(
    writes: list[tuple[str, list[dict[str, Any]]]], queries: list[tuple[str, int, int]]
) -> None:
    store = SeriesStore()
    model: list[dict[str, Any]] = []
    for kind, points in writes:
        encoded = prepare_points([dict(p) for p in points], "line")
        if kind == "replace":
            store = SeriesStore(encoded)
            model = model_upsert([], points)
        else:
            store.upsert(encoded)
            model = model_upsert(model, points)

    assert len(store) == len(model)
    assert orjson.loads(store.all_json()) == model
    for start, end in ((0, len(model)), (len(model) // 2, len(model)), (1, 1)):
        text = store.slice_json(start, end)
        into = bytearray(store.json_size(start, end))
        starts = store.copy_json(start, end, memoryview(into))
        assert into == text
        sizes = [len(store.point_json(i)) + 1 for i in range(start, end)]
        assert starts.tolist() == [1 + sum(sizes[:i]) for i in range(len(sizes))]
    for kind, time, count in queries:
        chunk = (
            store.chunk_before(time, count)
            if kind == "before"
            else store.chunk_after(time, count)
            if kind == "after"
            else store.newest(count)
        )
        start, end = model_chunk(model, kind, time, count)
        expected = model[start:end]
        assert orjson.loads(chunk.data) == expected
        assert (chunk.start, chunk.end, chunk.total) == (start, end, len(model))
        assert chunk.start_time == (expected[0]["time"] if expected else None)
        assert chunk.end_time == (expected[-1]["time"] if expected else None)
        assert chunk.has_more_before == (start > 0)
        assert chunk.has_more_after == (end < len(model))


def test_appending_the_next_bar_and_replacing_the_last_bar() -> None:
    store = SeriesStore(prepare_points([{"time": t, "value": t} for t in range(5)], "line"))
    store.upsert(prepare_points([{"time": 5, "value": 50}], "line"))
    store.upsert(prepare_points([{"time": 5, "value": 51}], "line"))
    store.upsert(prepare_points([{"time": 2, "value": 20}], "line"))
    assert orjson.loads(store.all_json())[-4:] == [
        {"time": 2, "value": 20},
        {"time": 3, "value": 3},
        {"time": 4, "value": 4},
        {"time": 5, "value": 51},
    ]
    assert len(store) == 6


def test_series_spanning_millennia_switch_to_wide_times() -> None:
    early, late = -62_135_596_800, 99_999_999_999
    store = SeriesStore(prepare_points([{"time": 0, "value": 0}, {"time": 10, "value": 1}], "line"))
    store.upsert(prepare_points([{"time": late, "value": 2}], "line"))
    store.upsert(prepare_points([{"time": early, "value": -1}], "line"))
    assert store.times() == [early, 0, 10, late]
    assert orjson.loads(store.chunk_before(late, 2).data) == [
        {"time": 0, "value": 0},
        {"time": 10, "value": 1},
    ]
    assert store.chunk_after(10, 5).start_time == late
    assert (store.first_time, store.last_time) == (early, late)

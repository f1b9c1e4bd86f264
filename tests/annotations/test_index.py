"""The in-memory index of a chart's annotations: any changes, then any listing, equal the obvious
filter of a list."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lightweight_charts_pro_backend.annotations.index import AnnotationIndex
from lightweight_charts_pro_backend.annotations.repository import AnnotationQuery
from lightweight_charts_pro_backend.annotations.schemas import AnnotationRecord
from lightweight_charts_pro_backend.charts.points import MAX_TIME, MIN_TIME

TIMES = st.integers(-1_000, 100_000)
SPANS = st.sampled_from(["point", "short", "long", "right", "left", "all"])


def record(
    annotation_id: str, start: int, kind: str, viewer: str, private: bool
) -> AnnotationRecord:
    end = {
        "point": start,
        "short": start + 7,
        "long": start + 40_000,
        "right": MAX_TIME,
        "left": start,
        "all": MAX_TIME,
    }[kind]
    if kind in ("left", "all"):
        start = MIN_TIME
    return AnnotationRecord(
        "c", annotation_id, "marker" if kind == "point" else "trend_line", 0,
        "s" if kind == "point" else None, "private" if private else "chart", viewer, 1,
        start, end, 0.0, 0.0, f'{{"annotationId":"{annotation_id}"}}'.encode(),
    )  # fmt: skip


changes = st.lists(
    st.tuples(
        st.sampled_from([f"a{i}" for i in range(30)]),
        TIMES,
        SPANS,
        st.sampled_from(["alice", "bob"]),
        st.booleans(),
        st.booleans(),  # remove instead
    ),
    max_size=80,
)
queries = st.lists(
    st.tuples(
        st.none() | TIMES,
        st.none() | TIMES,
        st.sampled_from(["alice", "bob"]),
        st.none() | st.just("marker"),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(changes, queries, st.booleans())
def test_a_listing_equals_the_filtered_list(
    steps: list[tuple[str, int, str, str, bool, bool]],
    asked: list[tuple[int | None, int | None, str, str | None]],
    rebuild: bool,
) -> None:
    index = AnnotationIndex()
    reference: dict[str, AnnotationRecord] = {}
    for annotation_id, start, kind, owner, private, remove in steps:
        if remove:
            assert (index.remove(annotation_id) is None) == (annotation_id not in reference)
            reference.pop(annotation_id, None)
        else:
            reference[annotation_id] = record(annotation_id, start, kind, owner, private)
            index.put(reference[annotation_id])
    if rebuild:
        index = AnnotationIndex.of(list(reference.values()), 0)
    assert len(index) == len(reference)
    for start, end, viewer, kind in asked:
        query = AnnotationQuery("c", viewer, start=start, end=end, kind=kind)
        expected = sorted(
            (
                r
                for r in reference.values()
                if (start is None or r.end_time >= start)
                and (end is None or r.start_time < end)
                and query.matches(r)
            ),
            key=lambda r: (r.start_time, r.annotation_id),
        )
        assert index.query(query) == [r.body for r in expected]


def test_memory_follows_its_entries() -> None:
    index = AnnotationIndex()
    index.put(record("a", 5, "short", "alice", False))
    one = index.nbytes
    index.put(record("b", 5, "short", "alice", False))
    index.put(record("a", 9, "long", "alice", False))
    assert index.nbytes == 2 * one
    index.remove("a")
    index.remove("b")
    assert index.nbytes == 0

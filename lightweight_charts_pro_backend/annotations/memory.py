"""Annotations in memory (``ENABLE_PERSISTENCE=false``), with the repository's interface.

Per chart, the records by id, and for listings the records ordered by start time with their spans
as NumPy columns, so that a visible range of 10,000 annotations is one vectorized comparison
rather than a Python loop. The columns are rebuilt on the first listing after a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np

from .errors import AnnotationExists, TooManyAnnotations
from .repository import AnnotationQuery
from .schemas import AnnotationRecord

_ORDER = attrgetter("start_time", "annotation_id")


@dataclass(slots=True, eq=False)
class _ChartAnnotations:
    sequence: int = 0
    records: dict[str, AnnotationRecord] = field(default_factory=dict)
    ordered: list[AnnotationRecord] | None = None
    starts: np.ndarray[tuple[int], np.dtype[np.int64]] | None = None
    ends: np.ndarray[tuple[int], np.dtype[np.int64]] | None = None

    def changed(self) -> int:
        self.ordered = self.starts = self.ends = None
        self.sequence += 1
        return self.sequence

    def columns(
        self,
    ) -> tuple[
        list[AnnotationRecord],
        np.ndarray[tuple[int], np.dtype[np.int64]],
        np.ndarray[tuple[int], np.dtype[np.int64]],
    ]:
        if self.ordered is None or self.starts is None or self.ends is None:
            ordered = sorted(self.records.values(), key=_ORDER)
            count = len(ordered)
            self.starts = np.fromiter((r.start_time for r in ordered), np.int64, count)
            self.ends = np.fromiter((r.end_time for r in ordered), np.int64, count)
            self.ordered = ordered
        return self.ordered, self.starts, self.ends


class MemoryAnnotations:
    """The annotations of every chart of this process; see :class:`AnnotationStore`."""

    def __init__(self) -> None:
        self._charts: dict[str, _ChartAnnotations] = {}

    async def insert(self, record: AnnotationRecord, limit: int) -> int:
        chart = self._charts.setdefault(record.chart_id, _ChartAnnotations())
        if len(chart.records) >= limit:
            raise TooManyAnnotations(
                f"Chart '{record.chart_id}' holds {len(chart.records)} annotations, the most it "
                f"may (MAX_ANNOTATIONS_PER_CHART={limit}); delete some first."
            )
        if record.annotation_id in chart.records:
            raise AnnotationExists(
                f"Chart '{record.chart_id}' already has an annotation '{record.annotation_id}'; "
                "PATCH it, or leave annotationId out."
            )
        chart.records[record.annotation_id] = record
        return chart.changed()

    async def get(self, chart_id: str, annotation_id: str) -> AnnotationRecord | None:
        chart = self._charts.get(chart_id)
        return None if chart is None else chart.records.get(annotation_id)

    async def replace(self, record: AnnotationRecord, expected_version: int) -> int | None:
        chart = self._charts.get(record.chart_id)
        current = None if chart is None else chart.records.get(record.annotation_id)
        if chart is None or current is None or current.version != expected_version:
            return None
        chart.records[record.annotation_id] = record
        return chart.changed()

    async def delete(self, chart_id: str, annotation_id: str, expected_version: int) -> int | None:
        chart = self._charts.get(chart_id)
        current = None if chart is None else chart.records.get(annotation_id)
        if chart is None or current is None or current.version != expected_version:
            return None
        del chart.records[annotation_id]
        return chart.changed()

    async def query(self, query: AnnotationQuery) -> list[bytes]:
        chart = self._charts.get(query.chart_id)
        if chart is None or not chart.records:
            return []
        ordered, starts, ends = chart.columns()
        if query.start is None and query.end is None:
            candidates = ordered
        else:
            mask = np.ones(len(ordered), dtype=bool)
            if query.start is not None:
                mask &= ends >= query.start
            if query.end is not None:
                mask &= starts < query.end
            candidates = [ordered[i] for i in np.flatnonzero(mask).tolist()]
        return [record.body for record in candidates if query.matches(record)]

    def forget(self, chart_id: str) -> None:
        """Drop the chart's annotations (the chart was deleted)."""
        self._charts.pop(chart_id, None)

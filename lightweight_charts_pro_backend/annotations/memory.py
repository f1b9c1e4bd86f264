"""Annotations in memory (``ENABLE_PERSISTENCE=false``), with the repository's interface.

Each chart's annotations are an :class:`AnnotationIndex`, the structure that also caches them
per worker when they are in the database.
"""

from __future__ import annotations

from .errors import AnnotationExists, TooManyAnnotations
from .index import AnnotationIndex
from .repository import AnnotationQuery
from .schemas import AnnotationRecord


class MemoryAnnotations:
    """The annotations of every chart of this process; see :class:`AnnotationStore`."""

    def __init__(self) -> None:
        self._charts: dict[str, AnnotationIndex] = {}

    async def insert(self, record: AnnotationRecord, limit: int) -> int:
        chart = self._charts.setdefault(record.chart_id, AnnotationIndex())
        if len(chart) >= limit:
            raise TooManyAnnotations(
                f"Chart '{record.chart_id}' holds {len(chart)} annotations, the most it "
                f"may (MAX_ANNOTATIONS_PER_CHART={limit}); delete some first."
            )
        if chart.get(record.annotation_id) is not None:
            raise AnnotationExists(
                f"Chart '{record.chart_id}' already has an annotation '{record.annotation_id}'; "
                "PATCH it, or leave annotationId out."
            )
        chart.put(record)
        chart.sequence += 1
        return chart.sequence

    async def get(self, chart_id: str, annotation_id: str) -> AnnotationRecord | None:
        chart = self._charts.get(chart_id)
        return None if chart is None else chart.get(annotation_id)

    async def replace(self, record: AnnotationRecord, expected_version: int) -> int | None:
        chart = self._charts.get(record.chart_id)
        current = None if chart is None else chart.get(record.annotation_id)
        if chart is None or current is None or current.version != expected_version:
            return None
        chart.put(record)
        chart.sequence += 1
        return chart.sequence

    async def delete(self, chart_id: str, annotation_id: str, expected_version: int) -> int | None:
        chart = self._charts.get(chart_id)
        current = None if chart is None else chart.get(annotation_id)
        if chart is None or current is None or current.version != expected_version:
            return None
        chart.remove(annotation_id)
        chart.sequence += 1
        return chart.sequence

    async def query(self, query: AnnotationQuery) -> list[bytes]:
        chart = self._charts.get(query.chart_id)
        return [] if chart is None else chart.query(query)

    async def sequence(self, chart_id: str) -> int:
        chart = self._charts.get(chart_id)
        return 0 if chart is None else chart.sequence

    def forget(self, chart_id: str) -> None:
        """Drop the chart's annotations (the chart was deleted)."""
        self._charts.pop(chart_id, None)

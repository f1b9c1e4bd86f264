"""The annotations of one chart in memory, found by id and by the time span of their anchors.

A listing asks which annotations overlap ``[start, end)``: those whose span ends at or after
``start`` and begins before ``end``. Annotations are grouped by the length of their span in
powers of two (a marker spans 0 s, a trend line a few bars, a horizontal line every valid time),
and each group is kept sorted by start time. An annotation of a group whose spans are shorter
than ``2**c`` overlaps the range only if it starts in ``(start - 2**c, end)``, so two binary
searches per group find every candidate, and the only candidates that miss are those of each
group starting within one group length before ``start``. A listing therefore costs a few binary
searches per group present (at most 65) plus the annotations it returns; it joins the JSON each
annotation was stored with, encoded once. A change moves one entry of one group.
"""

from __future__ import annotations

from bisect import bisect_left
from operator import attrgetter
from typing import Final

from .repository import AnnotationQuery
from .schemas import AnnotationRecord

_ORDER: Final = attrgetter("start_time", "annotation_id")
#: Memory an entry takes besides its JSON: the record, its key tuple and their list slots.
ENTRY_OVERHEAD: Final = 400


class _Group:
    """Annotations whose spans are shorter than ``reach + 1``, by (start time, id)."""

    __slots__ = ("keys", "reach", "records")

    def __init__(self, reach: int) -> None:
        self.reach = reach
        self.keys: list[tuple[int, str]] = []
        self.records: list[AnnotationRecord] = []


class AnnotationIndex:
    """One chart's annotations and the number of the last change they include (``sequence``).

    Example::

        index = AnnotationIndex()
        index.put(record)
        bodies = index.query(AnnotationQuery("demo", "alice", start=1_700_000_000))
    """

    __slots__ = ("_groups", "_records", "nbytes", "sequence")

    def __init__(self, sequence: int = 0) -> None:
        self.sequence = sequence
        self._records: dict[str, AnnotationRecord] = {}
        self._groups: dict[int, _Group] = {}
        #: An estimate of the memory held, JSON included.
        self.nbytes = 0

    @classmethod
    def of(cls, records: list[AnnotationRecord], sequence: int) -> AnnotationIndex:
        """An index of ``records`` at ``sequence``, sorted once rather than inserted one by one."""
        index = cls(sequence)
        for record in sorted(records, key=_ORDER):
            index._records[record.annotation_id] = record
            group = index._group(record)
            group.keys.append((record.start_time, record.annotation_id))
            group.records.append(record)
            index.nbytes += len(record.body) + ENTRY_OVERHEAD
        return index

    def __len__(self) -> int:
        return len(self._records)

    def get(self, annotation_id: str) -> AnnotationRecord | None:
        return self._records.get(annotation_id)

    def put(self, record: AnnotationRecord) -> None:
        """Add ``record``, or replace the annotation of its id."""
        self.remove(record.annotation_id)
        self._records[record.annotation_id] = record
        group = self._group(record)
        key = (record.start_time, record.annotation_id)
        at = bisect_left(group.keys, key)
        group.keys.insert(at, key)
        group.records.insert(at, record)
        self.nbytes += len(record.body) + ENTRY_OVERHEAD

    def remove(self, annotation_id: str) -> AnnotationRecord | None:
        """Take the annotation out; the record it was, if there was one."""
        record = self._records.pop(annotation_id, None)
        if record is None:
            return None
        size = (record.end_time - record.start_time).bit_length()
        group = self._groups[size]
        at = bisect_left(group.keys, (record.start_time, annotation_id))
        del group.keys[at]
        del group.records[at]
        if not group.keys:
            del self._groups[size]
        self.nbytes -= len(record.body) + ENTRY_OVERHEAD
        return record

    def _group(self, record: AnnotationRecord) -> _Group:
        size = (record.end_time - record.start_time).bit_length()
        group = self._groups.get(size)
        if group is None:
            group = self._groups[size] = _Group((1 << size) - 1)
        return group

    def query(self, query: AnnotationQuery) -> list[bytes]:
        """The JSON of the annotations ``query`` asks for, ordered by first time, then id."""
        start, end = query.start, query.end
        found: list[AnnotationRecord] = []
        for group in self._groups.values():
            keys = group.keys
            low = 0 if start is None else bisect_left(keys, (start - group.reach,))
            high = len(keys) if end is None else bisect_left(keys, (end,))
            for record in group.records[low:high]:
                if (start is None or record.end_time >= start) and query.matches(record):
                    found.append(record)
        if len(self._groups) > 1:
            found.sort(key=_ORDER)
        return [record.body for record in found]

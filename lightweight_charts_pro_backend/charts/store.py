"""The in-memory series store: a sorted time column beside the points' JSON bytes.

Points live as their encoded JSON, each followed by a comma, in one ``bytearray``; ``_offsets[i]``
is where point ``i`` starts and ``_offsets[n]`` is the end. Finding a time is a binary search over
``_times``; a chunk is one slice of the buffer, so serving history never re-encodes a point and a
point costs its JSON plus 12 bytes of index.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from .points import EncodedPoints

Direction = Literal["before", "after"]

_OFFSET_LIMIT = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Chunk:
    """Points ``start`` (inclusive) to ``end`` (exclusive) of a series, as a JSON array."""

    data: bytes
    start: int
    end: int
    start_time: int | None
    end_time: int | None
    total: int
    direction: Direction

    @property
    def count(self) -> int:
        return self.end - self.start

    @property
    def has_more_before(self) -> bool:
        return self.start > 0

    @property
    def has_more_after(self) -> bool:
        return self.end < self.total


class SeriesStore:
    """Points of one series, unique by time and kept in ascending order."""

    __slots__ = ("_buf", "_offsets", "_times")

    def __init__(self, points: EncodedPoints | None = None) -> None:
        self._times: array[int] = array("q")
        self._offsets: array[int] = array("I", [0])
        self._buf = bytearray()
        if points is not None:
            self._append(points.times, points.body, points.offsets)

    def __len__(self) -> int:
        return len(self._times)

    @property
    def first_time(self) -> int | None:
        return self._times[0] if self._times else None

    @property
    def last_time(self) -> int | None:
        return self._times[-1] if self._times else None

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns (JSON, times, offsets), for memory accounting."""
        return (
            len(self._buf)
            + self._times.itemsize * len(self._times)
            + (self._offsets.itemsize * len(self._offsets))
        )

    def times(self) -> list[int]:
        return self._times.tolist()

    def upsert(self, points: EncodedPoints) -> None:
        """Insert the points; a point whose time is already stored replaces it.

        Appending after the last time touches only the end of the columns. Otherwise the columns
        are rewritten from the first affected time onward, copying untouched runs as whole slices.
        """
        if not points.times:
            return
        if not self._times or points.times[0] > self._times[-1]:
            self._append(points.times, points.body, points.offsets)
            return
        start = bisect_left(self._times, points.times[0])
        old_times = self._times[start:]
        base = self._offsets[start]
        old_offsets = np.frombuffer(self._offsets, dtype=self._offsets.typecode)[start:] - base
        old_body = bytes(self._buf[base:])
        del self._times[start:]
        del self._offsets[start + 1 :]
        del self._buf[base:]

        kept = 0  # old points before this index are already copied back
        for index, time in enumerate(points.times):
            at = bisect_left(old_times, time, kept)
            if at > kept:
                self._append(old_times[kept:at], old_body, old_offsets[kept : at + 1])
            self._append((time,), points.body, points.offsets[index : index + 2])
            kept = at + 1 if at < len(old_times) and old_times[at] == time else at
        if kept < len(old_times):
            self._append(old_times[kept:], old_body, old_offsets[kept:])

    def _append(self, times: Sequence[int], body: bytes, offsets: npt.NDArray[np.int64]) -> None:
        """Append ``body[offsets[0]:offsets[-1]]``, whose points start at ``offsets[:-1]``."""
        if not times:
            return
        first, last = int(offsets[0]), int(offsets[-1])
        shift = len(self._buf) - first
        self._times.extend(times)
        self._buf += memoryview(body)[first:last]
        self._buf[-1] = 0x2C  # the separator after the last point may be a closing bracket
        if len(self._buf) > _OFFSET_LIMIT and self._offsets.typecode == "I":
            self._offsets = array("q", self._offsets)
        ends = (np.asarray(offsets[1:], dtype=np.int64) + shift).astype(self._offsets.typecode)
        self._offsets.frombytes(ends.tobytes())

    def slice_json(self, start: int, end: int) -> bytes:
        """Points ``start`` to ``end`` as a JSON array."""
        if start >= end:
            return b"[]"
        with memoryview(self._buf) as view:
            return b"".join((b"[", view[self._offsets[start] : self._offsets[end] - 1], b"]"))

    def all_json(self) -> bytes:
        return self.slice_json(0, len(self._times))

    def _chunk(self, start: int, end: int, direction: Direction) -> Chunk:
        times = self._times
        return Chunk(
            data=self.slice_json(start, end),
            start=start,
            end=end,
            start_time=times[start] if start < end else None,
            end_time=times[end - 1] if start < end else None,
            total=len(times),
            direction=direction,
        )

    def chunk_before(self, time: int, count: int) -> Chunk:
        """The last ``count`` points strictly before ``time``."""
        end = bisect_left(self._times, time)
        return self._chunk(max(0, end - count), end, "before")

    def chunk_after(self, time: int, count: int) -> Chunk:
        """The first ``count`` points strictly after ``time``."""
        start = bisect_right(self._times, time)
        return self._chunk(start, min(len(self._times), start + count), "after")

    def newest(self, count: int) -> Chunk:
        """The last ``count`` points: what a chart shows first."""
        end = len(self._times)
        return self._chunk(max(0, end - count), end, "before")

"""The in-memory series store: a sorted time column beside the points' JSON bytes.

Points live as their encoded JSON, each followed by a comma, in one ``bytearray``; ``_offsets[i]``
is where point ``i`` starts and ``_offsets[n]`` is the end. Finding a time is a binary search over
``_times``; a chunk is one slice of the buffer, so serving history never re-encodes a point and a
point costs its JSON plus 12 bytes of index.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from .points import EncodedPoints

Direction = Literal["before", "after"]

_UINT32_MAX = 2**32 - 1
_OFFSET_LIMIT = _UINT32_MAX
_COMPACT_AFTER = 10_000  # points in one write; live single-bar updates never pay for a copy


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


class TimeColumn:
    """Ascending UTC seconds stored as 32-bit offsets from the first time.

    Four bytes a point instead of eight while the series spans less than 136 years; a wider
    span switches the column to 64-bit absolute times.
    """

    __slots__ = ("base", "values")

    def __init__(self) -> None:
        self.base = 0
        self.values: array[int] = array("I")

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> int:
        return self.values[index] + self.base

    @property
    def nbytes(self) -> int:
        return self.values.itemsize * len(self.values)

    def bisect_left(self, time: int, lo: int = 0) -> int:
        return bisect_left(self.values, time - self.base, lo)

    def bisect_right(self, time: int) -> int:
        return bisect_right(self.values, time - self.base)

    def positions(self, times: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
        """``bisect_left`` of each of ``times`` (ascending), without copying the column."""
        column = np.frombuffer(self.values, dtype=self.values.typecode)
        limit = np.iinfo(column.dtype)
        relative = np.clip(times - self.base, limit.min, limit.max).astype(column.dtype)
        return np.searchsorted(column, relative)

    def absolute(self, start: int = 0) -> npt.NDArray[np.int64]:
        return np.frombuffer(self.values, dtype=self.values.typecode)[start:].astype(np.int64) + (
            self.base
        )

    def absolute_at(self, indexes: npt.NDArray[np.intp]) -> npt.NDArray[np.int64]:
        column = np.frombuffer(self.values, dtype=self.values.typecode)
        return column[indexes].astype(np.int64) + self.base

    def tolist(self) -> list[int]:
        return self.absolute().tolist()  # type: ignore[no-any-return]

    def truncate(self, length: int) -> None:
        del self.values[length:]

    def extend(self, times: Sequence[int] | npt.NDArray[np.int64]) -> None:
        """Append times, all later than the last stored one."""
        if not self.values:
            self.values = array("I")
            self.base = int(times[0])
        if self.values.typecode == "I" and int(times[-1]) - self.base > _UINT32_MAX:
            self.values = array("q", self.absolute().tobytes())
            self.base = 0
        relative = np.asarray(times, dtype=np.int64) - self.base
        self.values.frombytes(relative.astype(self.values.typecode).tobytes())

    def compact(self) -> None:
        self.values = self.values[:]


class SeriesStore:
    """Points of one series, unique by time and kept in ascending order."""

    __slots__ = ("_buf", "_offsets", "_times")

    def __init__(self, points: EncodedPoints | None = None) -> None:
        self._times = TimeColumn()
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
        return len(self._buf) + self._times.nbytes + (self._offsets.itemsize * len(self._offsets))

    def times(self) -> list[int]:
        return self._times.tolist()

    def bisect(self, time: int) -> int:
        """How many points lie before ``time``."""
        return self._times.bisect_left(time)

    def time_at(self, index: int) -> int:
        return self._times[index]

    def times_array(self) -> npt.NDArray[np.int64]:
        return self._times.absolute()

    def position(self, time: int) -> int:
        """How many points lie strictly before ``time`` (as :meth:`bisect`)."""
        return self.bisect(time)

    def point_json(self, index: int) -> bytes:
        """Point ``index`` as a JSON object."""
        return bytes(self._buf[self._offsets[index] : self._offsets[index + 1] - 1])

    def points_at(self, times: Sequence[int] | npt.NDArray[np.int64]) -> tuple[bytes, int]:
        """The stored points at any of ``times`` (ascending), as a JSON array, and their count."""
        wanted = np.asarray(times, dtype=np.int64)
        if not len(wanted) or not len(self._times):
            return b"[]", 0
        at = self._times.positions(wanted)
        inside = at < len(self._times)
        at = at[inside]
        found = at[self._times.absolute_at(at) == wanted[inside]]
        offsets = np.frombuffer(self._offsets, dtype=self._offsets.typecode)
        starts = offsets[found].tolist()
        ends = (offsets[found + 1] - 1).tolist()
        with memoryview(self._buf) as view:
            parts = [view[a:b] for a, b in zip(starts, ends, strict=True)]
            return b"[" + b",".join(parts) + b"]", len(parts)

    def upsert(self, points: EncodedPoints) -> None:
        """Insert the points; a point whose time is already stored replaces it.

        Appending after the last time touches only the end of the columns. Otherwise the columns
        are rewritten from the first affected time onward, copying untouched runs as whole slices.
        """
        if not points.times:
            return
        if not self._times or points.times[0] > self._times[-1]:
            self._append(points.times, points.body, points.offsets)
            if len(points) >= _COMPACT_AFTER:
                self._compact()
            return
        start = self._times.bisect_left(points.times[0])
        old_times = self._times.absolute(start)
        base = self._offsets[start]
        old_offsets = np.frombuffer(self._offsets, dtype=self._offsets.typecode)[start:] - base
        old_body = bytes(self._buf[base:])
        self._times.truncate(start)
        del self._offsets[start + 1 :]
        del self._buf[base:]

        kept = 0  # old points before this index are already copied back
        for index, time in enumerate(points.times):
            at = int(np.searchsorted(old_times[kept:], time)) + kept
            if at > kept:
                self._append(old_times[kept:at], old_body, old_offsets[kept : at + 1])
            self._append((time,), points.body, points.offsets[index : index + 2])
            kept = at + 1 if at < len(old_times) and old_times[at] == time else at
        if kept < len(old_times):
            self._append(old_times[kept:], old_body, old_offsets[kept:])
        if len(points) >= _COMPACT_AFTER:
            self._compact()

    def _compact(self) -> None:
        """Drop the spare capacity growth left behind (up to an eighth of each column)."""
        if sys.getsizeof(self._buf) - len(self._buf) > len(self._buf) >> 5:
            self._buf = bytearray(self._buf)
        self._times.compact()
        self._offsets = self._offsets[:]

    def _append(
        self,
        times: Sequence[int] | npt.NDArray[np.int64],
        body: bytes,
        offsets: npt.NDArray[np.int64],
    ) -> None:
        """Append ``body[offsets[0]:offsets[-1]]``, whose points start at ``offsets[:-1]``."""
        if not len(times):
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

    def json_size(self, start: int, end: int) -> int:
        """The length of ``slice_json(start, end)``."""
        return self._offsets[end] - self._offsets[start] + 1 if start < end else 2

    def copy_json(self, start: int, end: int, into: memoryview) -> npt.NDArray[np.int64]:
        """Write ``slice_json(start, end)`` into ``into`` (``json_size`` bytes long) without
        building it; returns where each point's JSON starts in it."""
        if start >= end:
            into[:] = b"[]"
            return np.zeros(0, dtype=np.int64)
        offsets = np.frombuffer(self._offsets, dtype=self._offsets.typecode)
        starts = offsets[start : end + 1].astype(np.int64)
        first, last = int(starts[0]), int(starts[-1])
        into[0] = 0x5B  # [
        with memoryview(self._buf) as view:
            into[1 : last - first] = view[first : last - 1]
        into[last - first] = 0x5D  # ]
        return starts[:-1] - (first - 1)

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
        end = self._times.bisect_left(time)
        return self._chunk(max(0, end - count), end, "before")

    def chunk_after(self, time: int, count: int) -> Chunk:
        """The first ``count`` points strictly after ``time``."""
        start = self._times.bisect_right(time)
        return self._chunk(start, min(len(self._times), start + count), "after")

    def newest(self, count: int) -> Chunk:
        """The last ``count`` points: what a chart shows first."""
        end = len(self._times)
        return self._chunk(max(0, end - count), end, "before")

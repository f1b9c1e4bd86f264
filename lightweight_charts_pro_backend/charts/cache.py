"""What the service keeps in memory about series whose source of truth is the database.

``SeriesCache`` bounds the loaded stores by a byte budget and drops the least recently used one
first (from memory only). ``TimeSamples`` is a sparse index, every ``SAMPLE_STEP``-th time of a
series, which turns "how many points lie before T" into counting at most ``SAMPLE_STEP`` entries
of the database index, so a history chunk served from the database knows its position without
counting the whole series.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from .store import SeriesStore

if TYPE_CHECKING:
    from .service import Series

SAMPLE_STEP: Final = 256


@dataclass(slots=True)
class TimeSamples:
    """``times[j]`` is the time of point ``j * step`` of a series of ``count`` points."""

    times: array[int]
    count: int
    step: int = SAMPLE_STEP

    @classmethod
    def of(cls, times: Sequence[int], step: int = SAMPLE_STEP) -> TimeSamples:
        return cls(array("q", times[::step]), len(times), step)

    def below(self, time: int) -> tuple[int, int | None]:
        """``(n, anchor)``: ``n`` points lie before ``anchor``, and every other point before
        ``time`` lies in ``[anchor, time)``. ``anchor`` is None when no point lies before."""
        j = bisect_left(self.times, time) - 1
        return (0, None) if j < 0 else (j * self.step, self.times[j])

    def up_to(self, time: int) -> tuple[int, int | None]:
        """As ``below``, for the points at or before ``time``; the rest lie in
        ``[anchor, time]``."""
        j = bisect_right(self.times, time) - 1
        return (0, None) if j < 0 else (j * self.step, self.times[j])

    def extend(self, times: Sequence[int]) -> None:
        """Account for ``times`` appended after the last point."""
        first_new = -self.count % self.step  # index in ``times`` of the next sampled ordinal
        self.times.extend(times[first_new :: self.step])
        self.count += len(times)

    @property
    def nbytes(self) -> int:
        return self.times.itemsize * len(self.times)


class SeriesCache:
    """Loaded series stores within ``budget`` bytes, least recently used dropped first.

    Dropping sets ``series.store`` to None; a reader holding the store object keeps a valid view
    until it lets go, so eviction needs no lock.
    """

    #: Bytes per point assumed before any series was loaded (a small candle and its index).
    INITIAL_BYTES_PER_POINT: Final = 64.0

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._sizes: OrderedDict[Series, int] = OrderedDict()
        self._bytes_per_point = self.INITIAL_BYTES_PER_POINT

    def __len__(self) -> int:
        return len(self._sizes)

    def fits(self, count: int) -> bool:
        """Whether a series of ``count`` points is expected to fit in the budget at all."""
        return count * self._bytes_per_point <= self.budget

    def add(self, series: Series, store: SeriesStore) -> bool:
        """Hold ``store`` as the series' store if it fits; returns whether it is held."""
        self.discard(series)
        size = store.nbytes
        if len(store):
            self._bytes_per_point = size / len(store)
        if size > self.budget:
            return False
        series.store = store
        self._sizes[series] = size
        self.used += size
        self._evict(keep=series)
        return True

    def touch(self, series: Series) -> None:
        if series in self._sizes:
            self._sizes.move_to_end(series)

    def resized(self, series: Series) -> None:
        store = series.store
        if series not in self._sizes or store is None:
            return
        size = store.nbytes
        self.used += size - self._sizes[series]
        self._sizes[series] = size
        self._sizes.move_to_end(series)
        if size > self.budget:
            self.discard(series)
        self._evict(keep=series)

    def discard(self, series: Series) -> None:
        size = self._sizes.pop(series, None)
        if size is not None:
            self.used -= size
        series.store = None

    def _evict(self, keep: Series) -> None:
        while self.used > self.budget and self._sizes:
            oldest = next(iter(self._sizes))
            if oldest is keep and len(self._sizes) == 1:
                break
            if oldest is keep:
                self._sizes.move_to_end(keep)
                continue
            self.discard(oldest)

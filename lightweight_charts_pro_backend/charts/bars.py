"""Bars at other resolutions, cached per series within a byte budget and kept current by writes.

For each series asked for at some resolution, ``BarCache`` holds the series' numeric columns
(``timeframes.Columns``, parsed once from the points' JSON) and, per resolution, the bars encoded
as JSON in a ``SeriesStore``, so paging bars costs what paging points costs; for resolutions asked
for as arrays (the UDF datafeed), the bars as numeric columns too. An upsert updates the columns in
place and recomputes only the buckets it touched; a replace or delete drops the entry.
Entries are dropped least recently used first when the budget is exceeded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson

from .arrays import ArrayBars
from .market import Market
from .points import EncodedPoints
from .store import SeriesStore
from .timeframes import (
    Bars,
    Blocks,
    Columns,
    Int64s,
    Kind,
    Resolution,
    Rule,
    aggregate,
    bucket_keys,
    bucket_span,
    encode_bars,
)

if TYPE_CHECKING:
    from .service import Series

#: Points of stored points by index (for the other fields a bar takes from its last point);
#: None when the points are not at hand.
PointSource = Callable[[Sequence[int]], Sequence[dict[str, Any]] | None]


class _Unavailable(Exception):
    """The points a bar needs are not in memory: drop the bars, they are rebuilt when read."""


@dataclass(slots=True)
class Frames:
    """What the cache holds for one series."""

    kind: Kind
    rule: Rule | None
    market: Market
    columns: Columns
    bars: dict[str, SeriesStore] = field(default_factory=dict)
    resolutions: dict[str, Resolution] = field(default_factory=dict)
    #: Block summaries of a value column for range views; dropped by writes.
    blocks: Blocks | None = None
    #: Bars as JSON arrays by field, for the resolutions asked for so (``array_bars``).
    arrays: dict[str, ArrayBars] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return (
            self.columns.nbytes
            + sum(store.nbytes for store in self.bars.values())
            + sum(arrays.nbytes for arrays in self.arrays.values())
        )


class BarCache:
    """Columns and bars of series within ``budget`` bytes, least recently used dropped first."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._entries: OrderedDict[Series, tuple[Frames, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, series: Series) -> Frames | None:
        entry = self._entries.get(series)
        if entry is None:
            return None
        self._entries.move_to_end(series)
        return entry[0]

    def put(self, series: Series, frames: Frames) -> None:
        self.discard(series)
        size = frames.nbytes
        self._entries[series] = (frames, size)
        self.used += size
        self._evict(keep=series)

    def resized(self, series: Series) -> None:
        entry = self._entries.get(series)
        if entry is None:
            return
        frames, size = entry
        new = frames.nbytes
        self._entries[series] = (frames, new)
        self.used += new - size
        self._evict(keep=series)

    def discard(self, series: Series) -> None:
        entry = self._entries.pop(series, None)
        if entry is not None:
            self.used -= entry[1]

    def _evict(self, keep: Series) -> None:
        while self.used > self.budget and self._entries:
            oldest = next(iter(self._entries))
            if oldest is keep:
                if len(self._entries) == 1:
                    if self.used > self.budget:
                        self.discard(keep)  # served once, not kept: larger than the budget
                    return
                self._entries.move_to_end(keep)
                continue
            self.discard(oldest)

    def upserted(self, series: Series, points: EncodedPoints, source: PointSource) -> None:
        """Apply an upsert (already stored) to the series' columns and bars."""
        entry = self._entries.get(series)
        if entry is None or not len(points):
            return
        frames = entry[0]
        parsed: list[dict[str, Any]] = orjson.loads(points.json_array())
        times = np.frombuffer(points.times, dtype=np.int64).copy()
        frames.columns.upsert(times, parsed)
        frames.blocks = None
        for text, resolution in list(frames.resolutions.items()):
            bars = touched_bars(frames, resolution, times)
            arrays = frames.arrays.get(text)
            if arrays is not None and not arrays.upsert(bars, integral_rows(frames)):
                del frames.arrays[text]  # built again when next asked for
            store = frames.bars.get(text)
            if store is not None:
                try:
                    changed = encode_bars(bars, frames.columns, _checked(source), frames.rule)
                except _Unavailable:
                    del frames.bars[text]
                else:
                    if len(changed):
                        store.upsert(changed)
            if text not in frames.bars and text not in frames.arrays:
                del frames.resolutions[text]
        self.resized(series)


def build_bars(frames: Frames, resolution: Resolution, source: PointSource) -> SeriesStore:
    """Every bar of the series at ``resolution`` (the store is also kept in ``frames``)."""
    columns = frames.columns
    keys, inside = bucket_keys(columns.times, resolution, frames.market)
    bars = aggregate(columns, keys, inside, frames.rule)
    store = SeriesStore(encode_bars(bars, columns, _checked(source), frames.rule))
    frames.bars[resolution.text] = store
    frames.resolutions[resolution.text] = resolution
    return store


def array_bars(frames: Frames, resolution: Resolution) -> ArrayBars:
    """Every bar of the series at ``resolution`` as JSON arrays by field (also kept in
    ``frames``, and kept current by upserts)."""
    columns = frames.columns
    keys, inside = bucket_keys(columns.times, resolution, frames.market)
    bars = aggregate(columns, keys, inside, frames.rule)
    arrays = ArrayBars(frames.kind, bars, integral_rows(frames))
    frames.arrays[resolution.text] = arrays
    frames.resolutions[resolution.text] = resolution
    return arrays


def integral_rows(frames: Frames) -> npt.NDArray[np.bool_]:
    """Which rows of the series' bars hold only integers."""
    integral = frames.columns.integral.copy()
    if frames.rule == "mean":
        integral[:] = False
    return integral


def touched_bars(frames: Frames, resolution: Resolution, times: Int64s) -> Bars:
    """The bars whose buckets hold any of ``times``, from the current columns."""
    columns = frames.columns
    keys, inside = bucket_keys(times, resolution, frames.market)
    touched = np.unique(keys[inside])
    if not len(touched):
        return aggregate(columns, keys[:0], inside[:0], frames.rule)
    low = bucket_span(int(touched[0]), resolution, frames.market)[0]
    high = bucket_span(int(touched[-1]), resolution, frames.market)[1]
    stored = columns.times
    lo, hi = np.searchsorted(stored, [low, high])
    span_keys, span_inside = bucket_keys(stored[lo:hi], resolution, frames.market)
    span_inside &= np.isin(span_keys, touched)
    return aggregate(columns, span_keys, span_inside, frames.rule, lo=int(lo))


def _checked(source: PointSource) -> Callable[[Sequence[int]], Sequence[dict[str, Any]]]:
    def points(indexes: Sequence[int]) -> Sequence[dict[str, Any]]:
        found = source(indexes)
        if found is None:
            raise _Unavailable
        return found

    return points

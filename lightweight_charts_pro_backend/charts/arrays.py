"""Bars as JSON arrays, one per field, for front ends that take columns rather than points.

TradingView's UDF datafeed answers ``{"t": [...], "o": [...], ...}``. ``ArrayBars`` keeps each
field of a series' bars at one resolution (``time``, ``open``, ``high``, ``low``, ``close``,
``volume``; or ``time`` and ``value``) as its own ``SeriesStore`` whose "points" are the bare
numbers, keyed by bar time. A window of bars is then one binary search and one slice per field,
as a history chunk of points is: no number is formatted per request.

Only bars with a value are kept (a whitespace bar has no place in such arrays); a missing volume
is written 0, and ``volume`` is left out until a bar has one (writes that take every volume away
again leave it, all 0, until the arrays are next built). Fields whose numbers were all integers
are written as integers.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import orjson

from .points import EncodedPoints
from .store import SeriesStore
from .timeframes import Bars, Floats, Int64s, Kind

OHLC_ROWS: Final = ("open", "high", "low", "close", "volume")
_INTEGRAL_BELOW: Final = 2.0**53
_COMMA: Final = 0x2C


@dataclass(frozen=True, slots=True)
class ArrayWindow:
    """Bars of a window as JSON arrays by field (``time`` first), their ``count``, and
    ``before``, the time of the newest bar before the window (None: there is none)."""

    count: int
    arrays: dict[str, bytes]
    before: int | None


class ArrayBars:
    """The bars of a series at one resolution as a JSON array per field (see the module).

    ``integral[j]`` tells whether row ``j`` of the bars' values is written as integers (the
    series' columns hold only integers there).
    """

    __slots__ = ("fields", "integral", "kind", "rows", "stores")

    def __init__(self, kind: Kind, bars: Bars, integral: npt.NDArray[np.bool_]) -> None:
        self.kind = kind
        self.integral = integral.copy()
        names = OHLC_ROWS if kind == "ohlc" else ("value",)
        filled = _filled(kind, bars)
        values = bars.values[:, filled]
        #: Rows of the bars' values that are written, in order (volume only when some bar has one).
        self.rows = [j for j, name in enumerate(names) if name != "volume" or _any(values[j])]
        self.fields: tuple[str, ...] = ("time", *(names[j] for j in self.rows))
        self.stores = tuple(
            SeriesStore(points) for points in self._encode(bars.times[filled], values)
        )

    def __len__(self) -> int:
        return len(self.stores[0])

    @property
    def nbytes(self) -> int:
        return sum(store.nbytes for store in self.stores)

    def _encode(self, times: Int64s, values: Floats) -> list[EncodedPoints]:
        keys = array("q", times.tobytes())
        encoded = [_encode_row(keys, times, False)]
        encoded += [_encode_row(keys, values[j], bool(self.integral[j])) for j in self.rows]
        return encoded

    def upsert(self, bars: Bars, integral: npt.NDArray[np.bool_]) -> bool:
        """Apply recomputed bars (new ones, or new values of stored ones); ``integral`` as the
        series' rows are now. False when the arrays cannot follow (a stored bar lost its value,
        or the series' first volume came): then they must be built again."""
        self.integral &= integral
        filled = _filled(self.kind, bars)
        if not filled.all() and self.stores[0].points_at(bars.times[~filled].tolist())[1]:
            return False
        if not filled.any():
            return True
        values = bars.values[:, filled]
        if self.kind == "ohlc" and 4 not in self.rows and _any(values[4]):
            return False
        for store, points in zip(
            self.stores, self._encode(bars.times[filled], values), strict=True
        ):
            store.upsert(points)
        return True

    def window(
        self, end: int, start: int | None = None, count: int | None = None, limit: int = 10_000
    ) -> ArrayWindow:
        """The bars before ``end`` (exclusive): the last ``count``, else those from ``start``
        (inclusive) on; at most the newest ``limit``."""
        times = self.stores[0]
        hi = times.position(end)
        lo = hi - count if count is not None else times.position(end if start is None else start)
        lo = min(max(lo, hi - limit, 0), hi)
        before = times.time_at(lo - 1) if lo > 0 else None
        if lo == hi:
            return ArrayWindow(0, {}, before)
        arrays = {
            name: store.slice_json(lo, hi)
            for name, store in zip(self.fields, self.stores, strict=True)
        }
        return ArrayWindow(hi - lo, arrays, before)


def _filled(kind: Kind, bars: Bars) -> npt.NDArray[np.bool_]:
    filled: npt.NDArray[np.bool_] = ~np.isnan(bars.values[3 if kind == "ohlc" else 0])
    return filled


def _any(row: Floats) -> bool:
    return not bool(np.isnan(row).all())


def _encode_row(keys: array[int], row: npt.NDArray[np.generic], integral: bool) -> EncodedPoints:
    """The numbers of ``row`` as the store's points keyed by ``keys``: one JSON array, each
    number followed by its separator."""
    if not len(row):
        return EncodedPoints(keys, b"", np.zeros(1, dtype=np.int64))
    if row.dtype == np.float64:
        row = np.where(np.isnan(row), 0.0, row)  # only a volume can be missing here
        if integral and bool(np.all(np.abs(row) < _INTEGRAL_BELOW)):
            row = row.astype(np.int64)
    body = orjson.dumps(np.ascontiguousarray(row), option=orjson.OPT_SERIALIZE_NUMPY)
    commas = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == _COMMA)
    offsets = np.empty(len(row) + 1, dtype=np.int64)
    offsets[0] = 1
    offsets[1:-1] = commas + 1
    offsets[-1] = len(body)
    return EncodedPoints(keys, body, offsets)

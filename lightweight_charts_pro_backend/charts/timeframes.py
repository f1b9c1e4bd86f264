"""Timeframes: TradingView resolutions, the buckets they cut a series into, and the bars.

A series keeps its points at their own spacing; a resolution's bars are computed from numeric
columns (``Columns``: times, prices or values, volume) with NumPy, one bucket key per point and
``reduceat`` per bucket, never a Python object per point. Buckets follow the series' market
(``market.Market``): intraday buckets start at each session's start and advance in elapsed time,
cut at the session's end; ``D``, ``W`` and ``M`` bars are trading days, weeks from Monday and
calendar months, labelled 00:00 UTC of their first day. Points outside the sessions are left out
of bars; annotations snapped to bars (``snap_to_bars``) go to the nearest session's bar instead.

Aggregation: bar and candlestick series take the first open, highest high, lowest low, last close
and the sum of a numeric ``volume``; value series take the last ``value`` (``sum`` for histograms,
or the series' own ``aggregation``). Other fields come from the bucket's last point. Whitespace
points (no price) count only for the bucket's existence: a bucket of only whitespace is one.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import orjson

from ..errors import InvalidResolution
from .market import DAY, Market
from .numbers import FieldReader
from .points import OHLC_FIELDS, OHLC_TYPES, EncodedPoints, encode_points
from .store import SeriesStore

Unit = Literal["S", "D", "W", "M"]
Kind = Literal["ohlc", "value"]
Rule = Literal["last", "first", "max", "min", "sum", "mean"]
Int64s = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

RULES: Final[frozenset[str]] = frozenset({"last", "first", "max", "min", "sum", "mean"})
_RESOLUTION = re.compile(r"([0-9]{1,5})?([SHDWM]?)")
_LIMITS: Final = {"S": 86_400, "": 1440, "H": 24, "D": 365, "W": 52, "M": 12}
_OHLC_KEYS: Final = frozenset({"time", *OHLC_FIELDS, "volume"})
_VALUE_KEYS: Final = frozenset({"time", "value"})
_NAN: Final = math.nan
#: Points read at a time into columns: their temporary arrays stay below the allocator's
#: 256 KiB threshold for blocks of their own (``memory.tune_allocator``).
PAGE: Final = 16_384
_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "ohlc": (*OHLC_FIELDS, "volume"),
    "value": ("value",),
}


@dataclass(frozen=True, slots=True)
class Resolution:
    """A parsed resolution: ``text`` is TradingView's canonical form (``4H`` is ``240``);
    intraday ones have ``unit`` ``S`` and ``count`` seconds."""

    text: str
    unit: Unit
    count: int

    @property
    def intraday(self) -> bool:
        return self.unit == "S"


def parse_resolution(value: object) -> Resolution:
    """``30S``, ``5`` (minutes), ``4H`` (as ``240``), ``1D``, ``2W``, ``1M``; else
    ``InvalidResolution`` (422)."""
    text = value if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    match = _RESOLUTION.fullmatch(text.strip()) if text is not None else None
    if match is None or match.group() in ("", "S", "H") or (match.group(1) or "1")[0] == "0":
        raise InvalidResolution(
            f"resolution {str(value)[:40]!r} is not a TradingView resolution: use <n>S seconds, "
            "<n> minutes (1 to 1440), <n>H hours, <n>D days, <n>W weeks or <n>M months."
        )
    count = int(match.group(1) or 1)
    letter = match.group(2)
    if count > _LIMITS[letter]:
        what = {"": "minutes", "S": "seconds", "H": "hours", "D": "days", "W": "weeks"}
        raise InvalidResolution(
            f"resolution {text!r}: at most {_LIMITS[letter]} {what.get(letter, 'months')} per bar."
        )
    if letter == "S":
        return Resolution(f"{count}S", "S", count)
    if letter in ("", "H"):
        minutes = count * 60 if letter == "H" else count
        if minutes > 1440:
            raise InvalidResolution(f"resolution {text!r}: at most 24 hours per intraday bar.")
        return Resolution(str(minutes), "S", minutes * 60)
    return Resolution(f"{count}{letter}", letter, count)  # type: ignore[arg-type]


def value_rule(series_type: str, aggregation: str | None) -> Rule | None:
    """How a value series' ``value`` is aggregated; None for OHLC series and for custom series
    without an ``aggregation`` (they cannot be aggregated)."""
    if series_type in OHLC_TYPES:
        return None
    if aggregation is not None:
        return aggregation  # type: ignore[return-value]
    if series_type == "histogram":
        return "sum"
    if series_type == "custom":
        return None
    return "last"


def check_aggregation(series_type: str, aggregation: object) -> str | None:
    """The ``aggregation`` a series may be written with (None: the type's default)."""
    if aggregation is None:
        return None
    if not isinstance(aggregation, str) or aggregation not in RULES:
        raise InvalidResolution(
            f"aggregation must be one of {', '.join(sorted(RULES))}; got {aggregation!r:.40}."
        )
    if series_type in OHLC_TYPES:
        raise InvalidResolution(
            f"aggregation applies to value series; a {series_type} series aggregates its "
            "open, high, low and close."
        )
    return aggregation


def check_aggregatable(series_type: str, aggregation: str | None, series_id: str) -> Kind:
    if series_type in OHLC_TYPES:
        return "ohlc"
    if value_rule(series_type, aggregation) is None:
        raise InvalidResolution(
            f"Series '{series_id}' is a custom series without an aggregation rule, so it has "
            'no bars at other resolutions; write it with "aggregation" (last, first, max, min, '
            "sum or mean of its value) to allow them."
        )
    return "value"


# ---------------------------------------------------------------------------- columns


class Columns:
    """The numeric columns of a series, in time order: ``values[j]`` is open, high, low, close,
    volume (OHLC series) or value (value series), NaN where a point has none; ``extra`` marks the
    points that carry other fields. Grows in place for appended points."""

    __slots__ = ("_extra", "_times", "_values", "integral", "kind", "size")

    def __init__(self, kind: Kind, capacity: int = 0) -> None:
        self.kind = kind
        width = 5 if kind == "ohlc" else 1
        self.size = 0
        self._times: Int64s = np.zeros(capacity, dtype=np.int64)
        self._values: Floats = np.zeros((width, capacity), dtype=np.float64)
        self._extra = np.zeros(capacity, dtype=np.bool_)
        self.integral = np.ones(width, dtype=np.bool_)

    @classmethod
    def parse(cls, kind: Kind, times: Int64s, points: Sequence[dict[str, Any]]) -> Columns:
        columns = cls(kind, len(points))
        columns._write(0, times, points)
        columns.size = len(points)
        return columns

    @classmethod
    def of_store(cls, kind: Kind, store: SeriesStore, page: int = PAGE) -> Columns:
        """The columns of every point in ``store``, read a page at a time from the points'
        JSON (``numbers.FieldReader``); pages it cannot read are parsed as objects."""
        size = len(store)
        columns = cls(kind, size)
        times = store.times_array()
        reader = FieldReader(_FIELDS[kind])
        columns._times[:] = times
        for start in range(0, size, page):
            end = min(size, start + page)
            text = reader.buffer(store.json_size(start, end))
            starts = store.copy_json(start, end, text)
            found = reader.read(end - start, starts, columns._values[:, start:end])
            if found is None:
                columns._write(start, times[start:end], orjson.loads(text))
                continue
            columns._extra[start:end] = found.keys > 1 + found.present.sum(axis=0)
            columns.integral &= found.integral
        columns.size = size
        return columns

    def __len__(self) -> int:
        return self.size

    @property
    def times(self) -> Int64s:
        return self._times[: self.size]

    @property
    def values(self) -> Floats:
        return self._values[:, : self.size]

    @property
    def extra(self) -> npt.NDArray[np.bool_]:
        return self._extra[: self.size]

    @property
    def nbytes(self) -> int:
        return self._times.nbytes + self._values.nbytes + self._extra.nbytes

    def _write(self, at: int, times: Int64s, points: Sequence[dict[str, Any]]) -> None:
        n = len(points)
        self._times[at : at + n] = times
        known = np.ones(n, dtype=np.int64)
        for j, name in enumerate(_FIELDS[self.kind]):
            column, present, integral = _column(points, name)
            self._values[j, at : at + n] = column
            known += present
            self.integral[j] &= integral
        sizes = np.fromiter(map(len, points), dtype=np.int64, count=n)
        self._extra[at : at + n] = sizes > known

    def upsert(self, times: Int64s, points: Sequence[dict[str, Any]]) -> None:
        """Points at stored times replace them; later ones are appended; others inserted."""
        if not len(times):
            return
        new = Columns.parse(self.kind, times, points)
        self.integral &= new.integral
        stored = self.times
        at = np.searchsorted(stored, times)
        found = (at < len(stored)) & (stored[np.minimum(at, max(len(stored) - 1, 0))] == times)
        if found.all():
            self._values[:, at] = new.values
            self._extra[at] = new.extra
            return
        if not found.any() and (not len(stored) or times[0] > stored[-1]):
            self._reserve(self.size + len(times))
            end = self.size + len(times)
            self._times[self.size : end] = times
            self._values[:, self.size : end] = new.values
            self._extra[self.size : end] = new.extra
            self.size = end
            return
        keep = ~np.isin(stored, times)
        merged = np.concatenate([stored[keep], times])
        order = np.argsort(merged, kind="stable")
        self._times = merged[order]
        self._values = np.concatenate([self.values[:, keep], new.values], axis=1)[:, order]
        self._extra = np.concatenate([self.extra[keep], new.extra])[order]
        self.size = len(merged)

    def _reserve(self, size: int) -> None:
        capacity = len(self._times)
        if size <= capacity:
            return
        capacity = max(size, capacity + (capacity >> 3) + 64)
        times = np.zeros(capacity, dtype=np.int64)
        times[: self.size] = self.times
        values = np.zeros((self._values.shape[0], capacity), dtype=np.float64)
        values[:, : self.size] = self.values
        extra = np.zeros(capacity, dtype=np.bool_)
        extra[: self.size] = self.extra
        self._times, self._values, self._extra = times, values, extra


def _column(points: Sequence[dict[str, Any]], name: str) -> tuple[Floats, Int64s, bool]:
    """``(values, present, integral)``: the field as floats (NaN when absent or not a number),
    whether each point has the key at all, and whether every number was an integer."""
    raw = [p.get(name) for p in points]
    present = np.fromiter((name in p for p in points), dtype=np.int64, count=len(raw))
    types = set(map(type, raw))
    if types <= {int, float, type(None)}:
        values = np.array([_NAN if v is None else v for v in raw], dtype=np.float64)
        return values, present, float not in types
    numbers = [v if type(v) in (int, float) else _NAN for v in raw]
    integral = all(type(v) is not float for v in numbers if v is not _NAN)
    return np.array(numbers, dtype=np.float64), present, integral


def parse_points(json_array: bytes) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = orjson.loads(json_array)
    return points


# ---------------------------------------------------------------------------- buckets


def bucket_keys(times: Int64s, resolution: Resolution, market: Market) -> tuple[Int64s, Any]:
    """``(keys, inside)``: each point's bar time, and whether it lies in a session at all (keys
    of points outside are meaningless). Keys never decrease with time."""
    if market.always_open and market.timezone in ("Etc/UTC", "UTC"):
        days = np.floor_divide(times, DAY)
        inside = np.ones(len(times), dtype=np.bool_)
        if resolution.intraday:
            step = resolution.count
            midnight = days * DAY
            return midnight + (times - midnight) // step * step, inside
        return _day_keys(days, resolution, market), inside
    sessions = market.sessions(times)
    k = np.searchsorted(sessions.starts, times, side="right") - 1
    valid = k >= 0
    k = np.maximum(k, 0)
    if not len(sessions.starts):
        return np.zeros(len(times), dtype=np.int64), np.zeros(len(times), dtype=np.bool_)
    inside = valid & (times < sessions.ends[k])
    if resolution.intraday:
        start = sessions.starts[k]
        return start + (times - start) // resolution.count * resolution.count, inside
    return _day_keys(sessions.days[k], resolution, market), inside


def _day_keys(days: Int64s, resolution: Resolution, market: Market) -> Int64s:
    n = resolution.count
    if resolution.unit == "D":
        if n == 1:
            return days * DAY
        weekdays = np.array(sorted(market.weekdays), dtype=np.int64)
        per_week = len(weekdays)
        before = np.searchsorted(weekdays, np.arange(7))
        ordinal = (days + 3) // 7 * per_week + before[(days + 3) % 7]
        first = ordinal // n * n
        week, rank = np.divmod(first, per_week)
        return (week * 7 - 3 + weekdays[rank]) * DAY
    if resolution.unit == "W":
        return ((days + 3) // 7 // n * n * 7 - 3) * DAY
    months = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    first = (months // n * n).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    return first * DAY


def snap_to_bars(times: Int64s, resolution: Resolution, market: Market) -> Int64s:
    """The time of the bar at ``resolution`` each of ``times`` is drawn on: the key of its bucket
    (``bucket_keys``), so the very time the bars carry. A time outside the market's sessions
    takes the bar of the nearest session: the last bar of the session it follows or the first
    bar of the session after it, whichever session edge is nearer (the later one on a tie).
    Annotations anchored outside trading hours (news before the open, a fill after the close, a
    weekend) stay on the chart this way."""
    keys, inside = bucket_keys(times, resolution, market)
    outside = np.flatnonzero(~inside)
    if len(outside):
        keys[outside] = bucket_keys(_into_sessions(times[outside], market), resolution, market)[0]
    return keys


#: Trading days are at most a week apart (a session names at least one weekday), so the sessions
#: nearest a time are among the trading days this close to it.
_NEAREST_SESSIONS: Final = np.arange(-8, 9, dtype=np.int64) * DAY


def _into_sessions(times: Int64s, market: Market) -> Int64s:
    """Each of ``times``, all outside the sessions, moved to the nearest instant in one: the
    last second of the session before it or the start of the session after it."""
    sessions = market.sessions(np.unique((times[:, None] + _NEAREST_SESSIONS).ravel()))
    count = len(sessions.starts)
    if not count:
        return times.copy()
    after = np.searchsorted(sessions.starts, times, side="right")
    following = np.minimum(after, count - 1)
    preceding = np.maximum(after - 1, 0)
    far = np.iinfo(np.int64).max
    to_open = np.where(after < count, sessions.starts[following] - times, far)
    since_close = np.where(after > 0, times - sessions.ends[preceding], far)
    moved: Int64s = np.where(
        to_open <= since_close, sessions.starts[following], sessions.ends[preceding] - 1
    )
    return moved


def bucket_span(key: int, resolution: Resolution, market: Market) -> tuple[int, int]:
    """A UTC interval ``[low, high)`` holding every point of the bucket labelled ``key`` (wider
    than the bucket: callers select the bucket's points by their keys)."""
    if resolution.intraday:
        return key, key + resolution.count
    days = {"D": 7, "W": 7, "M": 31}[resolution.unit] * resolution.count
    return key - 2 * DAY, key + (days + 2) * DAY


# ---------------------------------------------------------------------------- bars


@dataclass(frozen=True, slots=True)
class Bars:
    """Aggregated bars: ``values`` rows as in ``Columns`` (NaN: a whitespace bar) and ``last``,
    the index in the columns of the point each bar takes its other fields from (-1: none)."""

    times: Int64s
    values: Floats
    last: Int64s

    def __len__(self) -> int:
        return len(self.times)


def aggregate(columns: Columns, keys: Int64s, inside: Any, rule: Rule | None, lo: int = 0) -> Bars:
    """Bars of the points ``lo .. lo + len(keys)`` of ``columns`` with these bucket keys."""
    width = columns.values.shape[0]
    # The points in sessions (all of them, often: then the columns are read in place).
    index: Int64s | None = None
    if bool(np.all(inside)):
        k, rows = keys, columns.values[:, lo : lo + len(keys)]
    else:
        index = np.flatnonzero(inside) + lo
        k, rows = keys[index - lo], columns.values[:, index]
    if not len(k):
        return Bars(np.zeros(0, np.int64), np.zeros((width, 0)), np.zeros(0, np.int64))
    firsts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    times = k[firsts]
    values = np.full((width, len(times)), np.nan)
    last = np.full(len(times), -1, dtype=np.int64)
    filled = ~np.isnan(rows[3 if columns.kind == "ohlc" else 0])
    # Bars take their values from the points with one (every point, often).
    at: Int64s | slice = slice(None)
    starts, picked = firsts, None
    if not filled.all():
        picked = np.flatnonzero(filled)
        if not len(picked):
            return Bars(times, values, last)
        rows, fk = rows[:, picked], k[picked]
        starts = np.flatnonzero(np.r_[True, fk[1:] != fk[:-1]])
        at = np.searchsorted(times, fk[starts])
    ends = np.r_[starts[1:], rows.shape[1]]
    tails = ends - 1
    chosen = tails if picked is None else picked[tails]
    last[at] = chosen + lo if index is None else index[chosen]
    if columns.kind == "ohlc":
        values[0, at] = rows[0, starts]
        values[1, at] = np.maximum.reduceat(rows[1], starts)
        values[2, at] = np.minimum.reduceat(rows[2], starts)
        values[3, at] = rows[3, tails]
        volume = rows[4]
        has = ~np.isnan(volume)
        if has.any():
            sums = np.add.reduceat(np.where(has, volume, 0.0), starts)
            values[4, at] = np.where(np.add.reduceat(has, starts) > 0, sums, np.nan)
    else:
        values[0, at] = _reduce(rows[0], starts, ends, rule or "last")
    return Bars(times, values, last)


def _reduce(column: Floats, starts: Int64s, ends: Int64s, rule: Rule) -> Floats:
    if rule == "last":
        return column[ends - 1]
    if rule == "first":
        return column[starts]
    if rule == "max":
        return np.maximum.reduceat(column, starts)
    if rule == "min":
        return np.minimum.reduceat(column, starts)
    sums = np.add.reduceat(column, starts)
    if rule == "sum":
        return sums
    means: Floats = sums / (ends - starts)
    return means


def encode_bars(
    bars: Bars,
    columns: Columns,
    extras: Callable[[Sequence[int]], Sequence[dict[str, Any]]],
    rule: Rule | None = None,
) -> EncodedPoints:
    """The bars as the store holds points; ``extras`` gives the points (by column index) whose
    other fields a bar carries."""
    times = bars.times.tolist()
    if columns.kind == "ohlc":
        names: tuple[str, ...] = (*OHLC_FIELDS, "volume")
        keys = _OHLC_KEYS
    else:
        names, keys = ("value",), _VALUE_KEYS
    integral = columns.integral.copy()
    if rule == "mean":
        integral[:] = False
    rows = [_as_list(bars.values[j], bool(integral[j])) for j in range(len(names))]
    out: list[dict[str, Any]] = []
    append = out.append
    if columns.kind == "ohlc":
        for t, o, h, low, c, v in zip(times, *rows, strict=True):
            if c is None:
                append({"time": t})
            elif v is None:
                append({"time": t, "open": o, "high": h, "low": low, "close": c})
            else:
                append({"time": t, "open": o, "high": h, "low": low, "close": c, "volume": v})
    else:
        out = [
            {"time": t} if v is None else {"time": t, "value": v}
            for t, v in zip(times, rows[0], strict=True)
        ]
    carriers = np.flatnonzero((bars.last >= 0) & columns.extra[np.maximum(bars.last, 0)])
    if len(carriers):
        sources = extras(bars.last[carriers].tolist())
        for at, point in zip(carriers.tolist(), sources, strict=True):
            bar = out[at]
            out[at] = {**bar, **{k: v for k, v in point.items() if k not in keys}}
    return encode_points(out, array("q", times))


def _as_list(column: Floats, integral: bool) -> list[Any]:
    values: list[Any] = column.tolist()
    if integral and np.all(np.isnan(column) | (np.abs(column) < 2.0**53)):
        return [None if v != v else int(v) for v in values]
    return [None if v != v else v for v in values]


# ---------------------------------------------------------------------------- range views

#: The resolutions a zoomed-out view of an OHLC series tries, finest first.
LADDER: Final = tuple(
    parse_resolution(text)
    for text in ("1S", "5S", "15S", "30S", "1", "5", "15", "30", "60", "240", "1D", "1W", "1M")
)


def coarsest_fit(
    columns: Columns, lo: int, hi: int, market: Market, max_points: int
) -> tuple[Resolution, Int64s, Any]:
    """The finest resolution of ``LADDER`` (then 2, 4, 8... months) at which the points
    ``lo .. hi`` make at most ``max_points`` bars, with their bucket keys and session mask.

    Bar counts shrink along the ladder, so it is searched by halving.
    """
    times = columns.times[lo:hi]
    found: dict[Resolution, tuple[Int64s, Any]] = {}

    def fits(resolution: Resolution) -> bool:
        keys, inside = bucket_keys(times, resolution, market)
        selected = keys[inside]
        bars = int(np.count_nonzero(selected[1:] != selected[:-1])) + (1 if len(selected) else 0)
        found[resolution] = (keys, inside)
        return bars <= max_points

    low, high = 0, len(LADDER) - 1
    if fits(LADDER[high]):
        while low < high:
            middle = (low + high) // 2
            if fits(LADDER[middle]):
                high = middle
            else:
                low = middle + 1
        resolution = LADDER[low]
        if resolution not in found:
            fits(resolution)
        return resolution, *found[resolution]
    months = 2
    while not fits(resolution := Resolution(f"{months}M", "M", months)):
        months *= 2
    return resolution, *found[resolution]


BLOCK: Final = 256


@dataclass(frozen=True, slots=True)
class Blocks:
    """Summaries of a value column per block of ``size`` points: the first and last point with
    a value, and the (first) lowest and highest, as indexes (-1: the block has no value), and
    the lowest and highest values. A range view over many blocks reads these instead of every
    point."""

    size: int
    filled: Int64s
    first: Int64s
    last: Int64s
    low: Floats
    low_at: Int64s
    high: Floats
    high_at: Int64s


def blocks_of(columns: Columns, size: int = BLOCK) -> Blocks:
    values = columns.values[0]
    count = -(-len(values) // size)
    starts = np.arange(count) * size
    filled = np.flatnonzero(~np.isnan(values))
    first_at = np.searchsorted(filled, starts)
    last_at = np.searchsorted(filled, np.minimum(starts + size, len(values))) - 1
    has = first_at <= last_at
    known = np.append(filled, -1)  # index -1 of it: no point
    first = np.where(has, known[np.minimum(first_at, len(filled))], -1)
    last = np.where(has, known[last_at], -1)
    padded = np.full(count * size, np.nan)
    padded[: len(values)] = values
    grid = padded.reshape(count, size)
    empty = ~has
    safe = np.where(np.isnan(grid), np.inf, grid)
    low_at = safe.argmin(axis=1)
    low = safe[np.arange(count), low_at]
    safe = np.where(np.isnan(grid), -np.inf, grid)
    high_at = safe.argmax(axis=1)
    high = safe[np.arange(count), high_at]
    return Blocks(
        size,
        np.add.reduceat((~np.isnan(padded)).astype(np.int64), starts) if count else starts,
        first,
        last,
        np.where(empty, np.nan, low),
        np.where(empty, -1, starts + low_at),
        np.where(empty, np.nan, high),
        np.where(empty, -1, starts + high_at),
    )


def extremes(
    columns: Columns, lo: int, hi: int, max_points: int, blocks: Blocks | None = None
) -> Int64s:
    """Indexes (ascending, into the columns) of the first, lowest, highest and last point that
    have a value in each of at most ``max_points // 4`` stretches of equally many points of
    ``lo .. hi``: stored points only, every extreme kept (below 4 points, only the lowest and
    the highest). With ``blocks``, stretches of whole blocks are read from their summaries
    (the partial blocks at both ends of the range are stretches of their own)."""
    values = columns.values[0, lo:hi]
    if blocks is not None and max_points >= 12:
        size = blocks.size
        inner_lo, inner_hi = -(-lo // size), hi // size
        stretches = (max_points - 8) // 4
        edges = np.count_nonzero(~np.isnan(columns.values[0, lo : min(hi, inner_lo * size)]))
        if inner_hi >= inner_lo:  # else the range lies within one block, counted above
            edges += np.count_nonzero(~np.isnan(columns.values[0, inner_hi * size : hi]))
        count = int(blocks.filled[inner_lo:inner_hi].sum()) + int(edges)
        if inner_hi - inner_lo >= 2 * stretches and count > max_points:
            picked = [
                _direct(columns, lo, inner_lo * size, 1),
                _from_blocks(blocks, inner_lo, inner_hi, stretches),
                _direct(columns, inner_hi * size, hi, 1),
            ]
            return np.unique(np.concatenate(picked))
    filled = np.flatnonzero(~np.isnan(values))
    if len(filled) <= max_points:
        return filled + lo
    if max_points < 4:  # room for the extremes only
        v = values[filled]
        return np.unique(filled[[int(np.argmin(v)), int(np.argmax(v))]]) + lo
    return _direct(columns, lo, hi, max_points // 4)


def _direct(columns: Columns, lo: int, hi: int, stretches: int) -> Int64s:
    values = columns.values[0, lo:hi]
    filled = np.flatnonzero(~np.isnan(values))
    if len(filled) <= 4 * stretches:
        return filled + lo
    ids = filled * stretches // (hi - lo)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    picked = filled[np.r_[starts, ends - 1]]
    v = values[filled]
    owner = np.repeat(np.arange(len(starts)), ends - starts)
    for reduce in (np.minimum, np.maximum):
        target = reduce.reduceat(v, starts)[owner]
        hits = np.flatnonzero(v == target)
        first_hit = hits[np.r_[True, owner[hits][1:] != owner[hits][:-1]]]
        picked = np.concatenate([picked, filled[first_hit]])
    return np.unique(picked) + lo


def _from_blocks(blocks: Blocks, lo: int, hi: int, stretches: int) -> Int64s:
    """``extremes`` of the whole blocks ``lo .. hi`` in ``stretches`` groups of blocks."""
    bounds = np.unique(lo + np.arange(stretches) * (hi - lo) // stretches)
    picked = []
    for lows, at, better in (
        (blocks.low, blocks.low_at, np.fmin),
        (blocks.high, blocks.high_at, np.fmax),
    ):
        segment = lows[lo:hi]
        starts = bounds - lo
        best = better.reduceat(segment, starts)
        owner = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(segment)]))
        hits = np.flatnonzero(segment == best[owner])
        if not len(hits):
            continue
        first_hit = hits[np.r_[True, owner[hits][1:] != owner[hits][:-1]]]
        picked.append(at[lo:hi][first_hit])
    with_values = np.flatnonzero(blocks.first[lo:hi] >= 0) + lo
    if len(with_values):
        group_of = np.searchsorted(bounds, with_values, side="right") - 1
        starts = np.flatnonzero(np.r_[True, group_of[1:] != group_of[:-1]])
        ends = np.r_[starts[1:], len(group_of)]
        picked.append(blocks.first[with_values[starts]])
        picked.append(blocks.last[with_values[ends - 1]])
    return np.unique(np.concatenate(picked)) if picked else np.zeros(0, np.int64)

"""Validation, time normalization and encoding of the points a client sends.

The whole batch is checked before anything is stored, so a refused request leaves the series as it
was. Checks run column-wise (``map`` over C functions, NumPy for the OHLC rules) because a single
request may carry a million points.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import chain, pairwise
from operator import itemgetter, lt
from typing import Any, Final

import numpy as np
import orjson

from ..errors import DuplicateTime, InvalidData, InvalidRequest

SERIES_TYPES: Final = frozenset(
    {"line", "area", "baseline", "histogram", "bar", "candlestick", "custom"}
)
VALUE_TYPES: Final = frozenset({"line", "area", "baseline", "histogram"})
OHLC_TYPES: Final = frozenset({"bar", "candlestick"})
OHLC_FIELDS: Final = ("open", "high", "low", "close")

MIN_TIME: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TIME: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
MILLISECONDS_ABOVE: Final = 10**11  # larger integers are epoch milliseconds

_NUMBER_TYPES: Final = frozenset({int, float})


@dataclass(frozen=True, slots=True)
class EncodedPoints:
    """A validated batch: unique ascending UTC-second times and the points' JSON.

    Point ``i`` is ``body[offsets[i]:offsets[i + 1]]``: its JSON and one separator byte after it
    (a comma, or the closing bracket after the last point).
    """

    times: array[int]
    body: bytes
    offsets: np.ndarray[tuple[int], np.dtype[np.int64]]

    def __len__(self) -> int:
        return len(self.times)

    def json_array(self) -> bytes:
        if not self.times:
            return b"[]"
        return b"[" + self.body[int(self.offsets[0]) : int(self.offsets[-1]) - 1] + b"]"


def encode_points(points: list[dict[str, Any]], times: array[int]) -> EncodedPoints:
    """Encode sorted, validated points in one pass and locate each point in the output."""
    if not points:
        return EncodedPoints(times, b"", np.zeros(1, dtype=np.int64))
    body = orjson.dumps(points)
    raw = np.frombuffer(body, dtype=np.uint8)
    # Between two points the encoding reads '},{'. Inside a point the same bytes can occur only in
    # nested data; when the count is off, fall back to encoding the points one by one.
    closing = np.flatnonzero(raw[:-2] == 0x7D)
    closing = closing[(raw[closing + 1] == 0x2C) & (raw[closing + 2] == 0x7B)]
    offsets = np.empty(len(points) + 1, dtype=np.int64)
    if len(closing) == len(points) - 1:
        offsets[0] = 1
        offsets[1:-1] = closing + 2
    else:
        blobs = [orjson.dumps(p) + b"," for p in points]
        body = b"".join(blobs)
        offsets[0] = 0
        np.cumsum(
            np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))[:-1], out=offsets[1:-1]
        )
    offsets[-1] = len(body)
    return EncodedPoints(times, body, offsets)


def normalize_series_type(value: object) -> str:
    if not isinstance(value, str) or value.lower() not in SERIES_TYPES:
        allowed = ", ".join(sorted(SERIES_TYPES))
        raise InvalidRequest(f"seriesType must be one of {allowed}; got {_short(value)}.")
    return value.lower()


def normalize_time(value: object) -> int:
    """UTC seconds for any accepted time form; raises ``InvalidData`` otherwise.

    Accepted: integer seconds, integer milliseconds (> 10^11), floats (floored), ``YYYY-MM-DD``,
    ISO-8601 datetimes (naive means UTC) and ``{"year", "month", "day"}`` objects.
    """
    seconds: int
    if type(value) is int:
        seconds = value // 1000 if value > MILLISECONDS_ABOVE else value
    elif type(value) is float:
        if not math.isfinite(value):
            raise InvalidData(f"time {value!r} is not a finite number.")
        seconds = math.floor(value / 1000 if value > MILLISECONDS_ABOVE else value)
    elif isinstance(value, str):
        seconds = _parse_time_string(value)
    elif isinstance(value, dict):
        seconds = _parse_business_day(value)
    else:
        raise InvalidData(
            f"time {value!r} is not a timestamp, a 'YYYY-MM-DD' string, an ISO-8601 datetime "
            "or a {year, month, day} object."
        )
    if not MIN_TIME <= seconds <= MAX_TIME:
        raise InvalidData(f"time {value!r} is outside the years 1 to 9999.")
    return seconds


def _parse_time_string(value: str) -> int:
    try:
        if len(value) == 10:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        else:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
    except ValueError:
        raise InvalidData(
            f"time {value!r} is not a 'YYYY-MM-DD' date or an ISO-8601 datetime."
        ) from None
    return math.floor(parsed.timestamp())


def _parse_business_day(value: dict[str, Any]) -> int:
    parts = [value.get(key) for key in ("year", "month", "day")]
    if set(value) != {"year", "month", "day"} or not all(type(p) is int for p in parts):
        raise InvalidData(f"time {value!r} must be an object with integer year, month and day.")
    try:
        day = date(parts[0], parts[1], parts[2])  # type: ignore[arg-type]
    except ValueError as exc:
        raise InvalidData(f"time {value!r} is not a calendar date: {exc}.") from None
    return math.floor(datetime.combine(day, datetime.min.time(), UTC).timestamp())


def prepare_points(raw: object, series_type: str, *, from_json: bool = False) -> EncodedPoints:
    """Validate ``raw`` (a list of point objects) for ``series_type``; sort; encode each point.

    Every field a client sent is kept; ``time`` is rewritten to UTC seconds. ``from_json`` says
    ``raw`` came from a JSON parser, which already refuses NaN and infinities, so the scan of
    every field for them is skipped.
    """
    if not isinstance(raw, list):
        raise InvalidData("data must be a list of point objects.")
    if not raw:
        return encode_points([], array("q"))
    _check_objects(raw)
    times = _normalized_times(raw)
    _check_fields(raw, series_type, from_json, 0)
    return _sorted_encoding(raw, times)


class StagedPoints:
    """A large batch already in time order, checked and encoded a chunk at a time as it is read.

    Its times are checked when it is staged; the other fields are checked, and the points encoded,
    by ``chunks`` as a database write consumes them, so the database stores one chunk while the next
    is prepared. A chunk that fails its checks raises ``InvalidData`` from ``chunks``: the write's
    transaction then stores nothing, as if the whole batch had been refused first.
    """

    CHUNK: Final = 16_384

    def __init__(
        self, raw: list[dict[str, Any]], times: list[int], series_type: str, from_json: bool
    ) -> None:
        self.times = array("q", times)
        self._raw = raw
        self._series_type = series_type
        self._from_json = from_json
        self._encoded: list[EncodedPoints] = []

    def __len__(self) -> int:
        return len(self.times)

    def chunks(self) -> Iterator[EncodedPoints]:
        """Each chunk checked and encoded, in order; chunks already read are read again as they
        were."""
        yield from self._encoded
        for start in range(sum(map(len, self._encoded)), len(self._raw), self.CHUNK):
            part = self._raw[start : start + self.CHUNK]
            _check_fields(part, self._series_type, self._from_json, start)
            encoded = encode_points(part, self.times[start : start + self.CHUNK])
            self._encoded.append(encoded)
            yield encoded

    def encoded(self) -> EncodedPoints:
        """The whole batch as one encoding (checking what ``chunks`` has not yet)."""
        parts = list(self.chunks())
        if len(parts) == 1:
            return parts[0]
        contents = [p.body[int(p.offsets[0]) : int(p.offsets[-1]) - 1] for p in parts]
        body = b"[" + b",".join(contents) + b"]"
        offsets = np.empty(len(self.times) + 1, dtype=np.int64)
        at, position = 0, 1
        for part, content in zip(parts, contents, strict=True):
            offsets[at : at + len(part)] = part.offsets[:-1] - part.offsets[0] + position
            at += len(part)
            position += len(content) + 1
        offsets[-1] = len(body)
        self._encoded = [EncodedPoints(self.times, body, offsets)]
        return self._encoded[0]


def stage_points(
    raw: object, series_type: str, *, from_json: bool = False
) -> EncodedPoints | StagedPoints:
    """``prepare_points``, except that a batch larger than a chunk and already in time order is
    returned staged: its times checked, the rest left to ``StagedPoints.chunks``."""
    if not isinstance(raw, list) or len(raw) <= StagedPoints.CHUNK:
        return prepare_points(raw, series_type, from_json=from_json)
    _check_objects(raw)
    times = _normalized_times(raw)
    if not all(map(lt, times, times[1:])):
        _check_fields(raw, series_type, from_json, 0)
        return _sorted_encoding(raw, times)
    return StagedPoints(raw, times, series_type, from_json)


def _check_objects(raw: list[Any]) -> None:
    if set(map(type, raw)) != {dict}:
        index = next(i for i, p in enumerate(raw) if type(p) is not dict)
        raise InvalidData(f"data[{index}] is not an object: {_short(raw[index])}.")


def _sorted_encoding(raw: list[dict[str, Any]], times: list[int]) -> EncodedPoints:
    """The checked points encoded in time order; refuses a time that appears twice."""
    if not all(map(lt, times, times[1:])):
        order = sorted(range(len(times)), key=times.__getitem__)
        times = [times[i] for i in order]
        raw = [raw[i] for i in order]
        if not all(map(lt, times, times[1:])):
            first = next(t for t, u in pairwise(times) if t == u)
            raise DuplicateTime(
                f"time {first} appears more than once in data; times must be unique."
            )
    return encode_points(raw, array("q", times))


def _normalized_times(raw: list[dict[str, Any]]) -> list[int]:
    try:
        times = list(map(itemgetter("time"), raw))
    except KeyError:
        index = next(i for i, p in enumerate(raw) if "time" not in p)
        raise InvalidData(f"data[{index}] has no time.") from None
    if (
        set(map(type, times)) == {int}
        and min(times) >= MIN_TIME
        and max(times) < MILLISECONDS_ABOVE
    ):
        return times
    normalized: list[int] = []
    for index, (point, value) in enumerate(zip(raw, times, strict=True)):
        try:
            seconds = normalize_time(value)
        except InvalidData as exc:
            raise InvalidData(f"data[{index}]: {exc.detail}") from None
        if seconds != value or type(value) is not int:
            point["time"] = seconds
        normalized.append(seconds)
    return normalized


def _check_types(
    column: Iterable[Any], fields: tuple[str, ...], raw: list[dict[str, Any]], base: int
) -> None:
    if set(map(type, column)) <= _NUMBER_TYPES:
        return
    for index, point in enumerate(raw, base):
        for field in fields:
            value = point.get(field, 0)
            if type(value) not in _NUMBER_TYPES:
                raise InvalidData(f"data[{index}].{field} must be a number; got {_short(value)}.")


def _check_fields(raw: list[dict[str, Any]], series_type: str, from_json: bool, base: int) -> None:
    """Every check of the points' fields other than time; ``base`` is the index of ``raw[0]`` in
    the request, for the messages."""
    if series_type in VALUE_TYPES:
        _check_values(raw, series_type, base)
    elif series_type in OHLC_TYPES:
        _check_ohlc(raw, series_type, base)
    if not from_json:
        _check_other_numbers(raw, base)


def _check_values(raw: list[dict[str, Any]], series_type: str, base: int) -> None:
    try:
        values = list(map(_value, raw))
    except KeyError:
        values = _present_values(raw, series_type, base)
    _check_types(values, ("value",), raw, base)


_value = itemgetter("value")


def _present_values(raw: list[dict[str, Any]], series_type: str, base: int) -> list[Any]:
    """The values of the points that have one. A point without is a gap, unless it carries
    prices: then it was meant for a bar series, and storing it as a gap would lose it."""
    values: list[Any] = []
    for index, point in enumerate(raw, base):
        if "value" in point:
            values.append(point["value"])
        elif prices := [field for field in OHLC_FIELDS if field in point]:
            raise InvalidData(
                f"data[{index}] has {', '.join(prices)} but no value; a {series_type} point "
                "needs value (or only time, for a gap)."
            )
    return values


def _check_ohlc(raw: list[dict[str, Any]], series_type: str, base: int) -> None:
    try:
        rows = list(map(_ohlc, raw))
        indexes: list[int] | None = None
    except KeyError:
        rows, indexes = _complete_bars(raw, series_type, base)
    if not rows:
        return
    _check_types(chain.from_iterable(rows), OHLC_FIELDS, raw, base)
    bars = np.fromiter(chain.from_iterable(rows), np.float64, count=4 * len(rows)).reshape(-1, 4)
    open_, high, low, close = bars.T
    bad = (low > open_) | (low > close) | (high < open_) | (high < close)
    if bad.any():
        at = int(np.argmax(bad))
        index = base + at if indexes is None else indexes[at]
        raise InvalidData(
            f"data[{index}] is not a consistent bar (open, high, low, close = {rows[at]}); "
            "low must be <= open and close, and high >= open and close."
        )


_ohlc = itemgetter(*OHLC_FIELDS)


def _complete_bars(
    raw: list[dict[str, Any]], series_type: str, base: int
) -> tuple[list[tuple[Any, ...]], list[int]]:
    """Bars with all four prices, and their indexes; gaps (no price at all, and no value that
    would make them a line's point) are skipped."""
    rows: list[tuple[Any, ...]] = []
    indexes: list[int] = []
    for index, point in enumerate(raw, base):
        present = [field for field in OHLC_FIELDS if field in point]
        if len(present) == 4:
            rows.append(_ohlc(point))
            indexes.append(index)
        elif present:
            missing = ", ".join(f for f in OHLC_FIELDS if f not in point)
            raise InvalidData(
                f"data[{index}] is missing {missing}; a bar needs open, high, low and close "
                "(or only time, for a gap)."
            )
        elif "value" in point:
            raise InvalidData(
                f"data[{index}] has value but no open, high, low or close; a {series_type} "
                "point needs all four (or only time, for a gap)."
            )
    return rows, indexes


def _check_other_numbers(raw: list[dict[str, Any]], base: int) -> None:
    """Reject NaN and infinities anywhere in a point (possible when called from Python)."""
    for index, point in enumerate(raw, base):
        for key, value in point.items():
            if type(value) is float and not math.isfinite(value):
                raise InvalidData(f"data[{index}].{key} must be finite; got {value!r}.")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

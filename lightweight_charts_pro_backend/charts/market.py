"""Market calendars: the timezone and trading sessions a series' bars are aligned to.

A market is what a series' ``market`` field says, in TradingView's terms: an IANA ``timezone``
(default ``Etc/UTC``) and a ``session`` string ``HHMM-HHMM[,HHMM-HHMM...][:DAYS]`` (DAYS are digits,
1 = Sunday ... 7 = Saturday; default every day; ``24x7`` is every minute of every day). A range
whose end is not after its start crosses midnight: it opens on the day before the trading day it
belongs to (CME ``1700-1600:23456``: Monday's session opens Sunday 17:00). Other keys (``symbol``,
``exchange``, ...) are kept as given.

``Market.sessions`` turns the calendar into UTC instants for the trading days that matter, so
that bucketing is array arithmetic; local wall times are converted day by day with ``zoneinfo``,
so DST switches land where they should. A wall time skipped by a DST switch starts at the switch;
one that happens twice is taken the first time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from ..errors import InvalidMarket

DEFAULT_TIMEZONE: Final = "Etc/UTC"
DEFAULT_SESSION: Final = "24x7"
DAY: Final = 86_400
_MINUTES_PER_DAY: Final = 1440
_RANGE = re.compile(r"([0-9]{2})([0-9]{2})-([0-9]{2})([0-9]{2})")
_DAYS = re.compile(r"[1-7]{1,7}")
_EPOCH: Final = datetime(1970, 1, 1)
_FIXED_ZONES: Final = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "GMT"})

Int64s = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Sessions:
    """Session ranges ``[starts[k], ends[k])`` in UTC seconds, ascending and disjoint, each of
    the trading day ``days[k]`` (days since 1970-01-01 of the day's date)."""

    starts: Int64s
    ends: Int64s
    days: Int64s


@dataclass(frozen=True, slots=True)
class Market:
    """A parsed ``market``. ``ranges`` are minutes from the trading day's local midnight (a range
    opening the evening before starts below zero); ``weekdays`` are Python's (Monday = 0)."""

    timezone: str = DEFAULT_TIMEZONE
    session: str = DEFAULT_SESSION
    ranges: tuple[tuple[int, int], ...] = ((0, _MINUTES_PER_DAY),)
    weekdays: frozenset[int] = frozenset(range(7))
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, "timezone": self.timezone, "session": self.session}

    @property
    def always_open(self) -> bool:
        return self.ranges == ((0, _MINUTES_PER_DAY),) and len(self.weekdays) == 7

    def sessions(self, times: Int64s) -> Sessions:
        """The sessions of every trading day that may hold one of ``times`` (UTC seconds)."""
        if not len(times):
            empty = np.zeros(0, dtype=np.int64)
            return Sessions(empty, empty, empty)
        days_of = np.floor_divide(times, DAY)
        # Every day among them (times are usually sorted: a day where it changes).
        utc_days = days_of[np.r_[0, np.flatnonzero(days_of[1:] != days_of[:-1]) + 1]]
        # A local date is within a day of the UTC date, and a trading day's session may open
        # on the evening before it.
        candidates = np.unique((utc_days[:, None] + np.arange(-1, 3)).ravel())
        weekday = (candidates + 3) % 7
        days = candidates[np.isin(weekday, list(self.weekdays))]
        starts = np.array([r[0] for r in self.ranges], dtype=np.int64) * 60
        ends = np.array([r[1] for r in self.ranges], dtype=np.int64) * 60
        walls_start = (days[:, None] * DAY + starts).ravel()
        walls_end = (days[:, None] * DAY + ends).ravel()
        begin = _to_utc(self.timezone, walls_start)
        end = _to_utc(self.timezone, walls_end)
        owner = np.repeat(days, len(self.ranges))
        keep = end > begin
        begin, end, owner = begin[keep], end[keep], owner[keep]
        if len(begin) > 1:
            # never overlap, even where a DST switch shortens the night between two sessions
            end[:-1] = np.minimum(end[:-1], begin[1:])
        return Sessions(begin, end, owner)


def parse_market(value: object) -> Market:
    """The market a client sent (an object); raises ``InvalidMarket`` with what is wrong."""
    if not isinstance(value, dict):
        raise InvalidMarket(
            'market must be an object such as {"timezone": "America/New_York", '
            f'"session": "0930-1600:23456"}}; got {str(value)[:60]!r}.'
        )
    extra = {k: v for k, v in value.items() if k not in ("timezone", "session")}
    timezone = value.get("timezone", DEFAULT_TIMEZONE)
    session = value.get("session", DEFAULT_SESSION)
    if timezone is None:
        timezone = DEFAULT_TIMEZONE
    if session is None:
        session = DEFAULT_SESSION
    check_timezone(timezone)
    ranges, weekdays = parse_session(session)
    return Market(timezone, session, ranges, weekdays, extra)


def check_timezone(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise InvalidMarket(f"market.timezone must be an IANA timezone name; got {value!r:.60}.")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidMarket(
            f"market.timezone {value!r} is not an IANA timezone (such as 'America/New_York', "
            "'Europe/London' or 'Etc/UTC')."
        ) from None
    return value


def parse_session(value: object) -> tuple[tuple[tuple[int, int], ...], frozenset[int]]:
    """``(ranges, weekdays)`` of a TradingView session string (see the module docstring)."""
    if not isinstance(value, str) or len(value) > 200:
        raise InvalidMarket(f"market.session must be a string; got {value!r:.60}.")
    text = value.strip()
    if text.lower() == "24x7":
        return ((0, _MINUTES_PER_DAY),), frozenset(range(7))
    spec, _, digits = text.partition(":")
    if digits and not _DAYS.fullmatch(digits):
        raise InvalidMarket(
            f"market.session {value!r}: the days after ':' must be digits 1-7 "
            "(1 = Sunday ... 7 = Saturday), such as ':23456' for Monday to Friday."
        )
    weekdays = frozenset((int(d) + 5) % 7 for d in digits) if digits else frozenset(range(7))
    minutes: list[tuple[int, int]] = []
    for part in spec.split(","):
        match = _RANGE.fullmatch(part.strip())
        if match is None:
            raise InvalidMarket(
                f"market.session {value!r}: {part.strip()!r} is not a range HHMM-HHMM "
                "(such as 0930-1600, or 1700-1600 for a session crossing midnight)."
            )
        h1, m1, h2, m2 = map(int, match.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise InvalidMarket(f"market.session {value!r}: {part.strip()!r} is not a time of day.")
        minutes.append((h1 * 60 + m1, h2 * 60 + m2))
    return _trading_day_ranges(minutes, value), weekdays


def _trading_day_ranges(minutes: list[tuple[int, int]], value: str) -> tuple[tuple[int, int], ...]:
    crossing = [
        i for i, (start, end) in enumerate(minutes) if end <= start and (start, end) != (0, 0)
    ]
    if len(crossing) > 1:
        raise InvalidMarket(f"market.session {value!r}: only one range may cross midnight.")
    ranges: list[tuple[int, int]] = []
    for i, (start, end) in enumerate(minutes):
        if (start, end) == (0, 0):
            end = _MINUTES_PER_DAY
        if crossing and i < crossing[0]:
            start, end = start - _MINUTES_PER_DAY, end - _MINUTES_PER_DAY
        elif crossing and i == crossing[0]:
            start -= _MINUTES_PER_DAY
        ranges.append((start, end))
    for (_, end), (start, _) in pairwise(ranges):
        if start < end:
            raise InvalidMarket(
                f"market.session {value!r}: ranges must be in order within the trading day and "
                "must not overlap."
            )
    if ranges[-1][1] - ranges[0][0] > _MINUTES_PER_DAY:
        raise InvalidMarket(f"market.session {value!r} spans more than 24 hours.")
    return tuple(ranges)


def _to_utc(timezone: str, walls: Int64s) -> Int64s:
    """UTC seconds of local wall times (seconds since 1970-01-01 as if local were UTC)."""
    if timezone in _FIXED_ZONES:
        return walls.copy()
    out = np.empty_like(walls)
    for i, wall in enumerate(walls.tolist()):
        out[i] = _wall_to_utc(timezone, wall)
    return out


@lru_cache(maxsize=65_536)
def _wall_to_utc(timezone: str, wall: int) -> int:
    zone = ZoneInfo(timezone)
    naive = _EPOCH + timedelta(seconds=wall)
    first = int(naive.replace(tzinfo=zone).timestamp())
    if _wall(first, zone) == naive:
        return first  # exists (once, or twice and this is the first time)
    # Skipped by a DST switch: the session starts at the switch, the first instant whose
    # wall time is not earlier.
    other = int(naive.replace(tzinfo=zone, fold=1).timestamp())
    low, high = min(first, other), max(first, other)
    while low < high:
        middle = (low + high) // 2
        if _wall(middle, zone) >= naive:
            high = middle
        else:
            low = middle + 1
    return low


def _wall(instant: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(instant, UTC).astimezone(zone).replace(tzinfo=None)

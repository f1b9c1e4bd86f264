"""The bar a time falls in, for TradingView resolutions of fixed length in UTC.

``30S`` (seconds), ``5`` / ``60`` (minutes), ``1D`` / ``D`` (days from 00:00 UTC), ``1W`` (weeks
from Monday 00:00 UTC) and ``1M`` / ``3M`` (calendar months in UTC). Bars that follow a market's
session (intraday bars from the session start, daily bars as trading days) are the timeframes
feature's (DESIGN.md section 10); once it is merged, snapping by a series' market goes through it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from ..errors import InvalidRequest

_RESOLUTION: Final = re.compile(r"([1-9][0-9]{0,5})?([SDWM]?)")
_UNIT_SECONDS: Final = {"S": 1, "": 60, "D": 86_400, "W": 7 * 86_400}
#: 1969-12-29, the Monday before the epoch: weeks start on Mondays.
_FIRST_MONDAY: Final = -3 * 86_400


def bar_start(resolution: str) -> Callable[[int], int]:
    """A function mapping a UTC time (seconds) to the start of its bar; 422 for a resolution
    that is not one of the forms above."""
    match = _RESOLUTION.fullmatch(resolution)
    if match is None or not resolution:
        raise InvalidRequest(
            f"resolution {resolution[:40]!r} is not a TradingView resolution of fixed length: "
            "use e.g. 30S, 1, 5, 60, 1D, 1W or 1M."
        )
    count = int(match.group(1) or 1)
    unit = match.group(2)
    if unit == "M":
        return lambda time: _month_start(time, count)
    step = count * _UNIT_SECONDS[unit]
    origin = _FIRST_MONDAY if unit == "W" else 0
    return lambda time: time - (time - origin) % step


def _month_start(time: int, months: int) -> int:
    moment = datetime.fromtimestamp(time, UTC)
    index = (moment.year * 12 + moment.month - 1) // months * months
    year, month = divmod(index, 12)
    return int(datetime(year, month + 1, 1, tzinfo=UTC).timestamp())

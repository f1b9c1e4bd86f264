"""Resolutions, market sessions and bars, checked against a pandas reference."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightweight_charts_pro_backend.charts.market import Market, parse_market
from lightweight_charts_pro_backend.charts.timeframes import (
    Columns,
    aggregate,
    blocks_of,
    bucket_keys,
    encode_bars,
    extremes,
    parse_resolution,
    snap_to_bars,
    value_rule,
)
from lightweight_charts_pro_backend.errors import InvalidMarket, InvalidResolution


def bars(
    points: list[dict[str, Any]],
    resolution: str,
    market: dict[str, Any] | None = None,
    series_type: str = "candlestick",
    aggregation: str | None = None,
) -> list[dict[str, Any]]:
    parsed = parse_market(market or {})
    kind = "ohlc" if series_type in ("bar", "candlestick") else "value"
    times = np.array([p["time"] for p in points], dtype=np.int64)
    columns = Columns.parse(kind, times, points)
    keys, inside = bucket_keys(columns.times, parse_resolution(resolution), parsed)
    rule = value_rule(series_type, aggregation)
    result = aggregate(columns, keys, inside, rule)
    encoded = encode_bars(result, columns, lambda idx: [points[i] for i in idx], rule)
    return orjson.loads(encoded.json_array())  # type: ignore[no-any-return]


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def candle(time: int, price: float, **extra: Any) -> dict[str, Any]:
    return {
        "time": time,
        "open": price,
        "high": price + 1,
        "low": price - 1,
        "close": price,
        **extra,
    }


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("30S", "30S"),
        ("1", "1"),
        ("5", "5"),
        ("60", "60"),
        ("4H", "240"),
        ("1440", "1440"),
        ("1D", "1D"),
        ("D", "1D"),
        ("1W", "1W"),
        ("3M", "3M"),
        (" 15 ", "15"),
    ],
)
def test_resolutions_are_tradingviews(text: str, canonical: str) -> None:
    assert parse_resolution(text).text == canonical


@pytest.mark.parametrize(
    "text", ["", "0", "1441", "25H", "5m", "1Y", "abc", "-5", "1.5", "S", "05", "60S60", None, []]
)
def test_other_resolutions_are_refused(text: object) -> None:
    with pytest.raises(InvalidResolution) as caught:
        parse_resolution(text)
    assert caught.value.status_code == 422
    assert caught.value.error_code == "INVALID_RESOLUTION"


def test_sessions_parse_with_overnight_ranges_and_days() -> None:
    cme = parse_market({"timezone": "America/Chicago", "session": "1700-1600:23456"})
    assert cme.ranges == ((17 * 60 - 1440, 16 * 60),)
    assert cme.weekdays == frozenset({0, 1, 2, 3, 4})
    split = parse_market({"session": "0930-1200,1300-1600"})
    assert split.ranges == ((570, 720), (780, 960)) and len(split.weekdays) == 7
    assert parse_market({"session": "0000-0000:1"}).ranges == ((0, 1440),)
    market = parse_market({"timezone": "Europe/London", "symbol": "VOD", "pricescale": 100})
    assert market.to_json() == {
        "symbol": "VOD",
        "pricescale": 100,
        "timezone": "Europe/London",
        "session": "24x7",
    }


@pytest.mark.parametrize(
    "market",
    [
        {"timezone": "Mars/Olympus"},
        {"timezone": "../../etc/passwd"},
        {"timezone": 5},
        {"session": "9:30-16:00"},
        {"session": "0930-1600:0"},
        {"session": "0930-1600:8"},
        {"session": "2500-0100"},
        {"session": "1700-1600,1800-0200"},
        {"session": "1200-1300,1100-1400"},
        {"session": ""},
        "NYSE",
    ],
)
def test_bad_markets_are_refused(market: object) -> None:
    with pytest.raises(InvalidMarket) as caught:
        parse_market(market)
    assert caught.value.status_code == 422 and caught.value.error_code == "INVALID_MARKET"


# ---------------------------------------------------------------- fixed cases

NYSE = {"timezone": "America/New_York", "session": "0930-1600:23456"}


def test_us_dst_switch_moves_intraday_bars_in_utc() -> None:
    # Friday 2024-03-08 (EST, UTC-5) and Monday 2024-03-11 (EDT, UTC-4)
    points = [candle(ts("2024-03-08T14:30:00") + 60 * i, 10 + i) for i in range(90)]
    points += [candle(ts("2024-03-11T13:30:00") + 60 * i, 20 + i) for i in range(90)]
    got = bars(points, "60", NYSE)
    assert [b["time"] for b in got] == [
        ts("2024-03-08T14:30:00"),
        ts("2024-03-08T15:30:00"),
        ts("2024-03-11T13:30:00"),
        ts("2024-03-11T14:30:00"),
    ]
    assert got[0] == {
        "time": ts("2024-03-08T14:30:00"),
        "open": 10,
        "high": 70,
        "low": 9,
        "close": 69,
    }
    daily = bars(points, "1D", NYSE)
    assert [b["time"] for b in daily] == [ts("2024-03-08T00:00:00"), ts("2024-03-11T00:00:00")]


def test_uk_dst_switch_and_points_outside_the_session() -> None:
    london = {"timezone": "Europe/London", "session": "0800-1630:23456"}
    # Friday 2024-03-29 is GMT, Tuesday 2024-04-02 BST (the switch was on Sunday 31 March)
    before = ts("2024-03-29T08:00:00")
    after = ts("2024-04-02T07:00:00")
    points = [candle(before - 60, 1), candle(before, 2), candle(before + 8 * 3600 + 1800, 3)]
    points += [candle(after, 4), candle(after + 8 * 3600 + 1799, 5), candle(after + 8.5 * 3600, 6)]
    points = [{**p, "time": int(p["time"])} for p in points]
    got = bars(points, "240", london)
    assert [(b["time"], b["open"], b["close"]) for b in got] == [
        (before, 2, 2),  # 16:30 GMT is the close: left out
        (after, 4, 4),  # 08:00 BST
        (after + 8 * 3600, 5, 5),  # 16:00-16:30 BST, cut at the session's end
    ]


def test_cme_overnight_session_makes_one_trading_day_per_bar() -> None:
    cme = {"timezone": "America/Chicago", "session": "1700-1600:23456"}
    sunday_open = ts("2024-06-09T22:00:00")  # Sunday 17:00 CDT: Monday's session opens
    monday_close = ts("2024-06-10T21:00:00")  # Monday 16:00 CDT
    points = [
        candle(sunday_open, 1),
        candle(sunday_open + 7 * 3600, 2),
        candle(monday_close - 60, 3),
        candle(monday_close + 60, 99),  # the daily break: left out
        candle(monday_close + 3600, 4),  # 17:00 CDT Monday: Tuesday's session
        candle(ts("2024-06-14T21:30:00"), 98),  # Friday after the close
        candle(ts("2024-06-15T15:00:00"), 97),  # Saturday
    ]
    daily = bars(points, "1D", cme)
    assert [(b["time"], b["open"], b["close"]) for b in daily] == [
        (ts("2024-06-10T00:00:00"), 1, 3),
        (ts("2024-06-11T00:00:00"), 4, 4),
    ]
    hourly = bars(points, "60", cme)
    assert hourly[0]["time"] == sunday_open and hourly[-1]["time"] == monday_close + 3600
    weekly = bars(points, "1W", cme)
    assert [b["time"] for b in weekly] == [ts("2024-06-10T00:00:00")]


def snapped(times: list[int], resolution: str, market: dict[str, Any]) -> list[int]:
    got: list[int] = snap_to_bars(
        np.array(times, dtype=np.int64), parse_resolution(resolution), parse_market(market)
    ).tolist()
    return got


def test_snapped_times_are_the_times_of_the_bars_they_fall_in() -> None:
    # Friday 2024-03-08 (EST) and Monday 2024-03-11 (EDT): the open moves from 14:30 to 13:30 UTC
    friday = [ts("2024-03-08T14:30:00"), ts("2024-03-08T15:29:59"), ts("2024-03-08T20:59:00")]
    monday = [ts("2024-03-11T13:30:00"), ts("2024-03-11T14:45:00"), ts("2024-03-11T19:59:59")]
    points = [candle(t, i) for i, t in enumerate(friday + monday)]
    hourly = {b["time"] for b in bars(points, "60", NYSE)}
    got = snapped(friday + monday, "60", NYSE)
    assert got == [max(bar for bar in hourly if bar <= t) for t in friday + monday]
    assert got == [
        ts("2024-03-08T14:30:00"),
        ts("2024-03-08T14:30:00"),
        ts("2024-03-08T20:30:00"),  # 15:30-16:00 EST, the session's last bar
        ts("2024-03-11T13:30:00"),
        ts("2024-03-11T14:30:00"),
        ts("2024-03-11T19:30:00"),
    ]
    assert (
        snapped(friday + monday, "1D", NYSE)
        == [ts("2024-03-08T00:00:00")] * 3 + [ts("2024-03-11T00:00:00")] * 3
    )
    assert (
        snapped(friday + monday, "1W", NYSE)
        == [ts("2024-03-04T00:00:00")] * 3 + [ts("2024-03-11T00:00:00")] * 3
    )


def test_times_outside_the_sessions_snap_to_the_nearest_sessions_bar() -> None:
    times = [
        ts("2024-03-08T13:00:00"),  # Friday 08:00 EST: 1.5 h before the open
        ts("2024-03-08T22:00:00"),  # Friday 17:00 EST: 1 h after the close
        ts("2024-03-09T17:00:00"),  # Saturday noon: 20 h after Friday's close, 44.5 h to Monday
        ts("2024-03-10T17:00:00"),  # Sunday 13:00 EDT: 44 h after the close, 20.5 h to Monday
        ts("2024-03-11T03:15:00"),  # Sunday 23:15 EDT: Monday's open is nearer
    ]
    assert snapped(times, "60", NYSE) == [
        ts("2024-03-08T14:30:00"),
        ts("2024-03-08T20:30:00"),
        ts("2024-03-08T20:30:00"),
        ts("2024-03-11T13:30:00"),
        ts("2024-03-11T13:30:00"),
    ]
    assert (
        snapped(times, "1D", NYSE)
        == [ts("2024-03-08T00:00:00")] * 3 + [ts("2024-03-11T00:00:00")] * 2
    )
    # A tie goes to the next session: the midpoint of the night between two sessions.
    london = {"timezone": "Europe/London", "session": "0800-1600"}
    assert snapped([ts("2024-01-10T00:00:00")], "60", london) == [ts("2024-01-10T08:00:00")]
    assert snapped([ts("2024-01-09T23:59:59")], "60", london) == [ts("2024-01-09T15:00:00")]


def test_uk_dst_switch_decides_whether_a_time_is_in_the_session() -> None:
    london = {"timezone": "Europe/London", "session": "0800-1630:23456"}
    # 07:30 UTC is 07:30 GMT on Friday 29 March (before the open) and 08:30 BST on 2 April
    assert snapped([ts("2024-03-29T07:30:00"), ts("2024-04-02T07:30:00")], "240", london) == [
        ts("2024-03-29T08:00:00"),  # outside: the first bar of the day
        ts("2024-04-02T07:00:00"),  # inside: the 08:00 BST bar
    ]
    # The bars of points at those times agree, the point before the open being left out.
    points = [candle(ts("2024-03-29T07:30:00"), 1), candle(ts("2024-03-29T08:10:00"), 2)]
    points += [candle(ts("2024-04-02T07:30:00"), 3)]
    assert [b["time"] for b in bars(points, "240", london)] == [
        ts("2024-03-29T08:00:00"),
        ts("2024-04-02T07:00:00"),
    ]


def test_weeks_start_on_monday_and_months_on_the_first() -> None:
    points = [candle(ts("2024-01-01T00:00:00") + 86_400 * i, i) for i in range(70)]
    weekly = bars(points, "1W")
    assert weekly[0]["time"] == ts("2024-01-01T00:00:00")  # a Monday
    assert weekly[1] == {
        "time": ts("2024-01-08T00:00:00"),
        "open": 7,
        "high": 14,
        "low": 6,
        "close": 13,
    }
    monthly = bars(points, "1M")
    assert [b["time"] for b in monthly] == [
        ts("2024-01-01T00:00:00"),
        ts("2024-02-01T00:00:00"),
        ts("2024-03-01T00:00:00"),
    ]
    assert monthly[1]["open"] == 31 and monthly[1]["close"] == 59
    two_weeks = bars(points, "2W")
    assert all((b["time"] - ts("1969-12-29T00:00:00")) % (14 * 86_400) == 0 for b in two_weeks)


def test_whitespace_volume_and_other_fields() -> None:
    t0 = ts("2024-05-01T10:00:00")
    points = [
        {"time": t0},
        {"time": t0 + 60, "open": 5, "high": 6, "low": 4, "close": 5.5, "volume": 10},
        {"time": t0 + 120, "open": 5.5, "high": 9, "low": 5, "close": 8, "color": "#f00"},
        {"time": t0 + 240, "volume": 3},
        {"time": t0 + 300},
    ]
    got = bars(points, "3")
    assert got == [
        {
            "time": t0,
            "open": 5,
            "high": 9,
            "low": 4,
            "close": 8,
            "volume": 10,
            "color": "#f00",
        },
        {"time": t0 + 180},
    ]


@pytest.mark.parametrize(
    ("series_type", "aggregation", "expected"),
    [
        ("line", None, 3.0),
        ("histogram", None, 6.5),
        ("line", "first", 1.5),
        ("area", "max", 3.0),
        ("baseline", "min", 1.5),
        ("custom", "mean", 6.5 / 3),
    ],
)
def test_value_rules(series_type: str, aggregation: str | None, expected: float) -> None:
    points = [{"time": 0, "value": 1.5}, {"time": 1, "value": 2.0}, {"time": 2, "value": 3.0}]
    got = bars(points, "1", series_type=series_type, aggregation=aggregation)
    assert got == [{"time": 0, "value": pytest.approx(expected)}]


def test_corrections_update_columns_like_a_fresh_parse() -> None:
    points = [candle(60 * i, i) for i in range(100)]
    times = np.array([p["time"] for p in points], dtype=np.int64)
    columns = Columns.parse("ohlc", times, points)
    updates = [
        candle(60 * 10, 50.0),
        candle(60 * 10 + 30, 7),
        candle(60 * 200, 1),
        candle(60 * 99, 3),
    ]
    for update in updates:
        columns.upsert(np.array([update["time"]], dtype=np.int64), [update])
    by_time = {p["time"]: p for p in points}
    for update in updates:
        by_time[update["time"]] = update
    fresh_points = [by_time[t] for t in sorted(by_time)]
    fresh = Columns.parse("ohlc", np.array(sorted(by_time), dtype=np.int64), fresh_points)
    assert np.array_equal(columns.times, fresh.times)
    assert np.array_equal(columns.values, fresh.values, equal_nan=True)


def test_24x7_in_utc_and_in_a_zone_agree_for_utc() -> None:
    points = [candle(1_700_000_000 + 37 * i, i % 13) for i in range(500)]
    for resolution in ("7", "1S", "45S", "1D", "3D"):
        assert bars(points, resolution, {"timezone": "UTC"}) == bars(
            points, resolution, {"timezone": "Africa/Abidjan"}
        )


# ---------------------------------------------------------------- pandas reference

ZONES = [
    "Etc/UTC",
    "America/New_York",
    "Europe/London",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "Pacific/Chatham",
    "Asia/Tokyo",
]
RESOLUTIONS = ["1S", "15S", "1", "5", "7", "60", "240", "1440", "1D", "2D", "1W", "2W", "1M", "3M"]


def reference(
    points: list[dict[str, Any]], resolution: str, timezone: str, session: str
) -> list[dict[str, Any]]:
    """The bars pandas computes: sessions localized by pandas, groups by pandas."""
    columns = ["time", "open", "high", "low", "close", "volume"]
    frame = pd.DataFrame(points, columns=columns).set_index("time").sort_index()
    utc = pd.to_datetime(frame.index, unit="s", utc=True)
    sessions = reference_sessions(utc, timezone, session)
    if sessions.empty:
        return []
    located = pd.merge_asof(
        pd.DataFrame({"t": frame.index.to_numpy()}),
        sessions,
        left_on="t",
        right_on="start",
        direction="backward",
    )
    inside = (located["start"].notna() & (located["t"] < located["end"])).to_numpy()
    frame = frame[inside]
    located = located[inside]
    number = re.fullmatch(r"([0-9]*)([SDWM]?)", resolution)
    assert number is not None
    n, unit = int(number.group(1) or 1), number.group(2)
    start = located["start"].to_numpy(dtype=np.int64)
    day = located["day"].to_numpy(dtype=np.int64)
    if unit in ("", "S"):
        step = n if unit == "S" else 60 * n
        keys = start + (frame.index.to_numpy() - start) // step * step
    elif unit == "D":
        mask = weekmask(session)
        origin = np.datetime64("1969-12-29")
        dates = day.astype("datetime64[D]")
        ordinal = np.busday_count(origin, dates, weekmask=mask)
        first = np.busday_offset(origin, ordinal // n * n, roll="forward", weekmask=mask)
        keys = first.astype(np.int64) * 86_400
    elif unit == "W":
        monday = pd.to_datetime(day, unit="D").to_period("W-SUN").start_time
        weeks = ((monday - pd.Timestamp("1969-12-29")).days // 7 // n * n).to_numpy()
        keys = (weeks * 7 - 3) * 86_400
    else:
        months = pd.to_datetime(day, unit="D").to_period("M").astype(np.int64).to_numpy()
        first = pd.PeriodIndex.from_ordinals(months // n * n, freq="M").start_time
        keys = (first - pd.Timestamp("1970-01-01")).days.to_numpy() * 86_400
    frame = frame.assign(key=keys)
    out = []
    for key, group in frame.groupby("key", sort=True):
        filled = group.dropna(subset=["close"])
        if filled.empty:
            out.append({"time": int(key)})
            continue
        bar = {
            "time": int(key),
            "open": filled["open"].iloc[0],
            "high": filled["high"].max(),
            "low": filled["low"].min(),
            "close": filled["close"].iloc[-1],
        }
        if filled["volume"].notna().any():
            bar["volume"] = filled["volume"].sum(min_count=1)
        out.append(bar)
    return out


def weekmask(session: str) -> str:
    digits = session.partition(":")[2] if session != "24x7" else ""
    if not digits:
        return "1111111"
    weekdays = {(int(d) + 5) % 7 for d in digits}
    return "".join("1" if w in weekdays else "0" for w in range(7))


def reference_sessions(utc: pd.DatetimeIndex, timezone: str, session: str) -> pd.DataFrame:
    spec = "0000-2400" if session == "24x7" else session.partition(":")[0]
    ranges = []
    for part in spec.split(","):
        a, b = part.split("-")
        ranges.append((int(a[:2]) * 60 + int(a[2:]), int(b[:2]) * 60 + int(b[2:])))
    if ranges == [(0, 0)]:
        ranges = [(0, 1440)]
    crossing = next((i for i, (a, b) in enumerate(ranges) if b <= a), None)
    shifted = []
    for i, (a, b) in enumerate(ranges):
        if crossing is not None and i < crossing:
            shifted.append((a - 1440, b - 1440))
        elif crossing is not None and i == crossing:
            shifted.append((a - 1440, b))
        else:
            shifted.append((a, b))
    mask = weekmask(session)
    first = (utc.min() - pd.Timedelta(days=2)).normalize().tz_localize(None)
    last = (utc.max() + pd.Timedelta(days=3)).normalize().tz_localize(None)
    days = pd.date_range(first, last, freq="D")
    days = days[[mask[d.weekday()] == "1" for d in days]]
    rows = []
    for day in days:
        for a, b in shifted:
            begin, end = (
                (day + pd.Timedelta(minutes=m))
                .tz_localize(timezone, nonexistent="shift_forward", ambiguous=True)
                .tz_convert("UTC")
                for m in (a, b)
            )
            if end > begin:
                epoch = (day - pd.Timestamp("1970-01-01")).days
                rows.append((int(begin.timestamp()), int(end.timestamp()), epoch))
    return pd.DataFrame(rows, columns=["start", "end", "day"]).sort_values("start")


@st.composite
def sessions(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return "24x7"
    minute = st.integers(0, 23 * 60 + 59).map(lambda m: m - m % draw(st.sampled_from([1, 15, 60])))
    a, b = draw(minute), draw(minute)
    spec = f"{a // 60:02d}{a % 60:02d}-{b // 60:02d}{b % 60:02d}"
    if a < b < 23 * 60 + 58 and draw(st.booleans()):
        c = draw(st.integers(b, 23 * 60 + 58))
        d = draw(st.integers(c + 1, 23 * 60 + 59))
        spec += f",{c // 60:02d}{c % 60:02d}-{d // 60:02d}{d % 60:02d}"
    days = draw(st.sets(st.integers(1, 7), min_size=1))
    return spec + (":" + "".join(map(str, sorted(days))) if len(days) < 7 else "")


@st.composite
def candles(draw: st.DrawFn) -> list[dict[str, Any]]:
    start = draw(st.integers(ts("2019-01-01T00:00:00"), ts("2024-12-01T00:00:00")))
    gaps = draw(
        st.lists(st.sampled_from([1, 13, 60, 600, 3600, 5400, 86_400, 3 * 86_400]), max_size=80)
    )
    times = np.cumsum([start, *gaps]).tolist()
    out = []
    for t in times:
        if draw(st.integers(0, 9)) == 0:
            out.append({"time": t})
            continue
        low = draw(st.integers(1, 100))
        high = low + draw(st.integers(0, 20))
        point = {
            "time": t,
            "open": draw(st.integers(low, high)) / 4,
            "high": high / 4,
            "low": low / 4,
            "close": draw(st.integers(low, high)) / 4,
        }
        if draw(st.booleans()):
            point["volume"] = draw(st.integers(0, 1000))
        out.append(point)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    points=candles(),
    resolution=st.sampled_from(RESOLUTIONS),
    timezone=st.sampled_from(ZONES),
    session=sessions(),
)
def test_bars_equal_the_pandas_reference(
    points: list[dict[str, Any]], resolution: str, timezone: str, session: str
) -> None:
    got = bars(points, resolution, {"timezone": timezone, "session": session})
    assert got == reference(points, resolution, timezone, session)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(ts("2019-01-01T00:00:00"), ts("2024-12-01T00:00:00")),
    offsets=st.lists(st.integers(0, 4 * 86_400), min_size=1, max_size=6),
    resolution=st.sampled_from(RESOLUTIONS),
    timezone=st.sampled_from(ZONES),
    session=sessions(),
)
def test_snapping_equals_the_pandas_reference(
    start: int, offsets: list[int], resolution: str, timezone: str, session: str
) -> None:
    """Inside a session, a time snaps to the reference's bar of a point at that time; outside,
    to the reference's bar of the nearest session edge (the next session's start on a tie)."""
    times = [start + offset for offset in offsets]
    edges = pd.to_datetime([min(times) - 9 * 86_400, max(times) + 9 * 86_400], unit="s", utc=True)
    table = reference_sessions(edges, timezone, session)
    starts, ends = table["start"].to_numpy(), table["end"].to_numpy()
    expected = []
    for t in times:
        if not ((starts <= t) & (t < ends)).any():
            close = ends[starts <= t].max()
            opening = starts[starts > t].min()
            t = int(opening) if opening - t <= t - close else int(close) - 1
        expected.append(reference([candle(t, 1)], resolution, timezone, session)[0]["time"])
    market = {"timezone": timezone, "session": session}
    assert snapped(times, resolution, market) == expected


def test_market_is_a_value() -> None:
    assert parse_market({}) == Market()


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 600),
    values=st.data(),
    max_points=st.integers(2, 60),
    block=st.sampled_from([None, 2, 3, 8]),
    bounds=st.tuples(st.integers(0, 600), st.integers(0, 600)),
)
def test_extremes_keep_each_stretchs_first_last_min_and_max(
    size: int,
    values: st.DataObject,
    max_points: int,
    block: int | None,
    bounds: tuple[int, int],
) -> None:
    times = np.arange(size, dtype=np.int64) * 60
    column = values.draw(
        st.lists(st.one_of(st.none(), st.integers(-50, 50)), min_size=size, max_size=size)
    )
    points = [
        {"time": int(t)} if v is None else {"time": int(t), "value": v}
        for t, v in zip(times, column, strict=True)
    ]
    columns = Columns.parse("value", times, points)
    lo, hi = sorted(min(b, size) for b in bounds)
    blocks = None if block is None else blocks_of(columns, block)
    picked = extremes(columns, lo, hi, max_points, blocks).tolist()
    filled = [i for i in range(lo, hi) if column[i] is not None]
    assert picked == sorted(set(picked)) and set(picked) <= set(filled)
    if len(filled) <= max_points:
        assert picked == filled
        return
    assert len(picked) <= max_points
    present = [column[i] for i in filled]
    assert {min(present), max(present)} <= {column[i] for i in picked}
    if max_points < 4:
        return
    assert filled[0] in picked and filled[-1] in picked
    if blocks is not None and max_points >= 12:
        return  # stretches of whole blocks: checked through the global guarantees above
    stretches = max_points // 4
    stretch: dict[int, list[int]] = {}
    for i in filled:
        stretch.setdefault((i - lo) * stretches // (hi - lo), []).append(i)
    for members in stretch.values():
        kept = [i for i in picked if i in members]
        assert members[0] in kept and members[-1] in kept
        member_values = [column[i] for i in members]
        assert {min(member_values), max(member_values)} <= {column[i] for i in kept}

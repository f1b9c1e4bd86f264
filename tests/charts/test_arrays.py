"""Bars as JSON arrays by field (``charts.arrays``), kept current by writes: after any writes,
any window equals the bars computed from scratch."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightweight_charts_pro_backend.charts.service import ChartsService
from lightweight_charts_pro_backend.realtime.bus import InProcessEventBus

T0 = 1_704_067_200
OHLC = ("open", "high", "low", "close", "volume")


def candle(time: int, price: int, volume: float | None, whitespace: bool) -> dict[str, Any]:
    if whitespace:
        return {"time": time}
    point: dict[str, Any] = {
        "time": time,
        "open": price,
        "high": price + 2,
        "low": price - 1,
        "close": price + 0.5 if price % 3 == 0 else price,
    }
    if volume is not None:
        point["volume"] = volume
    return point


points = st.builds(
    candle,
    st.integers(0, 3 * 86_400).map(lambda s: T0 + s // 30 * 30),
    st.integers(1, 500),
    st.none() | st.sampled_from([1, 2.5, 10]),
    st.sampled_from([False, False, False, False, True]),  # whitespace now and then
)


def reference(data: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The final points by time (later writes win)."""
    return {p["time"]: p for p in data}


async def bars_from_scratch(
    series_type: str, final: list[dict[str, Any]], resolution: str, market: dict[str, Any]
) -> list[dict[str, Any]]:
    fresh = ChartsService(InProcessEventBus())
    await fresh.replace_series("c", 0, "s", series_type, final, market=market)
    chunk, _ = await fresh.history_at("c", 0, "s", resolution, count=10_000)
    bars: list[dict[str, Any]] = orjson.loads(chunk.data)
    return [b for b in bars if ("close" in b or "value" in b)]


def as_rows(window_arrays: dict[str, bytes]) -> list[dict[str, Any]]:
    arrays = {name: orjson.loads(data) for name, data in window_arrays.items()}
    return [dict(zip(arrays, values, strict=True)) for values in zip(*arrays.values(), strict=True)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.lists(points, min_size=1, max_size=60),
    writes=st.lists(st.lists(points, min_size=1, max_size=8), max_size=6),
    resolution=st.sampled_from(["1", "5", "60", "240", "1D"]),
    ohlc=st.booleans(),
    session=st.sampled_from([None, "0930-1600:23456", "1700-1600:23456"]),
)
async def test_arrays_follow_writes(
    first: list[dict[str, Any]],
    writes: list[list[dict[str, Any]]],
    resolution: str,
    ohlc: bool,
    session: str | None,
) -> None:
    def shaped(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        unique = reference(batch)
        if ohlc:
            return list(unique.values())
        return [
            {"time": t, "value": p["close"]} if "close" in p else {"time": t}
            for t, p in unique.items()
        ]

    series_type = "candlestick" if ohlc else "line"
    market: dict[str, Any] = {"timezone": "America/New_York"}
    if session is not None:
        market["session"] = session
    service = ChartsService(InProcessEventBus())
    await service.replace_series("c", 0, "s", series_type, shaped(first), market=market)
    final = reference(shaped(first))
    await service.bar_arrays("c", 0, "s", resolution, end=T0 * 2)  # built, then kept current
    for batch in writes:
        await service.upsert_points("c", 0, "s", shaped(batch))
        final.update(reference(shaped(batch)))
    expected = await bars_from_scratch(
        series_type, sorted(final.values(), key=lambda p: p["time"]), resolution, market
    )
    window = await service.bar_arrays("c", 0, "s", resolution, end=T0 * 2, start=0)
    got = as_rows(window.arrays)
    assert window.count == len(expected)
    names = OHLC if ohlc else ("value",)
    has_volume = any("volume" in b for b in expected)
    for bar, row in zip(expected, got, strict=True):
        assert row["time"] == bar["time"]
        for name in names:
            if name == "volume" and not has_volume:
                # Left out, or written 0 when writes took away every volume there was.
                assert row.get("volume", 0) == 0, row
            else:
                assert row[name] == bar.get(name, 0), (name, bar, row)
    if not has_volume and not any("volume" in p for p in shaped(first)):
        assert all("volume" not in row for row in got)  # never had one: none written
    # Any window: a slice of the whole.
    if expected:
        end = expected[len(expected) // 2]["time"] + 1
        part = await service.bar_arrays("c", 0, "s", resolution, end=end, count=3)
        assert as_rows(part.arrays) == got[max(0, len(expected) // 2 - 2) : len(expected) // 2 + 1]

"""The sparse time index, the LRU budget of loaded series, and expiry in memory mode."""

from __future__ import annotations

import asyncio
from bisect import bisect_left, bisect_right

from hypothesis import given
from hypothesis import strategies as st

from lightweight_charts_pro_backend.charts.cache import SeriesCache, TimeSamples
from lightweight_charts_pro_backend.charts.events import ChartEvent
from lightweight_charts_pro_backend.charts.maintenance import run_maintenance
from lightweight_charts_pro_backend.charts.points import prepare_points
from lightweight_charts_pro_backend.charts.service import ChartsService, Series
from lightweight_charts_pro_backend.charts.store import SeriesStore
from lightweight_charts_pro_backend.realtime.bus import InProcessEventBus

sorted_times = st.lists(st.integers(-10_000, 10_000), unique=True, max_size=300).map(sorted)


@given(sorted_times, st.lists(st.integers(-10_001, 10_001), max_size=20), st.integers(1, 9))
def test_samples_locate_any_time(times: list[int], probes: list[int], step: int) -> None:
    samples = TimeSamples.of(times, step)
    for time in probes:
        known, anchor = samples.below(time)
        between = sum(1 for t in times if anchor is not None and anchor <= t < time)
        assert known + between == bisect_left(times, time)
        known, anchor = samples.up_to(time)
        between = sum(1 for t in times if anchor is not None and anchor <= t <= time)
        assert known + between == bisect_right(times, time)


@given(sorted_times, st.integers(1, 200), st.integers(1, 9))
def test_samples_extended_by_an_append_equal_fresh_samples(
    times: list[int], extra: int, step: int
) -> None:
    samples = TimeSamples.of(times, step)
    start = (times[-1] + 1) if times else 0
    appended = list(range(start, start + extra))
    samples.extend(appended)
    assert samples == TimeSamples.of(times + appended, step)


def _series(name: str, points: int) -> tuple[Series, SeriesStore]:
    encoded = prepare_points([{"time": t, "value": 1} for t in range(points)], "line")
    return Series(0, name, "line", {}, None, count=points), SeriesStore(encoded)


def test_the_cache_drops_the_least_recently_used_series_first() -> None:
    a, store_a = _series("a", 100)
    b, store_b = _series("b", 100)
    c, store_c = _series("c", 100)
    cache = SeriesCache(budget=store_a.nbytes * 2 + 10)
    assert cache.add(a, store_a) and cache.add(b, store_b)
    cache.touch(a)
    assert cache.add(c, store_c)
    assert (a.store, b.store, c.store) == (store_a, None, store_c)
    assert cache.used == store_a.nbytes + store_c.nbytes <= cache.budget


def test_a_series_larger_than_the_budget_is_not_held() -> None:
    big, store = _series("big", 1000)
    cache = SeriesCache(budget=store.nbytes - 1)
    assert not cache.add(big, store)
    assert big.store is None and cache.used == 0
    assert not cache.fits(1000)  # learnt from the attempt: no further loads of that size


def test_growth_past_the_budget_evicts_others_and_then_the_series_itself() -> None:
    a, store_a = _series("a", 100)
    b, store_b = _series("b", 100)
    cache = SeriesCache(budget=store_a.nbytes * 2 + 10)
    cache.add(a, store_a)
    cache.add(b, store_b)
    store_b.upsert(prepare_points([{"time": 1000 + t, "value": 1} for t in range(50)], "line"))
    cache.resized(b)
    assert a.store is None and b.store is store_b
    store_b.upsert(prepare_points([{"time": 5000 + t, "value": 1} for t in range(500)], "line"))
    cache.resized(b)
    assert b.store is None and cache.used == 0 and len(cache) == 0


async def test_idle_charts_expire_in_memory_mode_too() -> None:
    now = [100.0]
    bus = InProcessEventBus()
    service = ChartsService(bus, clock=lambda: now[0])
    await service.create_chart("old")
    await service.create_chart("fresh")
    events: list[ChartEvent] = []
    bus.subscribe("old", events.append)
    now[0] += 50
    await service.get_chart("fresh")
    now[0] += 20
    assert await service.expire_idle(ttl_seconds=60) == ["old"]
    assert [e.op for e in events] == ["chart_deleted"]
    assert [c.chart_id for c in await service.charts()] == ["fresh"]


async def test_the_maintenance_task_expires_charts_on_its_interval() -> None:
    service = ChartsService(InProcessEventBus())
    await service.create_chart("brief")
    task = asyncio.create_task(
        run_maintenance(service, ttl_seconds=0.05, interval_seconds=0.05, flush_seconds=0.05)
    )
    try:
        for _ in range(100):  # bounded: 100 x 20 ms
            if not await service.charts():
                break
            await asyncio.sleep(0.02)
        assert await service.charts() == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_ttl_of_zero_keeps_charts_forever() -> None:
    service = ChartsService(InProcessEventBus(), clock=lambda: 0.0)
    await service.create_chart("kept")
    task = asyncio.create_task(
        run_maintenance(service, ttl_seconds=0, interval_seconds=0.01, flush_seconds=0.01)
    )
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [c.chart_id for c in await service.charts()] == ["kept"]


async def test_only_the_process_that_wins_the_claim_expires_charts() -> None:
    service = ChartsService(InProcessEventBus())
    await service.create_chart("brief")
    claims: list[float] = []
    present: list[list[str]] = []
    won = asyncio.Event()

    async def claim(seconds: float) -> bool:
        claims.append(seconds)
        if len(claims) < 3:
            # another worker holds the lock for these passes; the refused ones removed nothing
            present.append([c.chart_id for c in await service.charts()])
            return False
        won.set()
        return True

    task = asyncio.create_task(
        run_maintenance(
            service, ttl_seconds=0.01, interval_seconds=0.02, flush_seconds=0.02, claim=claim
        )
    )
    try:
        async with asyncio.timeout(5):
            await won.wait()
            for _ in range(100):  # bounded: the pass that won runs right after its claim
                if not await service.charts():
                    break
                await asyncio.sleep(0.01)
        assert await service.charts() == []
        assert len(claims) >= 3
        assert present == [["brief"], ["brief"]]
        assert all(0 < seconds < 0.02 for seconds in claims)  # held for less than an interval
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

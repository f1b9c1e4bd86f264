"""The Redis event bus against a real redis-server: wire format, delivery between two buses,
recent-event streams, the cleanup lock; and the startup warning without Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from lightweight_charts_pro_backend.app import create_app, several_workers
from lightweight_charts_pro_backend.charts.events import ChartEvent
from lightweight_charts_pro_backend.config import Settings
from lightweight_charts_pro_backend.realtime.redis_bus import (
    RedisEventBus,
    decode_event,
    encode_event,
)

from ..servers import RedisServer, redis_server

pytestmark = pytest.mark.slow


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def buses(redis: RedisServer) -> AsyncIterator[tuple[RedisEventBus, RedisEventBus]]:
    first = RedisEventBus(redis.url, recent_events=3)
    second = RedisEventBus(redis.url, recent_events=3)
    await first.start()
    await second.start()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def upsert(version: int, chart: str = "c") -> ChartEvent:
    data = orjson.dumps([{"time": version, "value": 1.5}])
    return ChartEvent(chart, version, "upsert", pane_id=0, series_id="s", count=1, data=data)


def test_events_survive_the_wire_format_unchanged() -> None:
    events = [
        upsert(3),
        ChartEvent("c", 4, "options", options={"layout": {"text\ncolor": "#fff"}}),
        ChartEvent("c", 5, "delete", pane_id=1, series_id="s"),
        ChartEvent("c", 6, "chart_deleted"),
    ]
    for event in events:
        assert decode_event(encode_event(event, "me")) == ("me", event)


async def test_each_bus_hears_the_other_once_and_not_itself(
    buses: tuple[RedisEventBus, RedisEventBus],
) -> None:
    first, second = buses
    heard: dict[str, list[int]] = {"first": [], "second": [], "remote": []}
    done = asyncio.Event()

    def on_second(event: ChartEvent) -> None:
        heard["second"].append(event.version)
        if event.version == 4:
            done.set()

    first.subscribe("c", lambda e: heard["first"].append(e.version))
    second.subscribe("c", on_second)
    second.on_remote(lambda e: heard["remote"].append(e.version))
    for version in (1, 2, 3, 4):  # one channel, in publish order: 4 comes after any copy of 1-3
        await first.publish(upsert(version))
    async with asyncio.timeout(5):
        await done.wait()
    assert heard == {"first": [1, 2, 3, 4], "second": [1, 2, 3, 4], "remote": [1, 2, 3, 4]}


async def test_recent_events_are_capped_and_readable_from_any_bus(
    buses: tuple[RedisEventBus, RedisEventBus],
) -> None:
    first, second = buses
    for version in range(1, 6):
        await first.publish(upsert(version))
    frames = await second.recent("c", 2, 5)
    assert frames is not None
    assert [orjson.loads(f)["version"] for f in frames] == [3, 4, 5]
    assert await second.recent("c", 1, 5) is None  # version 2 fell out of the capped stream
    assert await second.recent("c", 5, 5) == []
    await first.publish(ChartEvent("c", 6, "chart_deleted"))
    assert await second.recent("c", 4, 5) is None


async def test_the_cleanup_lock_is_taken_once(buses: tuple[RedisEventBus, RedisEventBus]) -> None:
    first, second = buses
    assert await first.claim("ttl-cleanup", 0.3)
    assert not await second.claim("ttl-cleanup", 0.3)
    await asyncio.sleep(0.4)
    assert await second.claim("ttl-cleanup", 0.3)


async def test_several_workers_with_persistence_and_no_redis_warn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    assert several_workers()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        enable_persistence=True,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'charts.db'}",
    )
    app = create_app(settings)
    with caplog.at_level(logging.WARNING, logger="lightweight_charts_pro_backend.app"):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/health/ready")).status_code == 200
    assert any("live updates only" in r.getMessage() for r in caplog.records), caplog.text
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    assert not several_workers()

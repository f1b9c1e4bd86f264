"""Each worker's copy of a chart's annotations: loaded on first use, kept current by the changes
heard on the bus in sequence order, dropped when one is missed, checked against the database when
other workers may write it unheard."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from lightweight_charts_pro_backend.annotations import cache as cache_module
from lightweight_charts_pro_backend.annotations.cache import AnnotationCache
from lightweight_charts_pro_backend.annotations.events import AnnotationEvent
from lightweight_charts_pro_backend.annotations.index import AnnotationIndex
from lightweight_charts_pro_backend.annotations.repository import AnnotationQuery
from lightweight_charts_pro_backend.annotations.schemas import (
    AnnotationRecord,
    build_record,
    parse_draft,
)
from lightweight_charts_pro_backend.app import create_app
from lightweight_charts_pro_backend.charts.events import ChartEvent
from lightweight_charts_pro_backend.realtime.bus import InProcessEventBus

from ..conftest import BACKENDS, fresh_database_url
from .conftest import auth, marker, settings_for, trend_line


def stored(annotation_id: str, time: int, version: int = 1) -> AnnotationRecord:
    return build_record(
        "c", annotation_id, parse_draft(marker(time)), owner="alice", version=version,
        created_at=1.0, updated_at=2.0, max_bytes=1 << 20,
    )  # fmt: skip


def event(sequence: int, record: AnnotationRecord, op: str = "create") -> AnnotationEvent:
    return AnnotationEvent(
        "c", sequence, op, record.annotation_id, record.version,  # type: ignore[arg-type]
        data=None if op == "delete" else record.body,
    )  # fmt: skip


class Database:
    """The database as the cache sees it: a chart's annotations and their sequence number."""

    def __init__(self) -> None:
        self.index = AnnotationIndex()
        self.reads = 0
        self.queries = 0
        self.taken = asyncio.Event()
        self.hold = asyncio.Event()
        self.hold.set()

    def commit(self, record: AnnotationRecord | None, annotation_id: str = "") -> int:
        if record is None:
            self.index.remove(annotation_id)
        else:
            self.index.put(record)
        self.index.sequence += 1
        return self.index.sequence

    async def snapshot(self, chart_id: str) -> tuple[int, list[AnnotationRecord]]:
        sequence = self.index.sequence
        records = [r for r in map(self.index.get, [f"a{i}" for i in range(100)]) if r]
        self.taken.set()
        await self.hold.wait()
        return sequence, records

    async def sequence(self, chart_id: str) -> int:
        self.reads += 1
        return self.index.sequence

    async def sequences(self, chart_ids: list[str]) -> dict[str, int]:
        return {chart_id: self.index.sequence for chart_id in chart_ids}

    async def query(self, query: AnnotationQuery) -> list[bytes]:
        self.queries += 1
        return self.index.query(query)


EVERYTHING = AnnotationQuery("c", "alice")


@pytest.fixture
async def bus() -> AsyncIterator[InProcessEventBus]:
    bus = InProcessEventBus()
    yield bus
    await bus.close()


async def ids(cache: AnnotationCache) -> list[str]:
    return [orjson.loads(body)["annotationId"] for body in await cache.query(EVERYTHING)]


async def test_changes_heard_while_loading_and_after_are_applied_in_order(
    bus: InProcessEventBus,
) -> None:
    database = Database()
    cache = AnnotationCache(database, bus)
    first = stored("a1", 10)
    await bus.publish(event(database.commit(first), first))
    assert await ids(cache) == ["a1"]  # from the database, the copy loading meanwhile
    await cache.wait_loaded()
    cache.invalidate("c")
    database.hold.clear()
    database.taken.clear()
    await cache.query(EVERYTHING)
    await database.taken.wait()  # the snapshot is taken; these come before it is installed
    second, moved = stored("a2", 5), stored("a1", 30, version=2)
    await bus.publish(event(database.commit(second), second))
    await bus.publish(event(database.commit(moved), moved, "update"))
    database.hold.set()
    await cache.wait_loaded()
    assert cache.loaded("c")
    queries = database.queries
    assert await ids(cache) == ["a2", "a1"]
    await bus.publish(event(database.commit(None, "a2"), second, "delete"))
    assert await ids(cache) == ["a1"]
    assert database.queries == queries  # answered from the copy
    assert await cache.sequence("c") == 4 and database.reads == 0


async def test_a_change_ahead_of_its_predecessor_waits_for_it(
    bus: InProcessEventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database()
    cache = AnnotationCache(database, bus)
    await cache.query(EVERYTHING)
    await cache.wait_loaded()
    one, two, three = stored("a1", 1), stored("a2", 2), stored("a3", 3)
    for record in (one, two, three):
        database.commit(record)
    # Through a shared bus, another worker's change can arrive after a later one.
    await bus.publish(event(2, two))
    assert not cache.loaded("c")
    queries = database.queries
    assert await ids(cache) == ["a1", "a2", "a3"]  # not from the copy: it lacks a1
    assert database.queries == queries + 1
    await bus.publish(event(1, one))
    await bus.publish(event(3, three))
    await bus.publish(event(2, two))  # twice: ignored
    assert cache.loaded("c") and await ids(cache) == ["a1", "a2", "a3"]
    assert database.queries == queries + 1

    # One that never comes: after the wait, the copy is dropped and loaded again.
    monkeypatch.setattr(cache_module, "GAP_WAIT_SECONDS", 0.01)
    four, five = stored("a4", 4), stored("a5", 5)
    database.commit(four)
    await bus.publish(event(database.commit(five), five))
    await asyncio.sleep(0.02)
    assert await ids(cache) == ["a1", "a2", "a3", "a4", "a5"]
    await cache.query(EVERYTHING)
    await cache.wait_loaded()
    assert cache.loaded("c") and await cache.sequence("c") == 5


async def test_a_deleted_chart_a_reset_or_a_lost_change_drops_the_copy(
    bus: InProcessEventBus,
) -> None:
    database = Database()
    cache = AnnotationCache(database, bus)

    async def load() -> None:
        await cache.query(EVERYTHING)
        await cache.wait_loaded()
        assert cache.loaded("c")

    await load()
    await bus.publish(ChartEvent("c", 3, "chart_deleted"))
    assert not cache.loaded("c") and bus.listener_count("c") == 0
    await load()
    cache.invalidate_all()
    assert not cache.loaded("c")
    await load()
    cache.invalidate_charts(["other"])
    assert cache.loaded("c")
    cache.invalidate_charts(["c"])
    assert not cache.loaded("c")

    # A change committed elsewhere and never announced: the periodic check finds it.
    await load()
    database.commit(stored("a1", 1))
    assert await cache.check() == 1
    assert not cache.loaded("c")


async def test_unheard_writers_make_every_listing_compare_sequences(
    bus: InProcessEventBus,
) -> None:
    database = Database()
    healthy = True
    cache = AnnotationCache(database, bus, validate=True, bus_current=lambda: healthy)
    await cache.query(EVERYTHING)
    await cache.wait_loaded()
    await cache.query(EVERYTHING)
    assert database.reads == 0  # the bus delivers: the copy is trusted
    healthy = False
    database.commit(stored("a1", 1))  # by a worker this one does not hear
    assert await ids(cache) == ["a1"]
    assert database.reads == 1 and not cache.loaded("c")
    await cache.query(EVERYTHING)
    await cache.wait_loaded()
    assert await ids(cache) == ["a1"] and database.reads == 2 and cache.loaded("c")
    assert await cache.sequence("c") == 1 and database.reads == 3


async def test_copies_stay_within_their_budget(bus: InProcessEventBus) -> None:
    databases = {name: Database() for name in ("c", "d", "e")}

    class Charts(Database):
        async def snapshot(self, chart_id: str) -> tuple[int, list[AnnotationRecord]]:
            return await databases[chart_id].snapshot(chart_id)

    for database in databases.values():
        for i in range(10):
            database.commit(stored(f"a{i}", i))
    one_chart = databases["c"].index.nbytes
    cache = AnnotationCache(Charts(), bus, budget_bytes=2 * one_chart + 100)
    for chart_id in ("c", "d", "e"):
        await cache.query(AnnotationQuery(chart_id, "alice"))
        await cache.wait_loaded()
    assert not cache.loaded("c") and cache.loaded("d") and cache.loaded("e")
    assert cache.nbytes == 2 * one_chart

    small = AnnotationCache(Charts(), bus, budget_bytes=one_chart - 1)
    await small.query(EVERYTHING)
    await small.wait_loaded()
    await small.query(EVERYTHING)
    assert not small.loaded("c") and small.nbytes == 0  # too big: queried, not loaded again


# -------------------------------------------------------------------- on a real database


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    return fresh_database_url(request, str(request.param), tmp_path)


async def started(app: FastAPI, stack: AsyncExitStack) -> httpx.AsyncClient:
    await stack.enter_async_context(app.router.lifespan_context(app))
    transport = httpx.ASGITransport(app=app)
    return await stack.enter_async_context(
        httpx.AsyncClient(transport=transport, base_url="http://test")
    )


async def test_listings_from_the_copy_equal_those_of_the_database(database_url: str) -> None:
    alice, bob = auth("alice"), auth("bob")
    rng = random.Random(3)
    async with AsyncExitStack() as stack:
        app = create_app(settings_for(database_url, enable_auth=True))
        client = await started(app, stack)
        assert (await client.post("/api/charts/c", headers=alice)).status_code == 201
        url = "/api/charts/c/annotations"
        made: list[tuple[str, dict[str, str]]] = []
        for i in range(60):
            who = alice if i % 3 else bob
            start = rng.randrange(0, 50_000)
            body = (
                marker(start, visibility="private" if i % 4 == 0 else "chart")
                if i % 2
                else trend_line(start, start + rng.randrange(1, 5_000))
            )
            if i % 10 == 0:
                body = {"kind": "horizontal_line", "points": [{"price": 5.0}]}
            response = await client.post(url, json=body, headers=who)
            assert response.status_code == 201, response.text
            made.append((response.json()["annotationId"], who))

        starts = [rng.randrange(-5_000, 55_000) for _ in range(20)]
        windows = [(None, None)] + [(s, s + rng.randrange(1, 20_000)) for s in starts]

        async def listings() -> list[Any]:
            answers = []
            for start, end in windows:
                params = {k: v for k, v in (("from", start), ("to", end)) if v is not None}
                for who in (alice, bob):
                    response = await client.get(url, params=params, headers=who)
                    assert response.status_code == 200
                    answers.append(response.json()["annotations"])
            return answers

        cache = app.state.annotations._reader
        assert isinstance(cache, AnnotationCache) and not cache.loaded("c")
        from_database = await listings()
        await cache.wait_loaded()
        assert cache.loaded("c")
        assert await listings() == from_database

        # Changes of this process reach the copy as they are committed.
        for annotation_id, who in made[:12]:
            path = f"{url}/{annotation_id}"
            if rng.random() < 0.5:
                await client.delete(path, headers=who)
            else:
                current = (await client.get(path, headers=who)).json()
                changes: dict[str, Any] = {"version": current["version"], "text": "moved"}
                if current["kind"] == "marker":
                    changes["points"] = [{"time": rng.randrange(0, 50_000)}]
                if who is alice:
                    changes["visibility"] = "private"
                assert (await client.patch(path, json=changes, headers=who)).status_code == 200
        assert cache.loaded("c")
        from_copy = await listings()
        cache.invalidate_all()
        assert await listings() == from_copy  # the database agrees


async def test_workers_without_a_shared_bus_read_each_others_changes(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    async with AsyncExitStack() as stack:
        one = await started(create_app(settings_for(database_url)), stack)
        two = await started(create_app(settings_for(database_url)), stack)
        assert (await one.post("/api/charts/c")).status_code == 201
        url = "/api/charts/c/annotations"
        for client in (one, two):
            assert (await client.get(url)).json() == {"annotations": []}
        await asyncio.sleep(0.2)  # both copies loaded
        first = (await one.post(url, json=marker(5))).json()
        for client in (two, one, two):
            assert [a["annotationId"] for a in (await client.get(url)).json()["annotations"]] == [
                first["annotationId"]
            ]
        await two.delete(f"{url}/{first['annotationId']}")
        for client in (one, two, one):
            assert (await client.get(url)).json() == {"annotations": []}

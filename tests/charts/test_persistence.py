"""The persistence suite: the same tests against SQLite, PostgreSQL and MariaDB.

Each test gets an empty database on a real server (see ``tests/conftest.py``); "restart" means
building a new app on the same database, so nothing survives in memory.
"""

from __future__ import annotations

import asyncio
import bisect
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text

from lightweight_charts_pro_backend.app import create_app
from lightweight_charts_pro_backend.charts.events import ChartEvent
from lightweight_charts_pro_backend.charts.maintenance import DatabaseClaim
from lightweight_charts_pro_backend.charts.points import StagedPoints
from lightweight_charts_pro_backend.charts.repository import ChartsRepository
from lightweight_charts_pro_backend.charts.service import ChartsService
from lightweight_charts_pro_backend.charts.store import SeriesStore
from lightweight_charts_pro_backend.config import Settings
from lightweight_charts_pro_backend.database import Database
from lightweight_charts_pro_backend.realtime.bus import InProcessEventBus

pytestmark = pytest.mark.slow


def persistent_settings(url: str, **overrides: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, enable_persistence=True, database_url=url, **overrides
    )


JSON_BODY = {"Content-Type": "application/json"}


@asynccontextmanager
async def serve(
    url: str | None, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """An app with its lifespan running (persistent on ``url``, in memory when None)."""
    if url is None:
        settings = Settings(_env_file=None, **overrides)  # type: ignore[call-arg]
    else:
        settings = persistent_settings(url, **overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=JSON_BODY
        ) as client:
            yield client, app


@asynccontextmanager
async def service_on(
    url: str, cache_bytes: int = 256 << 20, validate_reads: bool = False
) -> AsyncIterator[ChartsService]:
    database = Database.from_settings(persistent_settings(url))
    await database.create_tables()
    service = ChartsService(
        InProcessEventBus(),
        repository=ChartsRepository(database),
        cache_bytes=cache_bytes,
        validate_reads=validate_reads,
    )
    try:
        yield service
    finally:
        await service.close()
        await database.close()


def body(value: object) -> bytes:
    return orjson.dumps(value)


SERIES: dict[str, tuple[str, list[dict[str, Any]], dict[str, Any]]] = {
    "line": (
        "line",
        [
            {"time": 1_700_000_000, "value": 1.5, "color": "#ff0000"},
            {"time": 1_700_000_060, "value": -2.25},
            {"time": 1_700_000_120},  # whitespace
        ],
        {"lineWidth": 2, "title": "Prix €"},
    ),
    "area": (
        "area",
        [{"time": 1_700_000_000, "value": 3, "lineColor": "#00f", "topColor": "rgba(0,0,255,.4)"}],
        {},
    ),
    "baseline": (
        "baseline",
        [{"time": "2024-01-02", "value": 0.5}, {"time": "2024-01-03", "value": -0.5}],
        {"baseValue": {"type": "price", "price": 0}},
    ),
    "histogram": ("histogram", [{"time": 1_700_000_000_000, "value": 10, "color": "#26a69a"}], {}),
    "bar": (
        "bar",
        [{"time": 1_700_000_000, "open": 1, "high": 2, "low": 0.5, "close": 1.5, "color": "red"}],
        {"thinBars": True},
    ),
    "candles": (
        "candlestick",
        [
            {
                "time": {"year": 2024, "month": 5, "day": 1},
                "open": 10,
                "high": 12.5,
                "low": 9.75,
                "close": 11,
                "wickColor": "#111",
                "borderColor": "#222",
            },
            {"time": "2024-05-02T00:00:00Z", "open": 11, "high": 11, "low": 11, "close": 11},
        ],
        {"upColor": "#26a69a"},
    ),
    "custom": (
        "custom",
        [
            {
                "time": 1_700_000_000,
                "customValues": {"nested": [1, 2, {"x": "},{"}], "label": "ünï"},
                "anything": None,
            }
        ],
        {"renderer": "boxes"},
    ),
    "minutes": (
        "candlestick",
        [
            {"time": 1_700_000_000 + 60 * i}
            if i % 11 == 5
            else {
                "time": 1_700_000_000 + 60 * i,
                "open": 100 + i / 4,
                "high": 101.5 + i / 4,
                "low": 99.25 + i / 4,
                "close": 100 + i / 4 + (i % 5 - 2) / 4,
                **({"color": "#ff0000"} if i % 7 == 3 else {}),
                **({"volume": i * 3} if i % 2 else {}),
            }
            for i in range(300)
        ],
        {},
    ),
}


async def write_all_types(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/charts/demo", content=body({"layout": {"bg": "#000"}}))
    assert response.status_code == 201
    for pane, (series_id, (series_type, data, options)) in enumerate(SERIES.items()):
        response = await client.post(
            f"/api/charts/demo/data/{series_id}",
            content=body(
                {"paneId": pane % 3, "seriesType": series_type, "data": data, "options": options}
            ),
        )
        assert response.status_code == 200, response.text
        assert response.json()["count"] == len(data)


async def snapshot(client: httpx.AsyncClient) -> dict[str, Any]:
    """Everything a client can read about the demo chart."""
    chart = await client.get("/api/charts/demo")
    assert chart.status_code == 200, chart.text
    state: dict[str, Any] = {"chart": chart.json()}
    for pane, series_id in enumerate(SERIES):
        for path in (
            f"/api/charts/demo/data/{pane % 3}/{series_id}",
            f"/api/charts/demo/history/{pane % 3}/{series_id}?count=2",
            f"/api/charts/demo/history/{pane % 3}/{series_id}?before_time=1700000060&count=5",
            f"/api/charts/demo/history/{pane % 3}/{series_id}?after_time=1700000000&count=5",
        ):
            response = await client.get(path)
            assert response.status_code == 200, response.text
            state[path] = response.json()
    for pane, series_id in enumerate(SERIES):
        for query in ("resolution=5&count=50", "resolution=1D&count=5", "range=1"):
            if series_id == "custom" and query != "range=1":
                continue
            path = f"/api/charts/demo/history/{pane % 3}/{series_id}?{query}"
            if query == "range=1":
                path = f"/api/charts/demo/range/{pane % 3}/{series_id}?max_points=20"
            response = await client.get(path)
            state[path] = (response.status_code, response.json())
    listing = (await client.get("/api/charts")).json()["charts"]
    state["listing"] = [{k: v for k, v in c.items() if k != "updatedAt"} for c in listing]
    return state


async def test_round_trip_of_every_series_type_matches_memory_mode(database_url: str) -> None:
    async with serve(None) as (client, _):
        await write_all_types(client)
        expected = await snapshot(client)
    async with serve(database_url) as (client, _):
        await write_all_types(client)
        assert await snapshot(client) == expected
    async with serve(database_url) as (client, app):  # restart: everything from the database
        assert app.state.charts.loaded_charts() == 0
        assert await snapshot(client) == expected
        await app.state.charts.wait_loaded()
        assert await snapshot(client) == expected  # and again from the loaded stores
    custom = expected["/api/charts/demo/data/0/custom"]["data"][0]
    assert custom["customValues"] == {"nested": [1, 2, {"x": "},{"}], "label": "ünï"}
    assert expected["chart"]["panes"]["2"]["candles"]["data"][0]["wickColor"] == "#111"


async def test_restart_keeps_versions_updates_and_deletions(database_url: str) -> None:
    async with serve(database_url) as (client, _):
        await client.post("/api/charts/a", content=b'{"title": "A"}')
        await client.post("/api/charts/b")
        for t in range(5):
            await client.post(
                "/api/charts/a/data/s",
                content=body({"seriesType": "line", "data": [{"time": t, "value": t}]}),
            )
        patch = await client.patch(
            "/api/charts/a/data/s",
            content=body({"data": [{"time": 4, "value": 40}, {"time": 9, "value": 9}]}),
        )
        assert patch.json() == {"seriesId": "s", "count": 2, "totalCount": 2, "version": 7}
        await client.post(
            "/api/charts/a/data/gone", content=body({"seriesType": "line", "data": []})
        )
        assert (await client.delete("/api/charts/a/data/0/gone")).status_code == 204
        assert (await client.delete("/api/charts/b")).status_code == 204
        version = 9  # options, 5 replaces, 1 patch, 1 replace, 1 delete
    async with serve(database_url) as (client, app):
        chart = await app.state.charts.get_chart_or_raise("a")
        assert chart.version == version
        assert (await client.get("/api/charts/b")).status_code == 404
        assert (await client.get("/api/charts/a/data/0/gone")).status_code == 404
        data = (await client.get("/api/charts/a/data/0/s")).json()["data"]
        assert data == [{"time": 4, "value": 40}, {"time": 9, "value": 9}]
        listing = (await client.get("/api/charts")).json()["charts"]
        assert [(c["chartId"], c["options"], c["seriesCount"]) for c in listing] == [
            ("a", {"title": "A"}, 1)
        ]
        events: list[ChartEvent] = []
        app.state.bus.subscribe("a", events.append)
        await client.patch("/api/charts/a/data/s", content=body({"data": [{"time": 10}]}))
        await client.patch("/api/charts/a/data/s", content=body({"data": []}))
        assert [(e.op, e.version) for e in events] == [
            ("upsert", version + 1),
            ("upsert", version + 2),
        ]
    async with serve(database_url) as (client, app):
        assert (await app.state.charts.get_chart_or_raise("a")).version == version + 2


CANDLES = [
    {"time": 1000 + 60 * i, "open": 10, "high": 11, "low": 9, "close": 10.5} for i in range(50)
]


async def test_refused_writes_leave_the_stored_series_unchanged(database_url: str) -> None:
    async with serve(database_url) as (client, _):
        await client.post(
            "/api/charts/c/data/k", content=body({"seriesType": "candlestick", "data": CANDLES})
        )
        before = (await client.get("/api/charts/c/data/0/k")).json()
        bad_bar = [*CANDLES[:3], {"time": 5000, "open": 1, "high": 0.5, "low": 0, "close": 1}]
        duplicate = [CANDLES[0], CANDLES[1], CANDLES[0]]
        not_number = [{"time": 5000, "open": "1", "high": 2, "low": 0, "close": 1}]
        for method, data, status in (
            ("POST", bad_bar, 400),
            ("POST", duplicate, 400),
            ("PATCH", bad_bar, 400),
            ("PATCH", duplicate, 400),
            ("PATCH", not_number, 400),
        ):
            response = await client.request(
                method,
                "/api/charts/c/data/k",
                content=body({"seriesType": "candlestick", "data": data}),
            )
            assert response.status_code == status, response.text
        conflict = await client.patch(
            "/api/charts/c/data/k", content=body({"seriesType": "line", "data": []})
        )
        assert conflict.status_code == 409
        assert (await client.get("/api/charts/c/data/0/k")).json() == before
    async with serve(database_url) as (client, _):
        assert (await client.get("/api/charts/c/data/0/k")).json() == before


@pytest.mark.parametrize("fault", ["bar", "type", "value"])
async def test_a_large_replace_refused_late_stores_nothing(database_url: str, fault: str) -> None:
    """A replace big enough to be checked while it is written (chunk by chunk, on PostgreSQL),
    refused by its last chunk: 400 naming the point, the stored series and the chart's version
    unchanged, and the connection fit for the next write."""
    size = 3 * StagedPoints.CHUNK + 7
    candles = [
        {"time": 10_000 + 60 * i, "open": 10, "high": 11, "low": 9, "close": 10.5}
        for i in range(size)
    ]
    async with serve(database_url) as (client, app):
        first = await client.post(
            "/api/charts/c/data/k", content=body({"seriesType": "candlestick", "data": CANDLES})
        )
        version = first.json()["version"]
        before = (await client.get("/api/charts/c/data/0/k")).json()
        bad = size - 3
        candles[bad] = {
            "bar": {**candles[bad], "low": 12},
            "type": {**candles[bad], "close": "10"},
            "value": {"time": candles[bad]["time"], "value": 1},
        }[fault]
        refused = await client.post(
            "/api/charts/c/data/k", content=body({"seriesType": "candlestick", "data": candles})
        )
        assert refused.status_code == 400, refused.text
        assert f"data[{bad}]" in refused.json()["detail"]
        assert (await client.get("/api/charts/c/data/0/k")).json() == before
        assert (await app.state.charts.get_chart_or_raise("c")).version == version
        candles[bad] = {**candles[bad - 1], "time": candles[bad]["time"]}
        written = await client.post(
            "/api/charts/c/data/k", content=body({"seriesType": "candlestick", "data": candles})
        )
        assert written.status_code == 200, written.text
        assert written.json()["version"] == version + 1
    async with serve(database_url) as (client, _):
        stored = (await client.get(f"/api/charts/c/data/0/k?count={size}")).json()
        assert stored["totalCount"] == size
        assert [p["time"] for p in stored["data"][-3:]] == [c["time"] for c in candles[-3:]]


async def _refuse_time_in_database(database: Database, refused: int) -> None:
    """Make the database itself reject a point, so a write fails after it has started."""
    async with database.transaction(write=True) as conn:
        if database.dialect == "sqlite":
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON points "
                    f"WHEN NEW.time = {refused} BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            await conn.execute(
                text(f"ALTER TABLE points ADD CONSTRAINT refuse CHECK (time <> {refused})")
            )


@pytest.mark.parametrize("size", [10, 20_000])
async def test_a_write_failing_inside_the_database_keeps_the_previous_series(
    database_url: str, size: int
) -> None:
    async with serve(database_url) as (client, app):
        await client.post(
            "/api/charts/c/data/k", content=body({"seriesType": "candlestick", "data": CANDLES})
        )
        before = (await client.get("/api/charts/c/data/0/k")).json()
        await _refuse_time_in_database(app.state.database, 999_999)

        def bar(time: int) -> dict[str, Any]:
            return {"time": time, "open": 1, "high": 1, "low": 1, "close": 1}

        refused = [bar(900_000 + i) for i in range(size - 1)] + [bar(999_999)]
        for method, data in (
            ("POST", refused),  # replace
            ("PATCH", refused),  # append
            ("PATCH", [CANDLES[0], *refused]),  # upsert
        ):
            extra = {"seriesType": "candlestick"} if method == "POST" else {}
            response = await client.request(
                method, "/api/charts/c/data/k", content=body({"data": data, **extra})
            )
            assert response.status_code == 500, response.text
            assert (await client.get("/api/charts/c/data/0/k")).json() == before
        ok = await client.patch("/api/charts/c/data/k", content=body({"data": [CANDLES[-1]]}))
        assert ok.status_code == 200
        assert ok.json()["totalCount"] == len(CANDLES)
    async with serve(database_url) as (client, _):
        assert (await client.get("/api/charts/c/data/0/k")).json() == before


def _reference(points: dict[int, float], op: str, at: int, count: int) -> list[int]:
    times = sorted(points)
    if op == "before":
        chosen = [t for t in times if t < at][-count:]
    elif op == "after":
        chosen = [t for t in times if t > at][:count]
    else:
        chosen = times[-count:]
    return chosen


async def test_history_from_the_database_equals_history_from_memory(database_url: str) -> None:
    """Random writes; every history query answered by keyset queries (nothing in memory) is
    byte for byte what the in-memory store answers."""
    rng = random.Random(7)
    memory = ChartsService(InProcessEventBus())
    async with service_on(database_url, cache_bytes=0) as stored:
        truth: dict[int, float] = {}
        times = list(range(0, 3000 * 10, 10))
        first = [{"time": t, "value": float(t)} for t in times[:1500]]
        for service in (memory, stored):
            await service.replace_series("h", 0, "s", "line", [dict(p) for p in first])
        truth.update({p["time"]: p["value"] for p in first})
        for step in range(24):
            kind = step % 4
            if kind == 0:  # append
                base = max(truth) + 10
                batch = [{"time": base + 10 * i, "value": step} for i in range(rng.randint(1, 600))]
            elif kind == 1:  # correct existing bars
                batch = [{"time": t, "value": -step} for t in rng.sample(sorted(truth), 40)]
            elif kind == 2:  # insert between existing bars
                batch = [{"time": t * 10 + 5, "value": step} for t in rng.sample(range(1500), 30)]
            else:  # large mixed batch (temporary-table path on PostgreSQL)
                batch = [
                    {"time": t, "value": step}
                    for t in sorted(set(rng.sample(range(0, max(truth) + 7000, 3), 6000)))
                ]
            for service in (memory, stored):
                result = await service.upsert_points("h", 0, "s", [dict(p) for p in batch])
            truth.update({p["time"]: p["value"] for p in batch})
            assert result.total_count == len(truth)
            for _ in range(12):
                op = rng.choice(["before", "after", "newest"])
                at = rng.randint(-50, max(truth) + 50)
                count = rng.choice([1, 7, 500, 10_000])
                args: dict[str, Any] = {"count": count}
                if op != "newest":
                    args[f"{op}_time"] = at
                want = await memory.history("h", 0, "s", **args)
                got = await stored.history("h", 0, "s", **args)
                assert got == want, (op, at, count)
                assert [p["time"] for p in orjson.loads(got.data)] == _reference(
                    truth, op, at, count
                )
        assert stored.cache is not None and stored.cache.used == 0


async def test_series_load_lazily_and_the_least_recently_used_leave_memory(
    database_url: str,
) -> None:
    points = [{"time": t, "value": 1.0} for t in range(2000)]
    async with service_on(database_url) as service:
        for name in ("a", "b", "c"):
            await service.replace_series("lru", 0, name, "line", [dict(p) for p in points])
    async with service_on(database_url) as service:
        assert service.loaded_charts() == 0
        chart = await service.get_chart_or_raise("lru")
        assert all(s.store is None for s in chart.series.values())  # nothing loaded eagerly
        size = 0
        for name in ("a", "b"):
            await service.history("lru", 0, name, before_time=1000, count=10)
            await service.wait_loaded()
            store = chart.series[(0, name)].store
            assert store is not None
            size = store.nbytes
        assert service.cache is not None
        service.cache.budget = 2 * size + size // 2  # room for two
        await service.history("lru", 0, "a", count=5)  # a is now more recent than b
        await service.history("lru", 0, "c", count=5)
        await service.wait_loaded()
        loaded = {name for (_, name), s in chart.series.items() if s.store is not None}
        assert loaded == {"a", "c"}
        assert service.cache.used <= service.cache.budget
        chunk = await service.history("lru", 0, "b", before_time=1500, count=3)
        assert (chunk.start, chunk.end, chunk.total) == (1497, 1500, 2000)

        assert service._repo is not None
        paged = SeriesStore()
        async for page in service._repo.load_points(chart.series[(0, "a")].key, page=700):
            assert len(page) in (700, 600)
            paged.upsert(page)
        assert paged.all_json() == orjson.dumps(points)


async def test_idle_charts_expire_from_database_and_memory(database_url: str) -> None:
    now = [1_000_000.0]
    database = Database.from_settings(persistent_settings(database_url))
    await database.create_tables()
    bus = InProcessEventBus()
    service = ChartsService(bus, repository=ChartsRepository(database), clock=lambda: now[0])
    statements: list[str] = []

    @event.listens_for(database.engine.sync_engine, "before_cursor_execute")
    def _record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split()[0].upper())

    try:
        for chart_id in ("kept", "idle"):
            await service.replace_series(chart_id, 0, "s", "line", [{"time": 1, "value": 1}])
        events: list[ChartEvent] = []
        bus.subscribe("idle", events.append)
        now[0] += 3000
        statements.clear()
        for _ in range(50):
            await service.history("kept", 0, "s", count=1)
            await service.get_chart("kept")
        assert "UPDATE" not in statements  # reads are recorded in memory only
        assert await service.flush_access() == 1
        assert statements.count("UPDATE") == 1
        now[0] += 3000  # "kept" was read 3000 s ago, "idle" untouched for 6000 s
        assert await service.expire_idle(ttl_seconds=4000) == ["idle"]
        assert [e.op for e in events] == ["chart_deleted"]
        assert service.loaded_charts() == 1
        assert [c.chart_id for c in await service.charts()] == ["kept"]
        assert await service.expire_idle(ttl_seconds=4000) == []
        now[0] += 5000
        assert await service.expire_idle(ttl_seconds=4000) == ["kept"]
        assert await service.charts() == []
    finally:
        await service.close()
        await database.close()


async def test_the_cleanup_task_runs_on_its_interval(database_url: str) -> None:
    async with serve(
        database_url, chart_ttl_hours=0.2 / 3600, cleanup_interval_minutes=0.1 / 60
    ) as (client, app):
        await client.post("/api/charts/short-lived")
        for _ in range(100):  # bounded: 100 x 50 ms; listing does not count as reading a chart
            if not (await client.get("/api/charts")).json()["charts"]:
                break
            await asyncio.sleep(0.05)
        assert (await client.get("/api/charts")).json()["charts"] == []
        assert (await client.get("/api/charts/short-lived")).status_code == 404
        assert app.state.charts.loaded_charts() == 0


async def test_readiness_reports_the_database(database_url: str) -> None:
    async with serve(database_url) as (client, _):
        response = await client.get("/health/ready")
        assert response.status_code == 200
        assert response.json()["checks"]["database"]["status"] == "ok"


async def test_asyncmy_driver_round_trip(request: pytest.FixtureRequest, tmp_path: Any) -> None:
    from tests.conftest import fresh_database_url

    url = fresh_database_url(request, "mariadb-asyncmy", tmp_path)
    assert url.startswith("mysql+asyncmy://")
    async with serve(None) as (client, _):
        await write_all_types(client)
        expected = await snapshot(client)
    async with serve(url) as (client, _):
        await write_all_types(client)
    async with serve(url) as (client, _):
        assert await snapshot(client) == expected


async def test_reads_racing_writes_answer_from_one_state(database_url: str) -> None:
    """History from the database while another task inserts points between existing ones (which
    moves positions): every chunk equals the answer of one of the states the series went
    through, never a mix of two."""
    rng = random.Random(11)
    times = list(range(0, 20_000, 10))
    states = [list(times)]
    async with service_on(database_url, cache_bytes=0) as service:
        await service.replace_series(
            "race", 0, "s", "line", [{"time": t, "value": t} for t in times]
        )
        answers: list[tuple[int, Any]] = []

        async def write() -> None:
            for _ in range(25):
                new = sorted(set(rng.sample(range(1, 20_000), 40)) - set(states[-1]))
                await service.upsert_points("race", 0, "s", [{"time": t, "value": t} for t in new])
                states.append(sorted(states[-1] + new))

        async def read(seed: int) -> None:
            reader = random.Random(seed)
            for _ in range(40):
                at = reader.randrange(0, 20_000)
                answers.append((at, await service.history("race", 0, "s", before_time=at, count=7)))

        await asyncio.gather(write(), read(1), read(2))

    def expected(state: list[int], at: int) -> tuple[int, int, int, list[int]]:
        end = bisect.bisect_left(state, at)
        start = max(0, end - 7)
        return start, end, len(state), state[start:end]

    for at, chunk in answers:
        got = (chunk.start, chunk.end, chunk.total, [p["time"] for p in orjson.loads(chunk.data)])
        assert any(got == expected(state, at) for state in states), (at, got)


async def test_a_write_from_another_process_is_noticed_at_the_next_write(
    database_url: str,
) -> None:
    async with service_on(database_url) as first, service_on(database_url) as second:
        await first.replace_series("shared", 0, "s", "line", [{"time": 1, "value": 1}])
        assert (await second.get_chart_or_raise("shared")).version == 1
        await first.replace_series("shared", 0, "t", "line", [{"time": 1, "value": 2}])
        await second.upsert_points("shared", 0, "s", [{"time": 2, "value": 3}])
        chart = await second.get_chart_or_raise("shared")
        assert chart.version == 3
        assert set(chart.series) == {(0, "s"), (0, "t")}
        chunk = await second.history("shared", 0, "s")
        assert orjson.loads(chunk.data) == [{"time": 1, "value": 1}, {"time": 2, "value": 3}]
        await second.wait_loaded()

        # told by an event (the cross-process bus), a reader need not wait for its next write
        await first.upsert_points("shared", 0, "s", [{"time": 3, "value": 4}])
        assert (await second.history("shared", 0, "s")).total == 2
        second.invalidate("shared")
        assert (await second.history("shared", 0, "s")).total == 3
        assert (await second.get_chart_or_raise("shared")).version == 4


async def test_changes_of_another_process_apply_in_order_or_invalidate(
    database_url: str,
) -> None:
    async with (
        service_on(database_url) as first,
        service_on(database_url, validate_reads=True) as second,
    ):
        heard: list[ChartEvent] = []
        first._bus.subscribe("shared", heard.append)
        points = [{"time": t, "value": t / 2} for t in range(0, 600, 60)]
        await first.replace_series("shared", 0, "s", "line", points)
        await second.get_series("shared", 0, "s")
        await second.wait_loaded()
        chart = await second.get_chart_or_raise("shared")
        store = chart.series[(0, "s")].store
        assert store is not None and chart.version == 1

        # the next versions, in order: applied to the series in memory, nothing reloaded
        await first.upsert_points("shared", 0, "s", [{"time": "1970-01-01T00:10:00Z", "value": 9}])
        await first.upsert_points("shared", 0, "s", [{"time": 30, "value": 0.25}])
        for event in heard[1:]:
            second.observe(event)
        assert not chart.stale and chart.version == 3
        assert chart.series[(0, "s")].store is store
        expected = await first.history("shared", 0, "s", count=100)
        got = await second.history("shared", 0, "s", count=100)
        assert got.data == expected.data and got.total == expected.total == 12
        before = await second.history("shared", 0, "s", before_time=60, count=5)
        assert orjson.loads(before.data) == [{"time": 0, "value": 0.0}, {"time": 30, "value": 0.25}]
        assert (before.start, before.end) == (0, 2)
        assert chart.series[(0, "s")].store is store  # checked against the database, kept

        # a gap (version 5 before 4) is not applied: the chart is reloaded, as the database has it
        await first.upsert_points("shared", 0, "s", [{"time": 700, "value": 1}])
        await first.upsert_points("shared", 0, "s", [{"time": 760, "value": 2}])
        second.observe(heard[-1])
        assert chart.stale
        got = await second.history("shared", 0, "s", count=100)
        assert got.total == 14 and orjson.loads(got.data)[-1] == {"time": 760, "value": 2}
        second.observe(heard[-2])  # the late one changes nothing any more
        assert (await second.get_chart_or_raise("shared")).version == 5


async def test_one_process_at_a_time_holds_the_cleanup_lock(database_url: str) -> None:
    databases = [Database.from_settings(persistent_settings(database_url)) for _ in range(2)]
    first, second = (DatabaseClaim(database) for database in databases)
    try:
        assert await first(60.0)
        if databases[0].dialect == "sqlite":
            assert await second(60.0)  # no locks to share: every process runs the pass
            return
        assert not await second(60.0)
        assert await first(60.0)  # still the holder
        await first.close()  # a worker that exits hands the pass over
        assert await second(60.0)
        assert not await first(60.0)
    finally:
        await first.close()
        await second.close()
        for database in databases:
            await database.close()


async def test_a_new_worker_warms_the_most_recently_used_series_first(database_url: str) -> None:
    async with service_on(database_url) as first:
        for name in ("old", "recent"):
            await first.replace_series(name, 0, "s", "line", [{"time": 1, "value": 1}])
        await first.history("recent", 0, "s")
        assert await first.flush_access() == 1  # the read; writes record their own time
    async with service_on(database_url) as fresh:
        assert await fresh.warm(10.0, charts=1) == 1
        recent = await fresh.get_chart_or_raise("recent")
        assert recent.series[(0, "s")].store is not None  # in memory before the first read
        assert fresh.loaded_charts() == 1  # "old" was left alone
        assert (await fresh.get_chart_or_raise("old")).series[(0, "s")].store is None
        assert await fresh.warm(0.0) == 0


async def test_markets_and_bars_survive_a_restart(database_url: str) -> None:
    market = {"timezone": "Europe/London", "session": "0800-1630:23456", "symbol": "VOD"}
    start = 1_719_820_800  # Monday 2024-07-01 08:00 London (BST)
    data = [
        {"time": start + 60 * i, "value": float(i % 97), "color": f"#{i:06x}"} for i in range(3000)
    ]
    body = {"seriesType": "line", "data": data, "market": market, "aggregation": "max"}
    fix = {
        "data": [
            {"time": start + 600, "value": 500.0, "color": "#fff"},
            {"time": start + 3000 * 60, "value": 1.0},
        ]
    }
    paths = [f"/api/charts/c/history/0/s?resolution={r}&count=10000" for r in ("15", "1D", "1W")]

    async def bars(client: httpx.AsyncClient) -> list[Any]:
        return [(await client.get(path)).json() for path in paths]

    async with serve(None) as (memory, _):
        await memory.post("/api/charts/c/data/s", json=body)
        expected = await bars(memory)
        await memory.patch("/api/charts/c/data/s", json=fix)
        corrected = await bars(memory)
    assert expected[1]["totalCount"] == 3 and expected[0]["resolution"] == "15"
    async with serve(database_url) as (client, _):
        assert (await client.post("/api/charts/c/data/s", json=body)).status_code == 200
    async with serve(database_url, series_cache_mb=0) as (client, _):  # points stay in the db
        series = (await client.get("/api/charts/c/data/0/s")).json()
        assert series["market"] == market and series["aggregation"] == "max"
        assert await bars(client) == expected
        assert (await client.patch("/api/charts/c/data/s", json=fix)).status_code == 200
        assert await bars(client) == corrected
    async with serve(database_url) as (client, _):
        assert await bars(client) == corrected

"""Prometheus metrics in process: templates, several apps, settings, feature hooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from lightweight_charts_pro_backend import app as development
from lightweight_charts_pro_backend import app_production as production
from lightweight_charts_pro_backend.config import Settings
from lightweight_charts_pro_backend.metrics import Metrics, close_reason, status_class

from .helpers import samples, total

CANDLES = [{"time": 1_700_000_000 + 60 * i, "value": float(i)} for i in range(50)]


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[arg-type]


async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def scrape(client: httpx.AsyncClient, path: str = "/metrics") -> str:
    reply = await client.get(path)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return reply.text


async def test_labels_are_route_templates_never_raw_paths() -> None:
    async for client in client_for(production.create_app(settings())):
        for chart in ("alpha", "beta", "gamma"):
            await client.post(f"/api/charts/{chart}")
        await client.get("/api/charts/alpha")
        await client.get("/api/charts/zeta")
        await client.get("/totally/unknown/path-123")
        text = await scrape(client)
    route = "/api/charts/{chart_id}"
    assert total(text, "http_requests_total", method="POST", route=route, status="2xx") == 3
    assert total(text, "http_requests_total", method="GET", route=route, status="2xx") == 1
    assert total(text, "http_requests_total", method="GET", route=route, status="4xx") == 1
    assert total(text, "http_requests_total", route="unmatched", status="4xx") == 1
    assert total(text, "http_request_duration_seconds_count", route=route) == 5
    assert samples(text, "http_requests_in_progress", method="GET") == [1.0]  # the scrape
    for raw in ("alpha", "beta", "zeta", "path-123"):
        assert raw not in text


async def test_requests_are_counted_with_access_lines_off() -> None:
    async for client in client_for(production.create_app(settings(log_level="WARNING"))):
        body = {"paneId": 0, "seriesType": "line", "data": CANDLES}
        assert (await client.post("/api/charts/c1/data/s1", json=body)).is_success
        for _ in range(3):
            await client.get("/api/charts/c1/history/0/s1?count=5")
        text = await scrape(client)
    route = "/api/charts/{chart_id}/history/{pane_id}/{series_id}"
    assert total(text, "http_requests_total", route=route, status="2xx") == 3
    assert total(text, "history_chunk_points_sum") == 15
    assert samples(text, "http_requests_in_progress", method="GET") == [1.0]  # the scrape
    assert samples(text, "http_requests_in_progress", method="POST") == [0.0]


async def test_rate_limited_clients_are_counted() -> None:
    async for client in client_for(production.create_app(settings(rate_limit_per_minute=100))):
        assert total(await scrape(client), "rate_limit_clients") == 0  # /metrics is not limited
        await client.get("/api/charts")
        assert total(await scrape(client), "rate_limit_clients") == 1
    async for client in client_for(production.create_app(settings(enable_rate_limiting=False))):
        await client.get("/api/charts")
        assert total(await scrape(client), "rate_limit_clients") == 0


async def test_apps_in_one_process_count_separately() -> None:
    first = production.create_app(settings())
    second = production.create_app(settings())
    async for one in client_for(first):
        async for two in client_for(second):
            for _ in range(3):
                await one.get("/health")
            await two.get("/health")
            assert total(await scrape(one), "http_requests_total", route="/health") == 3
            assert total(await scrape(two), "http_requests_total", route="/health") == 1


async def test_history_and_store_metrics() -> None:
    async for client in client_for(production.create_app(settings())):
        body = {"paneId": 0, "seriesType": "line", "data": CANDLES}
        assert (await client.post("/api/charts/c1/data/s1", json=body)).status_code == 200
        assert (await client.post("/api/charts/c2/data/s1", json=body)).status_code == 200
        await client.get("/api/charts/c1/history/0/s1?count=20")
        await client.post("/api/charts/c1/history", json={"seriesId": "s1", "count": 7})
        await client.get("/api/charts/c1/history/0/missing")
        text = await scrape(client)
    assert total(text, "history_requests_total", transport="rest") == 2
    assert total(text, "history_chunk_points_count") == 2
    assert total(text, "history_chunk_points_sum") == 27
    assert total(text, "charts") == 2
    assert total(text, "series_points") == 100


@pytest.mark.parametrize(("value", "served"), [("false", False), ("true", True)])
async def test_enable_metrics_is_read_from_the_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, served: bool
) -> None:
    monkeypatch.delenv("ENABLE_METRICS", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"ENABLE_METRICS={value}\nMETRICS_PATH=/internal/metrics\n")
    async for client in client_for(production.create_app(Settings())):
        reply = await client.get("/internal/metrics")
        assert (reply.status_code == 200) is served
        assert (await client.get("/metrics")).status_code == 404


async def test_the_development_app_has_no_metrics_endpoint() -> None:
    async for client in client_for(development.create_app(settings())):
        assert (await client.get("/metrics")).status_code == 404


def test_feature_hooks() -> None:
    metrics = Metrics()
    metrics.rate_limited("history")
    metrics.rate_limited("history")
    metrics.history_served("websocket", 500)
    with metrics.db_query("points_before"):
        pass
    with pytest.raises(KeyError), metrics.db_query("insert_points"):
        raise KeyError("failed statements are timed too")
    metrics.websocket_opened()
    metrics.websocket_message_sent(3)
    metrics.websocket_closed("slow_consumer")
    text = metrics.render().decode()
    assert total(text, "rate_limited_total", scope="history") == 2
    assert total(text, "history_requests_total", transport="websocket") == 1
    assert total(text, "database_query_duration_seconds_count", operation="points_before") == 1
    assert total(text, "database_query_duration_seconds_count", operation="insert_points") == 1
    assert total(text, "websocket_connections") == 0
    assert total(text, "websocket_messages_sent_total") == 3
    assert total(text, "websocket_disconnects_total", reason="slow_consumer") == 1


def test_a_disabled_instance_ignores_every_hook() -> None:
    metrics = Metrics(enabled=False)
    metrics.request_started("GET")
    metrics.request_finished("GET", "/x", 200, 0.1)
    metrics.history_served("rest", 5)
    metrics.rate_limited("api")
    metrics.websocket_opened()
    metrics.websocket_closed("client")
    metrics.track_store(lambda: (1, 2))
    metrics.refresh_gauges()
    assert metrics.render() == b""


def test_engine_statements_are_timed_by_verb() -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine("sqlite://")
    metrics = Metrics()
    metrics.instrument_engine(engine)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT 1"))
    text = metrics.render().decode()
    assert total(text, "database_query_duration_seconds_count", operation="select") == 1


def test_label_helpers() -> None:
    assert [status_class(s) for s in (101, 204, 302, 404, 503, 499)] == [
        "1xx",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "4xx",
    ]
    assert close_reason(1001) == "going_away" and close_reason(4003) == "application"
    assert close_reason(3000) == "other"


async def test_rate_limit_refusals_are_counted() -> None:
    app = production.create_app(settings(rate_limit_per_minute=2, enable_rate_limiting=True))
    async for client in client_for(app):
        statuses = [(await client.get("/api/charts")).status_code for _ in range(4)]
        assert statuses == [200, 200, 429, 429]
        text = await scrape(client)
    assert total(text, "rate_limited_total", scope="api") == 2
    assert total(text, "http_requests_total", status="4xx") == 2


async def test_database_statements_are_timed_with_persistence_on(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'charts.db'}"
    app = production.create_app(settings(enable_persistence=True, database_url=url))
    async for client in client_for(app):
        body = {"paneId": 0, "seriesType": "line", "data": CANDLES}
        assert (await client.post("/api/charts/c1/data/s1", json=body)).status_code == 200
        assert (await client.get("/health/ready")).json()["checks"]["database"]["status"] == "ok"
        text = await scrape(client)
    assert total(text, "database_query_duration_seconds_count", operation="insert") >= 1
    assert total(text, "database_query_duration_seconds_count", operation="select") >= 1

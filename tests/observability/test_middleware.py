"""Request ids, the 500 envelope, access lines and WebSocket bookkeeping, in process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from lightweight_charts_pro_backend import app as development
from lightweight_charts_pro_backend import app_production as production
from lightweight_charts_pro_backend.auth import create_access_token
from lightweight_charts_pro_backend.config import Settings
from lightweight_charts_pro_backend.logging_config import ACCESS_LOGGER
from lightweight_charts_pro_backend.ratelimit import LocalWindows

from .boom_app import SECRET, add_failing_routes


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[arg-type]


async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture(params=["development", "production"])
async def any_app(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    factory = development.create_app if request.param == "development" else production.create_app
    async for client in client_for(add_failing_routes(factory(settings()))):
        yield client


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/health", 200), ("/api/charts/nope", 404), ("/api/charts/x/history/0/s?count=zero", 422)],
)
async def test_a_well_formed_request_id_is_echoed(
    any_app: httpx.AsyncClient, path: str, status: int
) -> None:
    reply = await any_app.get(path, headers={"X-Request-ID": "client-id-42"})
    assert reply.status_code == status
    assert reply.headers["x-request-id"] == "client-id-42"
    if status >= 400:
        assert reply.json()["requestId"] == "client-id-42"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", ""])
async def test_a_malformed_request_id_is_replaced(any_app: httpx.AsyncClient, bad: str) -> None:
    reply = await any_app.get("/api/charts/nope", headers={"X-Request-ID": bad})
    generated = reply.headers["x-request-id"]
    assert generated != bad and len(generated) == 32
    assert reply.json()["requestId"] == generated


async def test_an_exception_becomes_the_500_envelope(any_app: httpx.AsyncClient) -> None:
    reply = await any_app.get("/api/charts/c1/boom", headers={"X-Request-ID": "boom-1"})
    assert reply.status_code == 500
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-request-id"] == "boom-1"
    body = reply.json()
    assert set(body) == {"detail", "errorCode", "requestId"}
    assert body["errorCode"] == "INTERNAL_ERROR" and body["requestId"] == "boom-1"
    assert SECRET not in reply.text and "Traceback" not in reply.text


async def test_a_lost_database_connection_is_503_with_retry_after(
    any_app: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    reply = await any_app.get(
        "/api/charts/c1/lost",
        headers={"X-Request-ID": "lost-1", "Origin": "http://localhost:3000"},
    )
    assert reply.status_code == 503
    assert reply.headers["retry-after"] == "1"
    assert reply.headers["access-control-allow-origin"] == "http://localhost:3000"
    body = reply.json()
    assert body["errorCode"] == "DATABASE_UNAVAILABLE" and body["requestId"] == "lost-1"
    assert "ConnectionDoesNotExistError" in body["detail"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_debug_mode_shows_the_traceback() -> None:
    app = add_failing_routes(development.create_app(settings(debug=True)))
    async for client in client_for(app):
        body = (await client.get("/api/charts/c1/boom")).json()
        assert SECRET in body["exception"]
        assert any("RuntimeError" in line for line in body["traceback"])


async def test_the_500_reaches_browsers_with_cors_headers(any_app: httpx.AsyncClient) -> None:
    reply = await any_app.get("/api/charts/c1/boom", headers={"Origin": "http://localhost:3000"})
    assert reply.status_code == 500
    assert reply.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "X-Request-ID" in reply.headers["access-control-expose-headers"]
    preflight = await any_app.options(
        "/api/charts/c1",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200 and "x-request-id" in preflight.headers


async def test_one_access_line_per_request_with_template_and_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    app = add_failing_routes(production.create_app(settings()))
    async for client in client_for(app):
        await client.post("/api/charts/c1", headers={"X-Request-ID": "r-1"})
        await client.get("/api/charts/c1/boom", headers={"X-Request-ID": "r-2"})
        await client.get("/no/such/route", headers={"X-Request-ID": "r-3"})
        assert access_records(caplog) == [], "access lines are written in batches"
        app.state.access_log.flush()
    lines = access_records(caplog)
    assert [(r.request_id, r.status, r.route) for r in lines] == [  # type: ignore[attr-defined]
        ("r-1", 201, "/api/charts/{chart_id}"),
        ("r-2", 500, "/api/charts/{chart_id}/boom"),
        ("r-3", 404, "unmatched"),
    ]
    first = lines[0].__dict__
    assert first["method"] == "POST" and first["path"] == "/api/charts/c1"
    assert first["chart_id"] == "c1" and first["duration_ms"] >= 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].request_id == "r-2" and errors[0].chart_id == "c1"  # type: ignore[attr-defined]
    assert errors[0].exc_info is not None and SECRET in str(errors[0].exc_info[1])


@pytest.mark.parametrize(("factory", "lines"), [(development, 0), (production, 1)])
async def test_only_the_production_app_writes_access_lines(
    caplog: pytest.LogCaptureFixture, factory: Any, lines: int
) -> None:
    caplog.set_level(logging.INFO)
    async for client in client_for(factory.create_app(settings())):
        await client.get("/health")
    # Leaving the app's lifespan flushes the batch.
    assert len(access_records(caplog)) == lines


async def test_access_line_names_the_authenticated_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    config = settings(enable_auth=True, secret_key="k" * 32)
    token = create_access_token({"sub": "alice"}, config)
    app = production.create_app(config)
    async for client in client_for(app):
        await client.get("/api/charts", headers={"Authorization": f"Bearer {token}"})
        await client.get("/api/charts")
        app.state.access_log.flush()
    lines = access_records(caplog)
    assert [(r.status, r.__dict__.get("user")) for r in lines] == [(200, "alice"), (401, None)]


async def test_a_failing_rate_limiter_gets_the_envelope_and_an_access_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: LocalWindows, client: str, now: float) -> None:
        raise RuntimeError("limiter store exploded")

    monkeypatch.setattr(LocalWindows, "record", broken)
    caplog.set_level(logging.INFO)
    app = production.create_app(settings(enable_rate_limiting=True))
    async for client in client_for(app):
        reply = await client.get("/api/charts", headers={"X-Request-ID": "limit-1"})
        app.state.access_log.flush()
    assert reply.status_code == 500
    assert reply.json()["requestId"] == "limit-1" and "exploded" not in reply.text
    assert [(r.request_id, r.status) for r in access_records(caplog)] == [("limit-1", 500)]  # type: ignore[attr-defined]

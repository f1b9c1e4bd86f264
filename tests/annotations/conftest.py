"""Apps with annotations in memory or on a real database, and callers with tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from lightweight_charts_pro_backend.app import create_app
from lightweight_charts_pro_backend.auth import create_access_token
from lightweight_charts_pro_backend.config import Settings

from ..conftest import fresh_database_url

SECRET = "annotations-secret-" + "0123456789abcdef" * 3
STORES = ("memory", "sqlite", "postgresql", "mariadb")

Serve = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, store: str, tmp_path: Path) -> str | None:
    """None for the memory store, else an empty database on that backend."""
    if store == "memory":
        return None
    return fresh_database_url(request, store, tmp_path)


def settings_for(url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"secret_key": SECRET}
    if url is not None:
        values |= {"enable_persistence": True, "database_url": url}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def serve(database_url: str | None) -> Serve:
    """``serve(**settings)``: an in-process client of a fresh app on the test's store."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings_for(database_url, **overrides))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client

    return factory


def auth(sub: str, scope: str = "charts:read charts:write", **claims: Any) -> dict[str, str]:
    settings = settings_for(None)
    token = create_access_token(
        {"sub": sub, "scope": scope, **claims}, settings, timedelta(minutes=10)
    )
    return {"Authorization": f"Bearer {token}"}


def trend_line(start: int = 1_000, end: int = 2_000, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "trend_line",
        "points": [{"time": start, "price": 10.0}, {"time": end, "price": 12.5}],
        "style": {"color": "#2962ff", "lineWidth": 2},
    }
    body.update(changes)
    return body


def marker(time: int, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "marker",
        "seriesId": "price",
        "points": [{"time": time}],
        "style": {"position": "aboveBar", "shape": "arrowDown", "color": "#ef5350"},
        "text": f"m{time}",
    }
    body.update(changes)
    return body

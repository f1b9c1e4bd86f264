from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from lightweight_charts_pro_backend import app as dev_app
from lightweight_charts_pro_backend import app_production
from lightweight_charts_pro_backend.apikeys import ApiKey, new_api_key
from lightweight_charts_pro_backend.auth import create_access_token
from lightweight_charts_pro_backend.config import Settings

SECRET = "test-secret-" + "0123456789abcdef" * 4

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"secret_key": SECRET, "enable_auth": True}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def token(settings: Settings, minutes: float = 5, **claims: Any) -> str:
    claims.setdefault("sub", "tester")
    return create_access_token(claims, settings, timedelta(minutes=minutes))


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def key_settings(keys: dict[str, tuple[str, ApiKey]]) -> list[dict[str, object]]:
    return [record.to_setting() for _, record in keys.values()]


@pytest.fixture
def app_client() -> ClientFactory:
    """``factory(settings, production=False, client=("127.0.0.1", 50000))``: an in-process
    client for a fresh app with its lifespan running; ``client`` is the socket peer the app
    sees."""

    @asynccontextmanager
    async def factory(
        settings: Settings,
        *,
        production: bool = False,
        client: tuple[str, int] = ("127.0.0.1", 50000),
        app: FastAPI | None = None,
    ) -> AsyncIterator[httpx.AsyncClient]:
        module = app_production if production else dev_app
        app = app or module.create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=client)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                yield c

    return factory


@pytest.fixture
def keys() -> dict[str, tuple[str, ApiKey]]:
    """API keys by role: secret and record."""
    revoked_secret, revoked = new_api_key("revoked")
    return {
        "all": new_api_key("all"),
        "chart_a": new_api_key("chart-a", ["a"]),
        "reader": new_api_key("reader", None, ["charts:read"]),
        "writer_a": new_api_key("writer-a", ["a"], ["charts:write"]),
        "revoked": (revoked_secret, replace(revoked, revoked_at=revoked.created_at)),
    }

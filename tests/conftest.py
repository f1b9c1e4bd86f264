from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from lightweight_charts_pro_backend.app import create_app
from lightweight_charts_pro_backend.config import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def make_client() -> Callable[..., AsyncIterator[httpx.AsyncClient]]:
    """Build an app with its lifespan running and an in-process client for it."""

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def factory(
        app: FastAPI | None = None, **overrides: object
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = app or create_app(Settings(_env_file=None, **overrides))  # type: ignore[call-arg]
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client

    return factory  # type: ignore[return-value]


@pytest.fixture
async def client(
    make_client: Callable[..., AsyncIterator[httpx.AsyncClient]],
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:  # type: ignore[attr-defined]
        yield c

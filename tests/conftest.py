from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from lightweight_charts_pro_backend.app import create_app
from lightweight_charts_pro_backend.config import Settings
from lightweight_charts_pro_backend.demo.page import LOCAL_LIBRARY

from .servers import MariaDBServer, PostgresServer, missing

CHROMIUM = Path("/usr/bin/chromium")


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


# ---------------------------------------------------------------- database servers
#
# One PostgreSQL and one MariaDB server per test session, started on first use; each test gets
# a database of its own on them. Tests that stop or kill a server start a private one instead.

BACKENDS = ("sqlite", "postgresql", "mariadb")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    server = MariaDBServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


def fresh_database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """A new, empty database on ``backend``: a file for SQLite, a database on the servers."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / name}.db"
    if backend == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        return server.create_database(name)
    if backend in ("mariadb", "mariadb-asyncmy"):
        maria: MariaDBServer = request.getfixturevalue("mariadb")
        driver = "mysql+asyncmy" if backend == "mariadb-asyncmy" else "mysql+aiomysql"
        return maria.create_database(name, driver)
    raise ValueError(backend)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    return fresh_database_url(request, backend, tmp_path)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (never a downloaded browser); pages get the chart
    library from the demo's npm install."""
    if not CHROMIUM.exists():
        missing("chromium")
    if not LOCAL_LIBRARY.is_file():
        # Tests never reach the internet, so the CDN fallback cannot be used here.
        missing("lightweight-charts from npm (make demo-assets)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
            ],
        )
        try:
            yield instance
        finally:
            instance.close()

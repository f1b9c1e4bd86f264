"""``/demo``: served in development, and in production only with ``ENABLE_DEMO``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from lightweight_charts_pro_backend.demo.page import LOCAL_LIBRARY, library_version

GOOD_KEY = "a-production-secret-key-that-is-long-and-random-0123456789"
PRODUCTION = {
    "environment": "production",
    "secret_key": GOOD_KEY,
    "enable_auth": True,
    "cors_origins": "https://example.com",
}


async def test_development_serves_the_page_and_its_modules(
    make_client: Callable[..., Any],
) -> None:
    factory: Callable[..., AsyncIterator[httpx.AsyncClient]] = make_client
    async with factory() as client:  # type: ignore[attr-defined]
        page = await client.get("/demo")
        assert page.status_code == 200
        assert '"lightweight-charts"' in page.text
        if LOCAL_LIBRARY.is_file():
            assert "/demo/lib/lightweight-charts.mjs" in page.text
            library = await client.get("/demo/lib/lightweight-charts.mjs")
            assert library.headers["content-type"].startswith("text/javascript")
            assert b"createChart" in library.content
        else:
            assert f"lightweight-charts@{library_version()}/" in page.text
        script = await client.get("/demo/static/demo.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert (await client.get("/demo/static/..%2F..%2Fconfig.py")).status_code == 404
        assert (await client.get("/demo/static/index.html")).status_code == 404


async def test_production_serves_the_page_only_when_asked(
    make_client: Callable[..., Any],
) -> None:
    async with make_client(**PRODUCTION) as client:
        assert (await client.get("/demo")).status_code == 404
    async with make_client(**PRODUCTION, enable_demo=True) as client:
        assert (await client.get("/demo")).status_code == 200

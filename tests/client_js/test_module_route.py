"""``/client/charts-client.js``: the browser client served by both apps, cacheable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lightweight_charts_pro_backend.app_production import create_app as create_production_app
from lightweight_charts_pro_backend.client_js.routes import MODULE_DIR, modules
from lightweight_charts_pro_backend.config import Settings

PRODUCTION = {
    "environment": "production",
    "secret_key": "a-production-secret-key-that-is-long-and-random-0123456789",
    "enable_auth": True,
    "cors_origins": "https://example.com",
}


@pytest.mark.parametrize("production", [False, True], ids=["development", "production"])
async def test_both_apps_serve_the_module_with_its_imports(
    make_client: Callable[..., Any], production: bool
) -> None:
    app = create_production_app(Settings(_env_file=None, **PRODUCTION)) if production else None  # type: ignore[call-arg]
    async with make_client(app) as client:
        entry = await client.get("/client/charts-client.js")
        assert entry.status_code == 200
        assert entry.headers["content-type"] == "application/javascript; charset=utf-8"
        assert entry.headers["cache-control"] == "public, no-cache"
        assert entry.content == (MODULE_DIR / "charts-client.js").read_bytes()
        assert b"export { bindSeries" in entry.content
        # Every module the entry imports (relatively) is served beside it.
        for name in modules():
            response = await client.get(f"/client/{name}")
            assert response.status_code == 200, name
            assert response.headers["etag"] == modules()[name].etag


async def test_revalidation_answers_304_until_the_module_changes(
    make_client: Callable[..., Any],
) -> None:
    async with make_client() as client:
        first = await client.get("/client/charts-client.js")
        etag = first.headers["etag"]
        again = await client.get("/client/charts-client.js", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        other = await client.get("/client/charts-client.js", headers={"If-None-Match": '"old"'})
        assert other.status_code == 200
        assert other.content == first.content


@pytest.mark.parametrize(
    "path", ["/client/nothing.js", "/client/..%2F__init__.py", "/client/routes.py", "/client/"]
)
async def test_only_the_modules_are_served(make_client: Callable[..., Any], path: str) -> None:
    async with make_client() as client:
        response = await client.get(path)
        assert response.status_code == 404

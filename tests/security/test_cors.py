"""Cross-origin rules: exactly ``CORS_ORIGINS`` in staging and production; in development, also
the pages of local dev servers on any port. HTTP (preflight, simple requests, the rate limiter's
429) and WebSocket handshakes follow the same rules."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from lightweight_charts_pro_backend import app as dev_app

from ..servers import uvicorn_thread
from .conftest import ClientFactory, make_settings

LISTED = "https://app.example"
#: Pages of dev servers: Vite, Create React App on another port, Streamlit, a bare localhost.
LOCAL_PAGES = [
    "http://localhost:5173",
    "http://localhost:3001",
    "http://127.0.0.1:8501",
    "http://localhost",
]
#: Never allowed unless listed, in any environment.
LOOKALIKES = [
    "https://localhost:5173",
    "http://localhost.evil.example",
    "http://localhost:5173.evil.example",
    "http://127.0.0.1.nip.io:8080",
    "http://evil.example",
]


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_development_allows_local_dev_servers_on_any_port(
    app_client: ClientFactory,
) -> None:
    settings = make_settings(environment="development", enable_auth=False, cors_origins=LISTED)
    async with app_client(settings, production=True) as client:
        for origin in [LISTED, *LOCAL_PAGES]:
            preflight = await client.options("/api/charts", headers=preflight_headers(origin))
            assert preflight.status_code == 200, origin
            assert preflight.headers["access-control-allow-origin"] == origin
            assert preflight.headers["access-control-allow-credentials"] == "true"
            simple = await client.get("/api/charts", headers={"Origin": origin})
            assert simple.status_code == 200
            assert simple.headers["access-control-allow-origin"] == origin
            assert simple.headers["access-control-allow-credentials"] == "true"
            assert "origin" in simple.headers["vary"].lower()
        for origin in LOOKALIKES:
            preflight = await client.options("/api/charts", headers=preflight_headers(origin))
            assert preflight.status_code == 400, origin
            simple = await client.get("/api/charts", headers={"Origin": origin})
            assert "access-control-allow-origin" not in simple.headers, origin


@pytest.mark.parametrize("environment", ["staging", "production"])
async def test_staging_and_production_allow_exactly_cors_origins(
    environment: str, app_client: ClientFactory
) -> None:
    settings = make_settings(environment=environment, enable_auth=False, cors_origins=LISTED)
    async with app_client(settings, production=True) as client:
        listed = await client.options("/api/charts", headers=preflight_headers(LISTED))
        assert listed.headers["access-control-allow-origin"] == LISTED
        for origin in LOCAL_PAGES + LOOKALIKES:
            preflight = await client.options("/api/charts", headers=preflight_headers(origin))
            assert preflight.status_code == 400, origin
            assert "access-control-allow-origin" not in preflight.headers, origin
            simple = await client.get("/api/charts", headers={"Origin": origin})
            assert "access-control-allow-origin" not in simple.headers, origin


@pytest.mark.parametrize(("environment", "readable"), [("development", True), ("staging", False)])
async def test_a_local_page_reads_a_refusal_in_development_only(
    environment: str, readable: bool, app_client: ClientFactory
) -> None:
    settings = make_settings(
        environment=environment, enable_auth=False, cors_origins=LISTED, rate_limit_per_minute=1
    )
    headers = {"Origin": "http://localhost:5173"}
    async with app_client(settings, production=True) as client:
        assert (await client.get("/api/charts", headers=headers)).status_code == 200
        refused = await client.get("/api/charts", headers=headers)
    assert refused.status_code == 429
    allowed = refused.headers.get("access-control-allow-origin")
    assert allowed == ("http://localhost:5173" if readable else None)
    if readable:
        assert "retry-after" in refused.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize(("environment", "admitted"), [("development", True), ("staging", False)])
async def test_websocket_handshakes_from_local_pages(environment: str, admitted: bool) -> None:
    settings = make_settings(environment=environment, enable_auth=False, cors_origins=LISTED)
    with uvicorn_thread(dev_app.create_app(settings)) as address:
        url = f"ws://{address}/ws/charts/a"
        for origin in LOCAL_PAGES:
            if admitted:
                async with connect(url, origin=origin, open_timeout=10) as ws:
                    assert '"connected"' in str(await ws.recv()), origin
            else:
                with pytest.raises(InvalidStatus) as refused:
                    await connect(url, origin=origin, open_timeout=10)
                assert refused.value.response.status_code == 403, origin
        for origin in LOOKALIKES:
            with pytest.raises(InvalidStatus) as refused:
                await connect(url, origin=origin, open_timeout=10)
            assert refused.value.response.status_code == 403, origin

"""The optional tracing hook stays out of the way when it cannot run."""

from __future__ import annotations

import importlib.util
import logging

import httpx
import pytest

from lightweight_charts_pro_backend import app_production
from lightweight_charts_pro_backend.config import Settings


async def test_without_an_endpoint_nothing_is_set_up() -> None:
    app = app_production.create_app(Settings(_env_file=None))
    assert not hasattr(app.state, "tracer_provider")


def sdk_installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.sdk") is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.skipif(sdk_installed(), reason="the OpenTelemetry SDK is installed")
async def test_an_endpoint_without_the_packages_warns_and_serves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = Settings(_env_file=None, otel_exporter_otlp_endpoint="http://127.0.0.1:4318")
    app = app_production.create_app(settings)
    assert not hasattr(app.state, "tracer_provider")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("OpenTelemetry is not installed" in r.getMessage() for r in warnings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/health")).status_code == 200

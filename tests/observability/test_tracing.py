"""The optional tracing hook stays out of the way when it cannot run."""

from __future__ import annotations

import asyncio
import http.server
import importlib.util
import logging
import threading

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


@pytest.mark.skipif(not sdk_installed(), reason="the OpenTelemetry SDK is not installed")
async def test_spans_reach_the_collector_with_route_templates() -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    pytest.importorskip("opentelemetry.instrumentation.fastapi")
    received: list[tuple[str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append((self.path, self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    collector = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{collector.server_port}"
        app = app_production.create_app(
            Settings(_env_file=None, otel_exporter_otlp_endpoint=endpoint)
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.post("/api/charts/traced")).status_code == 201
        await asyncio.to_thread(app.state.tracer_provider.force_flush)
        assert [path for path, _ in received] == ["/v1/traces"]
        assert b"/api/charts/{chart_id}" in received[0][1]
    finally:
        collector.shutdown()
        collector.server_close()

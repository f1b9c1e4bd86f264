"""The development app: REST API, health probes, CORS and request ids on embedded defaults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from . import __version__
from .api import charts as charts_api
from .api import health as health_api
from .api import metrics as metrics_api
from .api.errors import install_error_handlers
from .charts.service import ChartsService
from .config import Settings, get_settings
from .logging_config import configure_logging
from .metrics import Metrics, multiprocess_dir, store_totals
from .middleware import ErrorEnvelopeMiddleware, RequestIdMiddleware
from .realtime.bus import InProcessEventBus

#: In multi-process mode a scrape reaches one worker, so each refreshes its store gauges itself.
STORE_GAUGES_INTERVAL_SECONDS = 5.0


def build_app(
    settings: Settings,
    *,
    docs: bool = True,
    metrics: Metrics | None = None,
    access_log: bool = False,
) -> FastAPI:
    """The app shared by both factories; the production factory adds its features on top.

    ``metrics``: an enabled ``Metrics`` serves ``METRICS_PATH`` and counts requests;
    ``access_log``: one log line per request. Both are off in the development app.
    """
    metrics = metrics or Metrics(enabled=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bus = InProcessEventBus()
        await bus.start()
        charts = ChartsService(
            bus,
            default_chunk_size=settings.default_chunk_size,
            chunk_size_threshold=settings.chunk_size_threshold,
        )
        app.state.bus = bus
        app.state.charts = charts
        metrics.track_store(store_totals(charts.charts))
        refresher = None
        if metrics.enabled and multiprocess_dir() is not None:
            refresher = asyncio.create_task(_refresh_store_gauges(metrics))

        async def store_check() -> dict[str, Any]:
            return {"charts": sum(1 for _ in charts.charts())}

        app.state.readiness_checks["store"] = store_check
        try:
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
            await bus.close()

    app = FastAPI(
        title=settings.app_name,
        version=__version__,
        debug=settings.debug,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.readiness_checks = {}
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(health_api.router)
    app.include_router(charts_api.router)
    if metrics.enabled:
        app.add_api_route(
            settings.metrics_path, metrics_api.scrape, methods=["GET"], include_in_schema=False
        )
    # Added innermost first: see middleware.py for why the envelope sits inside CORS.
    app.add_middleware(ErrorEnvelopeMiddleware, debug=settings.debug)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID"],
    )
    app.add_middleware(RequestIdMiddleware, access_log=access_log, metrics=metrics)
    return app


async def _refresh_store_gauges(metrics: Metrics) -> None:
    while True:
        metrics.refresh_store_gauges()
        await asyncio.sleep(STORE_GAUGES_INTERVAL_SECONDS)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the development app (readable text logs unless ``LOG_FORMAT=json``).

    Example::

        uvicorn lightweight_charts_pro_backend.app:create_app --factory --reload
    """
    settings = settings or get_settings()
    configure_logging(settings)
    return build_app(settings)

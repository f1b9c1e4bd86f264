"""The development app: REST API, health probes, CORS and request ids on embedded defaults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from . import __version__
from .api import auth as auth_api
from .api import charts as charts_api
from .api import health as health_api
from .api import metrics as metrics_api
from .api.errors import install_error_handlers
from .api.fastlane import HistoryLane
from .apikeys import SettingsKeyStore
from .auth import Authenticator
from .charts.memory import tune_allocator
from .charts.service import ChartsService
from .config import Settings, get_settings
from .cors import install_cors
from .guards import check_production, docs_enabled, log_production_warnings
from .logging_config import AccessLog, configure_logging
from .metrics import Metrics, multiprocess_dir, store_totals
from .middleware import ErrorEnvelopeMiddleware, RequestIdMiddleware
from .openapi import install_openapi
from .ratelimit import RateLimiter, RateLimitMiddleware
from .realtime.bus import InProcessEventBus

#: In multi-process mode a scrape reaches one worker, so each refreshes its store gauges itself.
STORE_GAUGES_INTERVAL_SECONDS = 5.0


def build_app(
    settings: Settings,
    *,
    docs: bool | None = None,
    rate_limits: bool = False,
    metrics: Metrics | None = None,
    access_log: bool = False,
) -> FastAPI:
    """The app shared by both factories; the production factory adds its features on top.

    Authentication (``ENABLE_AUTH``), request limits, CORS, request ids, the 500 envelope and
    the production guards apply to both; per-client rate limits only when ``rate_limits`` (the
    production app) and ``ENABLE_RATE_LIMITING``; an enabled ``metrics`` serves
    ``METRICS_PATH`` and counts requests; ``access_log`` writes one line per request. Raises
    ``UnsafeConfiguration`` in production with unsafe settings.
    """
    check_production(settings)
    metrics = metrics or Metrics(enabled=False)
    access = AccessLog() if access_log else None
    if docs is None:
        docs = docs_enabled(settings)
    limiter = RateLimiter(settings) if rate_limits and settings.enable_rate_limiting else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_allocator()
        log_production_warnings(settings)
        bus = InProcessEventBus()
        await bus.start()
        charts = ChartsService(
            bus,
            default_chunk_size=settings.default_chunk_size,
            chunk_size_threshold=settings.chunk_size_threshold,
        )
        app.state.bus = bus
        app.state.charts = charts
        app.state.keystore = SettingsKeyStore(settings.api_keys)
        app.state.authenticator = Authenticator(settings, app.state.keystore)
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
            if limiter is not None:
                await limiter.close()
            if access is not None:
                access.flush()

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
    app.state.rate_limiter = limiter
    app.state.metrics = metrics
    app.state.access_log = access
    install_error_handlers(app)
    app.include_router(health_api.router)
    app.include_router(auth_api.router)
    app.include_router(charts_api.router)
    if metrics.enabled:
        app.add_api_route(
            settings.metrics_path, metrics_api.scrape, methods=["GET"], include_in_schema=False
        )
    app.add_middleware(HistoryLane, route=charts_api.history_route)  # first added = innermost
    install_openapi(app, settings)
    if limiter is not None:
        app.add_middleware(
            RateLimitMiddleware, limiter=limiter, exempt=frozenset({settings.metrics_path})
        )
    # Inside CORS, so that browsers can read a 500; see middleware.py for the whole order.
    app.add_middleware(ErrorEnvelopeMiddleware, debug=settings.debug)
    install_cors(app, settings)
    app.add_middleware(RequestIdMiddleware, access_log=access, metrics=metrics)
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

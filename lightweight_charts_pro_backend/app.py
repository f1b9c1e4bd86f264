"""The development app: REST API, WebSockets, health probes, CORS and request ids on embedded
defaults."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from . import __version__
from .api import charts as charts_api
from .api import health as health_api
from .api.errors import install_error_handlers
from .charts.service import ChartsService
from .config import Settings, get_settings
from .middleware import RequestIdMiddleware
from .realtime import websocket as websocket_api
from .realtime.bus import InProcessEventBus
from .realtime.hub import Hub, HubLimits
from .realtime.signals import close_sockets_on_signal


def tune_garbage_collector() -> None:
    """Keep the cycle collector off the latency path of a long-running server.

    With CPython's default thresholds, objects that are merely in flight (a request, a pending
    send to each of a thousand sockets) survive young collections and pile up in the oldest
    generation, whose full scans then run every few seconds and pause the event loop for
    hundreds of milliseconds when many sockets are open. Collecting the young generation every
    50,000 allocations instead of 700 lets those objects die first; freezing what exists after
    startup takes the import-time objects out of every later scan.
    """
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(50_000, middle, old)


def build_app(settings: Settings, *, docs: bool = True) -> FastAPI:
    """The app shared by both factories; the production factory adds its features on top."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bus = InProcessEventBus()
        await bus.start()
        charts = ChartsService(
            bus,
            default_chunk_size=settings.default_chunk_size,
            chunk_size_threshold=settings.chunk_size_threshold,
        )
        hub = Hub(
            bus,
            HubLimits(
                send_queue_size=settings.websocket_send_queue_size,
                resume_events=settings.websocket_resume_events,
                resume_max_bytes=settings.websocket_resume_max_bytes,
                resume_window_seconds=settings.websocket_resume_window_seconds,
                ping_interval_seconds=settings.websocket_ping_interval_seconds,
                timeout_seconds=settings.websocket_timeout_seconds,
            ),
        )
        await hub.start()
        app.state.bus = bus
        app.state.charts = charts
        app.state.hub = hub

        async def store_check() -> dict[str, Any]:
            return {"charts": sum(1 for _ in charts.charts())}

        async def websocket_check() -> dict[str, Any]:
            return {"connections": hub.connection_count, "charts": hub.chart_count}

        app.state.readiness_checks["store"] = store_check
        app.state.readiness_checks["websockets"] = websocket_check
        restore_signals = close_sockets_on_signal(hub)
        tune_garbage_collector()
        try:
            yield
        finally:
            restore_signals()
            await hub.close()
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
    install_error_handlers(app)
    app.include_router(health_api.router)
    app.include_router(charts_api.router)
    app.include_router(websocket_api.router)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID"],
    )
    app.add_middleware(RequestIdMiddleware)
    return app


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the development app.

    Example::

        uvicorn lightweight_charts_pro_backend.app:create_app --factory --reload
    """
    return build_app(settings or get_settings())

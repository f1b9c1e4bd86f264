"""The development app: REST API, WebSockets, health probes, CORS and request ids on embedded
defaults."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from . import __version__
from .annotations import endpoints as annotations_api
from .annotations.cache import AnnotationCache
from .annotations.memory import MemoryAnnotations
from .annotations.repository import AnnotationsRepository, AnnotationStore
from .annotations.service import AnnotationsService
from .api import auth as auth_api
from .api import charts as charts_api
from .api import health as health_api
from .api import metrics as metrics_api
from .api.errors import install_error_handlers
from .api.fastlane import HistoryLane
from .apikeys import KeyStore, SettingsKeyStore
from .auth import Authenticator
from .charts.maintenance import DatabaseClaim, run_maintenance
from .charts.memory import tune_allocator
from .charts.repository import ChartsRepository
from .charts.service import ChartsService
from .client_js import routes as client_js
from .config import Settings, get_settings
from .cors import install_cors, with_cors
from .database import Database
from .demo import page as demo_page
from .errors import DatabaseUnavailable
from .guards import check_production, docs_enabled, log_production_warnings
from .keytable import DatabaseKeyStore
from .logging_config import AccessLog, configure_logging
from .metrics import Metrics, multiprocess_dir
from .middleware import ErrorEnvelopeMiddleware, RequestIdMiddleware
from .openapi import install_openapi
from .ratelimit import RateLimiter, RateLimitGate, refuse
from .realtime import websocket as websocket_api
from .realtime.bus import InProcessEventBus
from .realtime.hub import Hub, HubLimits
from .realtime.redis_bus import RedisEventBus
from .realtime.signals import close_sockets_on_signal
from .saveload import endpoints as saveload_api
from .saveload.service import SaveLoadService
from .saveload.store import LayoutsRepository, LayoutStore, MemoryLayouts
from .udf import routes as udf_api
from .udf.service import UdfService

logger = logging.getLogger(__name__)
#: Pauses between attempts to reach the database at startup.
STARTUP_RETRY_FIRST_SECONDS: Final = 0.5
STARTUP_RETRY_MAX_SECONDS: Final = 5.0


async def create_tables_when_reachable(database: Database) -> None:
    """Create the missing tables, waiting for a database server that cannot be reached.

    A worker that exited at startup instead would make gunicorn stop the whole server, its
    other workers included: a worker restarted during a database outage would take the replica
    down. SQLite has no server to wait for: its errors end the startup.
    """
    delay = STARTUP_RETRY_FIRST_SECONDS
    while True:
        try:
            await database.create_tables()
            return
        except DatabaseUnavailable as exc:
            if database.dialect == "sqlite":
                raise
            logger.warning("%s Waiting %g s before starting.", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, STARTUP_RETRY_MAX_SECONDS)


#: FastAPI's own OpenTelemetry bridge, off: it asks the global providers on every request whether
#: they are configured (about 5 us, a quarter of serving a history chunk), and the service's
#: tracing (``tracing.py``, on with ``OTEL_EXPORTER_OTLP_ENDPOINT``) instruments the app itself.
NATIVE_TELEMETRY_OFF: Final[TelemetryConfig] = {"tracing": False, "metrics": False, "logs": False}

#: In multi-process mode a scrape reaches one worker, so each refreshes its store gauges itself.
STORE_GAUGES_INTERVAL_SECONDS = 5.0
#: How often a worker sharing its database compares its cached charts' versions with it.
VERSION_CHECK_INTERVAL_SECONDS = 5.0
#: Every this many version checks (a minute), the gathered read times are written.
ACCESS_FLUSH_CHECKS = 12


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
        async with AsyncExitStack() as stack:
            database = None
            repository = None
            if settings.enable_persistence:
                database = Database.from_settings(settings)
                stack.push_async_callback(database.close)
                await create_tables_when_reachable(database)
                repository = ChartsRepository(database)
                app.state.readiness_checks["database"] = database.ping
                metrics.instrument_engine(database.engine)
            app.state.database = database

            bus: InProcessEventBus
            redis_bus = None
            # Without persistence each process holds charts of its own, with versions of its
            # own: sharing their events would mix unrelated histories.
            if settings.redis_url and repository is not None:
                bus = redis_bus = RedisEventBus(
                    settings.redis_url,
                    recent_events=settings.websocket_resume_events,
                    recent_max_bytes=settings.websocket_resume_max_bytes,
                    recent_seconds=max(settings.websocket_resume_window_seconds, 60.0),
                    heartbeat_seconds=settings.event_bus_heartbeat_seconds,
                )
                app.state.readiness_checks["redis"] = redis_bus.ping
            else:
                bus = InProcessEventBus()
                if repository is not None and several_workers():
                    logger.warning(
                        "several workers with ENABLE_PERSISTENCE and no REDIS_URL: REST reads "
                        "stay correct (checked against the database), but live updates only "
                        "reach sockets of the worker that made the change; set REDIS_URL"
                    )
            await bus.start()
            stack.push_async_callback(bus.close)
            if limiter is not None:
                await limiter.start()
                stack.push_async_callback(limiter.close)
            shared = redis_bus is not None or (repository is not None and several_workers())
            charts = ChartsService(
                bus,
                repository=repository,
                cache_bytes=int(settings.series_cache_mb * 2**20),
                bar_cache_bytes=int(settings.bar_cache_mb * 2**20),
                default_chunk_size=settings.default_chunk_size,
                chunk_size_threshold=settings.chunk_size_threshold,
                # other workers may write the same database: a cached chart is trusted while
                # the bus is known to deliver, and checked against the database otherwise
                validate_reads=shared,
                bus_current=redis_bus.current if redis_bus is not None else None,
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
                recent=redis_bus.recent if redis_bus is not None else None,
                bars=charts.bars_at,
                bars_now=charts.bars_now,
            )
            if redis_bus is not None:
                redis_bus.on_remote(charts.observe)
                redis_bus.on_reset(charts.invalidate_all)
                redis_bus.on_reset(hub.resync_all)
                redis_bus.on_lost(charts.invalidate_charts)
                redis_bus.on_lost(hub.resync_charts)
            await hub.start()
            stack.push_async_callback(hub.close)
            annotation_store: AnnotationStore
            annotation_cache = None
            if database is None:
                annotation_store = MemoryAnnotations()
            else:
                stored_annotations = AnnotationsRepository(database)
                annotation_store = stored_annotations
                annotation_cache = AnnotationCache(
                    stored_annotations,
                    bus,
                    budget_bytes=int(settings.annotation_cache_mb * 2**20),
                    validate=shared,
                    bus_current=redis_bus.current if redis_bus is not None else None,
                )
                stack.push_async_callback(annotation_cache.close)
                if redis_bus is not None:
                    redis_bus.on_reset(annotation_cache.invalidate_all)
                    redis_bus.on_lost(annotation_cache.invalidate_charts)
            annotations = AnnotationsService(
                charts,
                bus,
                annotation_store,
                max_per_chart=settings.max_annotations_per_chart,
                max_bytes=settings.max_annotation_bytes,
                forget_with_chart=database is None,
                cache=annotation_cache,
            )
            stack.push_async_callback(annotations.close)
            app.state.bus = bus
            app.state.charts = charts
            app.state.annotations = annotations
            app.state.udf = UdfService(charts, annotations)
            layouts: LayoutStore = (
                MemoryLayouts() if database is None else LayoutsRepository(database)
            )
            app.state.saveload = SaveLoadService(
                layouts, max_layout_bytes=settings.max_layout_bytes
            )
            app.state.hub = hub
            keystore: KeyStore
            if database is not None:
                keystore = DatabaseKeyStore(database)
                await keystore.seed(settings.api_keys)
            else:
                keystore = SettingsKeyStore(settings.api_keys)
            app.state.keystore = keystore
            authenticator = app.state.authenticator = Authenticator(settings, keystore)
            if authenticator.enforce:
                revoker = asyncio.create_task(
                    websocket_api.close_revoked_sockets(hub, authenticator),
                    name="websocket-credentials",
                )
                stack.push_async_callback(_cancel, revoker)
            stack.push_async_callback(charts.close)
            if repository is not None:
                stack.push_async_callback(_flush_access, charts)

            async def datafeed_check() -> dict[str, Any]:
                return {"chartsInMemory": charts.loaded_charts()}

            async def websocket_check() -> dict[str, Any]:
                return {"connections": hub.connection_count, "charts": hub.chart_count}

            # The series store, under the name the deployment guide's readiness probe gives it.
            app.state.readiness_checks["datafeed"] = datafeed_check
            app.state.readiness_checks["websockets"] = websocket_check
            stack.callback(close_sockets_on_signal(hub))
            tune_garbage_collector()

            claim: Callable[[float], Awaitable[bool]] | None = None
            if redis_bus is not None:
                claim = _redis_claim(redis_bus)
            elif database is not None:
                database_claim = DatabaseClaim(database)
                stack.push_async_callback(database_claim.close)
                claim = database_claim
            maintenance = asyncio.create_task(
                run_maintenance(
                    charts,
                    ttl_seconds=settings.chart_ttl_hours * 3600,
                    interval_seconds=settings.cleanup_interval_minutes * 60,
                    claim=claim,
                ),
                name="chart-maintenance",
            )
            stack.push_async_callback(_cancel, maintenance)
            if shared and charts.persistent:
                sweeper = asyncio.create_task(
                    _check_versions(charts, annotation_cache), name="version-check"
                )
                stack.push_async_callback(_cancel, sweeper)
                loaded = await charts.warm(settings.cache_warmup_seconds)
                if loaded:
                    logger.info("loaded %d recently used series before serving", loaded)
            metrics.track_store(charts.memory_totals)
            if limiter is not None:
                metrics.track_rate_limits(limiter.clients)
            if metrics.enabled and multiprocess_dir() is not None:
                refresher = asyncio.create_task(_refresh_gauges(metrics))
                stack.push_async_callback(_cancel, refresher)
            if access is not None:
                stack.callback(access.flush)
            yield

    app = FastAPI(
        telemetry=NATIVE_TELEMETRY_OFF,
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
    app.include_router(annotations_api.router)
    app.include_router(saveload_api.router)
    app.include_router(websocket_api.router)
    app.include_router(client_js.router)
    udf_router = udf_api.router_at(settings.udf_path)
    app.include_router(udf_router)
    if demo_page.demo_enabled(settings):
        app.include_router(demo_page.router)
    if metrics.enabled:
        app.add_api_route(
            settings.metrics_path, metrics_api.scrape, methods=["GET"], include_in_schema=False
        )
    app.add_middleware(HistoryLane, route=charts_api.history_route)  # first added = innermost
    app.add_middleware(udf_api.HistoryLane, route=udf_api.history_route(udf_router))
    install_openapi(app, settings)
    # Inside CORS, so that browsers can read a 500; see middleware.py for the whole order.
    app.add_middleware(ErrorEnvelopeMiddleware, debug=settings.debug)
    install_cors(app, settings)
    gate = None
    if limiter is not None:
        exempt = frozenset({settings.metrics_path})
        gate = RateLimitGate(
            limiter,
            exempt,
            refusal=with_cors(refuse, settings),
            udf_path=settings.udf_path,
        )
    app.add_middleware(RequestIdMiddleware, access_log=access, metrics=metrics, rate_limits=gate)
    return app


def several_workers() -> bool:
    """Whether this process is probably one of several serving the app: gunicorn or uvicorn
    started with more than one worker (``WEB_CONCURRENCY``, ``-w``/``--workers``)."""
    counts = [os.environ.get("WEB_CONCURRENCY", "")]
    args = sys.argv[1:] + os.environ.get("GUNICORN_CMD_ARGS", "").split()
    for i, arg in enumerate(args):
        if arg in ("-w", "--workers") and i + 1 < len(args):
            counts.append(args[i + 1])
        elif arg.startswith("--workers="):
            counts.append(arg.partition("=")[2])
    return any(count.isascii() and count.isdigit() and int(count) > 1 for count in counts)


def _redis_claim(bus: RedisEventBus) -> Callable[[float], Awaitable[bool]]:
    async def claim(seconds: float) -> bool:
        return await bus.claim("ttl-cleanup", seconds)

    return claim


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _flush_access(charts: ChartsService) -> None:
    try:
        await charts.flush_access()
    except Exception as exc:
        logger.warning("could not record the last read times at shutdown: %s", exc)


async def _check_versions(charts: ChartsService, annotations: AnnotationCache | None) -> None:
    """Compare cached charts and annotations with the database now and then, in case an
    announcement was lost; and record read times every minute, so that a new worker knows which
    charts to load first."""
    checks = 0
    while True:
        await asyncio.sleep(VERSION_CHECK_INTERVAL_SECONDS)
        checks += 1
        try:
            await charts.check_versions()
            if annotations is not None:
                await annotations.check()
            if checks % ACCESS_FLUSH_CHECKS == 0:
                await charts.flush_access()
        except Exception as exc:
            logger.warning("could not compare cached charts with the database: %s", exc)


async def _refresh_gauges(metrics: Metrics) -> None:
    while True:
        metrics.refresh_gauges()
        await asyncio.sleep(STORE_GAUGES_INTERVAL_SECONDS)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the development app (readable text logs unless ``LOG_FORMAT=json``).

    Example::

        uvicorn lightweight_charts_pro_backend.app:create_app --factory --reload
    """
    settings = settings or get_settings()
    configure_logging(settings)
    return build_app(settings)

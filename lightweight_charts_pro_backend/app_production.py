"""The production app: the development app plus the production features.

On top of the development app: per-client rate limits (``ENABLE_RATE_LIMITING``), logs in
``LOG_FORMAT`` (JSON when ``ENVIRONMENT=production``) with one access line per request,
Prometheus metrics at ``METRICS_PATH`` when ``ENABLE_METRICS``, and OpenTelemetry traces when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and the packages are installed.
"""

from __future__ import annotations

from fastapi import FastAPI

from .app import build_app
from .config import Settings, get_settings
from .logging_config import configure_logging
from .metrics import Metrics
from .tracing import setup_tracing


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the production app from ``settings`` (default: environment and ``.env``).

    With ``ENVIRONMENT=production`` it refuses unsafe settings and hides ``/docs`` unless
    ``PRODUCTION_DOCS`` is set.

    Example::

        uvicorn lightweight_charts_pro_backend.app_production:create_app --factory --port 8000
        gunicorn 'lightweight_charts_pro_backend.app_production:create_app()'  # gunicorn.conf.py
    """
    settings = settings or get_settings()
    configure_logging(settings, access_log=True)
    app = build_app(
        settings,
        rate_limits=True,
        metrics=Metrics(enabled=settings.enable_metrics),
        access_log=True,
    )
    setup_tracing(app, settings)
    return app

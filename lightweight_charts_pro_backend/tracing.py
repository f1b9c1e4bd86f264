"""Optional OpenTelemetry tracing: on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and the
OpenTelemetry packages are installed; otherwise nothing is imported and nothing changes.

The packages are not dependencies of the service; install them next to it to get traces::

    pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http \\
        opentelemetry-instrumentation-fastapi opentelemetry-instrumentation-sqlalchemy
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from fastapi import FastAPI

from .config import Settings

logger = logging.getLogger(__name__)

_REQUIRED = (
    "opentelemetry.sdk.resources",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.instrumentation.fastapi",
)


def setup_tracing(app: FastAPI, settings: Settings) -> bool:
    """Send spans of every request (and SQLAlchemy statement) to the OTLP/HTTP collector.

    Returns whether tracing was switched on. The endpoint is the collector's base URL, as in
    OpenTelemetry's own variable: spans are posted to ``<endpoint>/v1/traces``.
    """
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint:
        return False
    try:
        resources, sdk_trace, export, otlp, fastapi_instr = (
            importlib.import_module(name) for name in _REQUIRED
        )
    except ImportError as exc:
        logger.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed (%s); "
            "tracing stays off.",
            exc,
        )
        return False
    provider: Any = sdk_trace.TracerProvider(
        resource=resources.Resource.create({"service.name": settings.app_name})
    )
    exporter = otlp.OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(export.BatchSpanProcessor(exporter))
    fastapi_instr.FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    try:
        sqlalchemy_instr = importlib.import_module("opentelemetry.instrumentation.sqlalchemy")
    except ImportError:
        logger.info("opentelemetry-instrumentation-sqlalchemy is not installed; no SQL spans.")
    else:
        instrumentor = sqlalchemy_instr.SQLAlchemyInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
    app.state.tracer_provider = provider
    logger.info("Tracing to %s", endpoint)
    return True

"""The production app: the development app plus the production features."""

from __future__ import annotations

from fastapi import FastAPI

from .app import build_app
from .config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the production app from ``settings`` (default: environment and ``.env``).

    On top of the development app: per-client rate limits (``ENABLE_RATE_LIMITING``). With
    ``ENVIRONMENT=production`` it refuses unsafe settings and hides ``/docs`` unless
    ``PRODUCTION_DOCS`` is set.

    Example::

        uvicorn lightweight_charts_pro_backend.app_production:create_app --factory --port 8000
    """
    return build_app(settings or get_settings(), rate_limits=True)

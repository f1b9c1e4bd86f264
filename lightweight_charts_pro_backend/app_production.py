"""The production app: the development app plus the production features."""

from __future__ import annotations

from fastapi import FastAPI

from .app import build_app
from .config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the production app from ``settings`` (default: environment and ``.env``).

    Example::

        uvicorn lightweight_charts_pro_backend.app_production:create_app --factory --port 8000
    """
    settings = settings or get_settings()
    return build_app(settings, docs=not settings.is_production)

"""Production guards: settings the service refuses to start with, and the ones it warns about.

With ``ENVIRONMENT=production`` a factory raises :class:`UnsafeConfiguration` (so uvicorn or
gunicorn exits with the message) for the default or a short ``SECRET_KEY`` and for ``*`` in
``CORS_ORIGINS``; auth off, persistence off, SQLite and debug mode are logged as warnings.
"""

from __future__ import annotations

import logging

from .auth import minimum_key_bytes
from .config import DEFAULT_SECRET_KEY, Settings

logger = logging.getLogger(__name__)


class UnsafeConfiguration(RuntimeError):
    """The settings are not safe to serve production traffic with."""


def production_problems(settings: Settings) -> list[str]:
    problems = []
    key_bytes = len(settings.secret_key.encode())
    needed = minimum_key_bytes(settings.algorithm)
    if settings.secret_key == DEFAULT_SECRET_KEY:
        problems.append("SECRET_KEY is the default; set one made by `openssl rand -hex 32`.")
    elif key_bytes < needed:
        problems.append(
            f"SECRET_KEY is {key_bytes} bytes; {settings.algorithm} needs at least {needed} "
            "(`openssl rand -hex 32` makes 64)."
        )
    if "*" in settings.cors_origins:
        problems.append(
            "CORS_ORIGINS contains '*', which would let any site call the API with the user's "
            "credentials; list your front-end origins."
        )
    return problems


def check_production(settings: Settings) -> None:
    """Raise :class:`UnsafeConfiguration` listing every problem, in production only."""
    if not settings.is_production:
        return
    problems = production_problems(settings)
    if problems:
        raise UnsafeConfiguration(
            "Refusing to start with ENVIRONMENT=production: " + " ".join(problems)
        )


def production_warnings(settings: Settings) -> list[str]:
    if not settings.is_production:
        return []
    warnings = []
    if not settings.enable_auth:
        warnings.append("ENABLE_AUTH is false: anyone who reaches the API can read and write.")
    if not settings.enable_persistence:
        warnings.append("ENABLE_PERSISTENCE is false: charts live in memory and die with it.")
    elif settings.database_url.startswith("sqlite"):
        warnings.append(
            "DATABASE_URL is SQLite: one writer at a time, local to this host; "
            "use PostgreSQL or MySQL."
        )
    if settings.debug:
        warnings.append("DEBUG is true: error responses may show internals.")
    if not settings.enable_rate_limiting:
        warnings.append("ENABLE_RATE_LIMITING is false: clients are not limited.")
    return warnings


def log_production_warnings(settings: Settings) -> None:
    for message in production_warnings(settings):
        logger.warning(message)


def docs_enabled(settings: Settings) -> bool:
    """``/docs``, ``/redoc`` and ``/openapi.json``: on, except in production unless
    ``PRODUCTION_DOCS`` asks for them."""
    return not settings.is_production or settings.production_docs

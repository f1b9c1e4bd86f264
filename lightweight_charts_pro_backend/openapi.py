"""The OpenAPI schema's security section, which follows ``ENABLE_AUTH`` and ``API_KEY_HEADER``.

The routes authorize through plain dependencies (one of them on the hot path takes no dependency
at all), so FastAPI cannot infer the schemes; they are added to the generated schema here.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from .config import Settings

TOKEN_PATH = "/api/auth/token"


def install_security_schemes(app: FastAPI, settings: Settings) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schemes = {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "apiKeyAuth": {"type": "apiKey", "in": "header", "name": settings.api_key_header},
        }
        schema.setdefault("components", {})["securitySchemes"] = schemes
        for path, operations in schema.get("paths", {}).items():
            if path == TOKEN_PATH:
                requirement: list[dict[str, list[str]]] = [{"apiKeyAuth": []}]
            elif settings.enable_auth and path.startswith("/api/"):
                requirement = [{"bearerAuth": []}, {"apiKeyAuth": []}]
            else:
                continue
            for operation in operations.values():
                operation["security"] = requirement
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

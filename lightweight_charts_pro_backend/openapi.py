"""Additions to the generated OpenAPI schema that FastAPI cannot infer from the routes.

- Security: the routes authorize through plain dependencies (the hot history route through no
  dependency at all), so the schemes are declared here; they follow ``ENABLE_AUTH`` and
  ``API_KEY_HEADER``.
- Path parameters: ids and panes are checked by the service (cheaper than FastAPI validation on
  the hot path), so their constraints are written into the schema here for clients and tools.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI

from .config import Settings

TOKEN_PATH: Final = "/api/auth/token"
ID_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": r"^(?!.*\.\.)(?!\.+$)[A-Za-z0-9_.-]{1,128}$",
    "description": "1-128 letters, digits, '_', '-' or '.', without '..' and not only dots",
}
PANE_SCHEMA: Final[dict[str, Any]] = {"type": "integer", "minimum": 0, "maximum": 100}
_PARAMETER_SCHEMAS: Final = {"chart_id": ID_SCHEMA, "series_id": ID_SCHEMA, "pane_id": PANE_SCHEMA}


def install_openapi(app: FastAPI, settings: Settings) -> None:
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
            for operation in operations.values():
                _constrain_parameters(operation)
                requirement = _security(path, settings)
                if requirement is not None:
                    operation["security"] = requirement
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _security(path: str, settings: Settings) -> list[dict[str, list[str]]] | None:
    if path == TOKEN_PATH:
        return [{"apiKeyAuth": []}]
    if settings.enable_auth and path.startswith("/api/"):
        return [{"bearerAuth": []}, {"apiKeyAuth": []}]
    return None


def _constrain_parameters(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", ()):
        constraint = _PARAMETER_SCHEMAS.get(parameter.get("name"))
        if parameter.get("in") == "path" and constraint is not None:
            parameter["schema"] = {**parameter.get("schema", {}), **constraint}

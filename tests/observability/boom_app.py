"""The production app plus routes that fail, for the tests that need an unhandled exception.

Run: ``uvicorn tests.observability.boom_app:create_app --factory``
"""

from __future__ import annotations

from fastapi import FastAPI, Response

from lightweight_charts_pro_backend.app_production import create_app as create_production_app
from lightweight_charts_pro_backend.config import Settings

SECRET = "internal detail that must not reach the client"


async def boom(chart_id: str) -> Response:
    raise RuntimeError(SECRET)


def add_failing_routes(app: FastAPI) -> FastAPI:
    app.add_api_route("/api/charts/{chart_id}/boom", boom, methods=["GET"])
    return app


def create_app(settings: Settings | None = None) -> FastAPI:
    return add_failing_routes(create_production_app(settings))

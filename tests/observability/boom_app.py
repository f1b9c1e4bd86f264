"""The production app plus routes that fail, for the tests that need an unhandled exception.

Run: ``uvicorn tests.observability.boom_app:create_app --factory``
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
from fastapi import FastAPI, Response, WebSocket
from fastapi.responses import StreamingResponse

from lightweight_charts_pro_backend.app_production import create_app as create_production_app
from lightweight_charts_pro_backend.config import Settings

SECRET = "internal detail that must not reach the client"


async def boom(chart_id: str) -> Response:
    raise RuntimeError(SECRET)


async def lost_database(chart_id: str) -> Response:
    """A driver's error escaping the database layer, as a connection lost mid-query raises it."""
    raise asyncpg.exceptions.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation"
    )


async def _chunks() -> AsyncIterator[bytes]:
    yield b"partial"
    raise RuntimeError(SECRET)


async def broken_stream() -> StreamingResponse:
    """Fails after the response has started: too late for an envelope."""
    return StreamingResponse(_chunks())


async def socket(websocket: WebSocket, chart_id: str) -> None:
    """Accepts, logs, sends two messages; on "bye" closes with a reason, else waits for the
    client to close."""
    await websocket.accept()
    logging.getLogger("lightweight_charts_pro_backend.realtime").info("hello %s", chart_id)
    await websocket.send_text("one")
    await websocket.send_text("two")
    if await websocket.receive_text() == "bye":
        websocket.state.disconnect_reason = "done"
        await websocket.close(1000)
    else:
        await websocket.receive_text()


def add_failing_routes(app: FastAPI) -> FastAPI:
    app.add_api_route("/api/charts/{chart_id}/boom", boom, methods=["GET"])
    app.add_api_route("/api/charts/{chart_id}/lost", lost_database, methods=["GET"])
    app.add_api_route("/test/stream", broken_stream, methods=["GET"])
    app.add_api_websocket_route("/test/ws/{chart_id}", socket)
    return app


def create_app(settings: Settings | None = None) -> FastAPI:
    return add_failing_routes(create_production_app(settings))

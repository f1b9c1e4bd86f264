"""JSON logs of a real uvicorn process: request ids on access and error lines, 500 envelope."""

from __future__ import annotations

import pytest

from .boom_app import SECRET
from .conftest import request

pytestmark = pytest.mark.slow

APP = "tests.observability.boom_app:create_app"


def test_access_and_error_lines_carry_the_request_id(uvicorn_server) -> None:
    server = uvicorn_server(APP)

    created = request(server.port, "POST", "/api/charts/alpha", {"X-Request-ID": "req-ok-1"})
    assert created.status == 201
    assert created.headers["x-request-id"] == "req-ok-1"

    failed = request(server.port, "GET", "/api/charts/alpha/boom", {"X-Request-ID": "req-boom-1"})
    assert failed.status == 500
    assert failed.headers["x-request-id"] == "req-boom-1"
    body = failed.json()
    assert body["errorCode"] == "INTERNAL_ERROR"
    assert body["requestId"] == "req-boom-1"
    assert SECRET not in failed.body.decode()
    assert b"Traceback" not in failed.body and b"RuntimeError" not in failed.body

    ok_access = server.wait_for_line(
        lambda line: line.get("request_id") == "req-ok-1" and line.get("status") == 201
    )
    assert ok_access["logger"] == "lightweight_charts_pro_backend.access"
    assert ok_access["level"] == "INFO"
    assert ok_access["method"] == "POST"
    assert ok_access["route"] == "/api/charts/{chart_id}"
    assert ok_access["chart_id"] == "alpha"
    assert ok_access["duration_ms"] >= 0
    assert ok_access["client"] == "127.0.0.1"
    assert ok_access["timestamp"].endswith("+00:00")

    error = server.wait_for_line(
        lambda line: line.get("request_id") == "req-boom-1" and line["level"] == "ERROR"
    )
    assert "RuntimeError" in error["exc_info"] and SECRET in error["exc_info"]
    assert error["chart_id"] == "alpha"
    assert "/api/charts/{chart_id}/boom" in error["message"]

    boom_access = server.wait_for_line(
        lambda line: line.get("request_id") == "req-boom-1" and line.get("status") == 500
    )
    assert boom_access["route"] == "/api/charts/{chart_id}/boom"


def test_every_line_is_json_with_the_common_fields(uvicorn_server) -> None:
    server = uvicorn_server(APP)
    assert request(server.port, "GET", "/api/charts/missing").status == 404
    server.wait_for_line(lambda line: line.get("status") == 404)
    lines = server.json_lines()
    for line in lines:
        assert {"timestamp", "level", "logger", "message", "pid"} <= set(line), line
    # uvicorn's own lines come in the same format.
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    # One access line per request, from the service; uvicorn's own access line is silenced.
    assert not any(line["logger"] == "uvicorn.access" for line in lines)


def test_generated_request_id_when_the_incoming_one_is_malformed(uvicorn_server) -> None:
    server = uvicorn_server(APP)
    reply = request(server.port, "GET", "/health", {"X-Request-ID": "bad id with spaces"})
    generated = reply.headers["x-request-id"]
    assert generated != "bad id with spaces" and len(generated) == 32
    line = server.wait_for_line(lambda line: line.get("request_id") == generated)
    assert line["route"] == "/health" and line["status"] == 200


def test_log_level_is_honoured(uvicorn_server) -> None:
    server = uvicorn_server(APP, {"LOG_LEVEL": "WARNING"})
    request(server.port, "GET", "/api/charts/x/boom", {"X-Request-ID": "quiet-1"})
    server.wait_for_line(lambda line: line.get("request_id") == "quiet-1")
    levels = {line["level"] for line in server.json_lines()}
    assert levels <= {"WARNING", "ERROR", "CRITICAL"}


def test_readiness_reports_each_check_with_its_timing(uvicorn_server) -> None:
    server = uvicorn_server(APP)
    reply = request(server.port, "GET", "/health/ready")
    assert reply.status == 200
    body = reply.json()
    assert body["status"] == "ready"
    store = body["checks"]["store"]
    assert store["status"] == "ok" and store["durationMs"] >= 0
    liveness = request(server.port, "GET", "/health").json()
    assert liveness == {"status": "healthy", "version": "0.1.0"}

"""Logs of real uvicorn and gunicorn processes: request ids on access and error lines, the 500
envelope, aborted uploads, and no credentials from query strings."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from lightweight_charts_pro_backend.apikeys import new_api_key
from lightweight_charts_pro_backend.auth import create_access_token
from lightweight_charts_pro_backend.config import Settings

from .boom_app import SECRET
from .conftest import request
from .helpers import total

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


def test_an_error_after_the_response_started_is_logged_once(uvicorn_server) -> None:
    server = uvicorn_server(APP)
    try:
        reply = request(server.port, "GET", "/test/stream", {"X-Request-ID": "stream-1"})
        assert reply.status == 200 and SECRET.encode() not in reply.body
    except http.client.HTTPException:
        pass  # the connection is cut short: the client sees a truncated body
    server.wait_for_line(lambda line: line.get("request_id") == "stream-1" and "status" in line)
    mine = [line for line in server.json_lines() if line.get("request_id") == "stream-1"]
    assert [line["level"] for line in mine if line["level"] == "ERROR"] == ["ERROR"]
    assert [line["status"] for line in mine if "status" in line] == [200]


def test_an_aborted_upload_is_a_499_without_an_error_line(uvicorn_server) -> None:
    server = uvicorn_server(APP)
    head = (
        b"POST /api/charts/up/data/s HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000000\r\n"
        b"X-Request-ID: aborted-1\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + b'{"paneId": 0, "seriesType": "line", "data": [' + b" " * 10_000)
        time.sleep(0.5)  # the route is reading the body when the client gives up
    access = server.wait_for_line(
        lambda line: line.get("request_id") == "aborted-1" and "status" in line
    )
    assert access["status"] == 499 and access["route"] == "/api/charts/{chart_id}/data/{series_id}"
    request(server.port, "GET", "/health", {"X-Request-ID": "after-1"})
    server.wait_for_line(lambda line: line.get("request_id") == "after-1")
    assert not [line for line in server.json_lines() if line["level"] in ("ERROR", "CRITICAL")]
    assert "Traceback" not in server.output() and "ClientDisconnect" not in server.output()
    scrape = request(server.port, "GET", "/metrics").body.decode()
    route = "/api/charts/{chart_id}/data/{series_id}"
    assert total(scrape, "http_requests_total", route=route, status="4xx") == 1
    assert total(scrape, "http_requests_total", status="5xx") == 0


SECRET_KEY = "log-secret-" + "0123456789abcdef" * 4


def _auth_env() -> tuple[dict[str, str], str, str]:
    """Settings with auth on and one API key; a token and the key's secret."""
    secret, record = new_api_key("ingest")
    settings = Settings(_env_file=None, secret_key=SECRET_KEY)  # type: ignore[call-arg]
    jwt = create_access_token({"sub": "reader"}, settings)
    env = {
        "ENABLE_AUTH": "true",
        "SECRET_KEY": SECRET_KEY,
        "API_KEYS": json.dumps([record.to_setting()]),
    }
    return env, jwt, secret


def _open_sockets_with_query_tokens(port: int, jwt: str, key: str) -> None:
    with connect(f"ws://127.0.0.1:{port}/ws/charts/a?token={jwt}") as ws:
        assert json.loads(ws.recv())["type"] == "connected"
    with (
        connect(f"ws://127.0.0.1:{port}/ws/charts/a?token={key}") as ws,
        pytest.raises(ConnectionClosed) as refused,
    ):
        ws.recv()
    assert refused.value.rcvd is not None and refused.value.rcvd.code == 1008
    assert "not an API key" in refused.value.rcvd.reason


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_line_carries_a_query_strings_credentials(uvicorn_server, log_format: str) -> None:
    env, jwt, key = _auth_env()
    server = uvicorn_server(APP, {**env, "LOG_FORMAT": log_format})
    _open_sockets_with_query_tokens(server.port, jwt, key)
    deadline = time.monotonic() + 10
    while server.output().count("token=[REDACTED]") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    output = server.output()
    # uvicorn's own handshake lines are there, with the URL's credential blanked.
    handshakes = [line for line in output.splitlines() if "[accepted]" in line]
    assert len(handshakes) == 2, output[-3000:]
    assert all("/ws/charts/a?token=[REDACTED]" in line for line in handshakes)
    assert jwt not in output and key not in output


def test_no_gunicorn_line_carries_a_query_strings_credentials(gunicorn_server) -> None:
    env, jwt, key = _auth_env()
    server = gunicorn_server(1, env)
    _open_sockets_with_query_tokens(server.port, jwt, key)
    handshakes = []
    deadline = time.monotonic() + 10
    while len(handshakes) < 2 and time.monotonic() < deadline:
        handshakes = [line for line in server.json_lines() if "[accepted]" in line["message"]]
        time.sleep(0.05)
    assert [line["logger"] for line in handshakes] == ["uvicorn.error"] * 2
    assert all("?token=[REDACTED]" in line["message"] for line in handshakes)
    output = server.output()
    assert jwt not in output and key not in output


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
    datafeed = body["checks"]["datafeed"]
    assert datafeed["status"] == "ok" and datafeed["durationMs"] >= 0
    liveness = request(server.port, "GET", "/health").json()
    assert liveness == {"status": "healthy", "version": "0.1.0"}


def test_websocket_lines_carry_a_connection_id_and_metrics_count(uvicorn_server) -> None:
    server = uvicorn_server(APP)
    url = f"ws://127.0.0.1:{server.port}/test/ws/c9"
    with connect(url) as ws:
        assert ws.recv() == "one" and ws.recv() == "two"
        ws.send("bye")
    with connect(url) as ws:
        ws.recv()
        ws.recv()
        ws.send("stay")
    closed = server.wait_for_line(
        lambda line: "closed" in line["message"] and line.get("reason") == "client"
    )
    lines = server.json_lines()
    hello = [line for line in lines if line["message"] == "hello c9"]
    assert len(hello) == 2
    ids = [line["connection_id"] for line in hello]
    assert len(set(ids)) == 2 and all(len(i) == 16 for i in ids)
    assert all(line["chart_id"] == "c9" and line.get("request_id") for line in hello)
    closes = [
        line
        for line in lines
        if line["message"].startswith("WebSocket") and "closed" in line["message"]
    ]
    assert [(line["connection_id"], line["reason"]) for line in closes] == [
        (ids[0], "done"),
        (ids[1], "client"),
    ]
    assert closed["route"] == "/test/ws/{chart_id}" and closed["duration_ms"] > 0

    scrape = request(server.port, "GET", "/metrics").body.decode()
    assert total(scrape, "websocket_connections") == 0
    assert total(scrape, "websocket_messages_sent_total") == 4
    assert total(scrape, "websocket_disconnects_total", reason="done") == 1
    assert total(scrape, "websocket_disconnects_total", reason="client") == 1


def test_the_chart_socket_counts_history_and_connections(uvicorn_server) -> None:
    server = uvicorn_server(APP)
    points = [{"time": 1_700_000_000 + 60 * i, "value": float(i)} for i in range(30)]
    body = json.dumps({"paneId": 0, "seriesType": "line", "data": points}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/api/charts/live/data/s1", body, {"Content-Type": "application/json"})
    assert conn.getresponse().status == 200
    conn.close()
    with connect(f"ws://127.0.0.1:{server.port}/ws/charts/live") as ws:
        assert json.loads(ws.recv())["type"] == "connected"
        scrape = request(server.port, "GET", "/metrics").body.decode()
        assert total(scrape, "websocket_connections") == 1
        ws.send(json.dumps({"type": "request_history", "seriesId": "s1", "count": 7}))
        reply = json.loads(ws.recv())
        assert reply["type"] == "history_response" and len(reply["data"]) == 7
    closed = server.wait_for_line(
        lambda line: line.get("route") == "/ws/charts/{chart_id}" and "reason" in line
    )
    assert closed["reason"] == "client" and closed["chart_id"] == "live"
    scrape = request(server.port, "GET", "/metrics").body.decode()
    assert total(scrape, "history_requests_total", transport="websocket") == 1
    assert total(scrape, "history_chunk_points_sum") == 7
    assert total(scrape, "websocket_connections") == 0
    assert total(scrape, "websocket_messages_sent_total") >= 2
    assert total(scrape, "websocket_disconnects_total", reason="client") == 1

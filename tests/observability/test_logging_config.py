"""Log formats, context fields and the logging configuration of the process."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.routing import APIRoute
from pydantic import ValidationError

from lightweight_charts_pro_backend.config import Settings
from lightweight_charts_pro_backend.logging_config import (
    ACCESS_LOGGER,
    SERVER_LOGGERS,
    AccessLog,
    ContextFilter,
    JsonFormatter,
    LogHandler,
    TextFormatter,
    configure_logging,
    log_config_dict,
    make_formatter,
)
from lightweight_charts_pro_backend.request_context import (
    bind_log_fields,
    current_log_fields,
    log_fields_var,
)


def record(message: str = "Chart created", **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(
        "lightweight_charts_pro_backend.api", logging.INFO, __file__, 1, message, (), None
    )
    rec.__dict__.update(extra)
    return rec


@pytest.fixture
def request_fields() -> Iterator[dict[str, object]]:
    fields: dict[str, object] = {"request_id": "a1b2c3d4"}
    token = log_fields_var.set(fields)
    yield fields
    log_fields_var.reset(token)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_line_has_the_guide_fields(request_fields: dict[str, object]) -> None:
    bind_log_fields(chart_id="chart1", user="user123")
    rec = record(duration_ms=1.5)
    ContextFilter().filter(rec)
    line = json.loads(JsonFormatter().format(rec))
    assert line["level"] == "INFO"
    assert line["logger"] == "lightweight_charts_pro_backend.api"
    assert line["message"] == "Chart created"
    assert line["request_id"] == "a1b2c3d4"
    assert line["chart_id"] == "chart1" and line["user"] == "user123"
    assert line["duration_ms"] == 1.5
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0
    assert "levelname" not in line and "msg" not in line and "args" not in line


def test_explicit_extras_win_over_context(request_fields: dict[str, object]) -> None:
    rec = record(request_id="explicit")
    ContextFilter().filter(rec)
    assert json.loads(JsonFormatter().format(rec))["request_id"] == "explicit"


def test_json_line_carries_the_traceback_of_an_exception() -> None:
    try:
        raise KeyError("lost")
    except KeyError as exc:
        rec = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), (type(exc), exc, exc.__traceback__)
        )
    line = json.loads(JsonFormatter().format(rec))
    assert line["level"] == "ERROR" and "KeyError: 'lost'" in line["exc_info"]


def test_text_line_is_readable_with_the_request_id(request_fields: dict[str, object]) -> None:
    rec = record()
    ContextFilter().filter(rec)
    text = TextFormatter().format(rec)
    assert "INFO" in text and "[request_id=a1b2c3d4]" in text and text.endswith("Chart created")
    assert "+00:00" in text.split()[0]


def test_bind_outside_a_request_does_nothing() -> None:
    bind_log_fields(chart_id="x")
    assert log_fields_var.get() is None


def test_log_format_defaults_follow_the_environment() -> None:
    assert Settings(_env_file=None).resolved_log_format == "text"
    production = Settings(_env_file=None, environment="production")
    assert production.resolved_log_format == "json"
    assert (
        Settings(_env_file=None, log_format="TEXT", environment="production").resolved_log_format
        == "text"
    )
    assert Settings(_env_file=None, log_format="").log_format is None
    with pytest.raises(ValidationError):
        Settings(_env_file=None, log_format="xml")


def test_configure_replaces_its_handler_and_honours_the_level(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(_env_file=None, log_format="json", log_level="WARNING"))
    configure_logging(Settings(_env_file=None, log_format="json", log_level="WARNING"))
    ours = [h for h in logging.getLogger().handlers if isinstance(h, LogHandler)]
    assert len(ours) == 1
    logging.getLogger("lightweight_charts_pro_backend.test").info("hidden")
    logging.getLogger("uvicorn.error").warning("shown")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [("uvicorn.error", "shown")]


def test_uvicorns_access_line_is_off_with_ours_or_with_no_access_log(
    restore_logging: None,
) -> None:
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.addHandler(logging.NullHandler())  # as uvicorn's default configuration does
    configure_logging(Settings(_env_file=None), access_log=False)
    assert uvicorn_access.hasHandlers(), "kept, in the service's format"
    configure_logging(Settings(_env_file=None), access_log=True)
    assert not uvicorn_access.hasHandlers(), "the service writes its own access line"
    # uvicorn --no-access-log leaves the logger without handler and propagation: it stays off.
    configure_logging(Settings(_env_file=None), access_log=False)
    assert not uvicorn_access.hasHandlers()
    uvicorn_access.propagate = True


def test_dict_config_for_the_server_processes(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logging.config.dictConfig(log_config_dict(Settings(_env_file=None, log_format="json")))
    logging.getLogger("gunicorn.error").info("Booting worker")
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["logger"] == "gunicorn.error" and line["message"] == "Booting worker"
    for name in SERVER_LOGGERS:
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
API_KEY = "lcp_" + "k" * 43


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_credentials_in_query_strings_are_blanked(
    log_format: str, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(_env_file=None, log_format=log_format))
    uvicorn_error = logging.getLogger("uvicorn.error")
    # uvicorn's own handshake line, with its arguments as uvicorn passes them.
    uvicorn_error.info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:50000", f"/ws/charts/a?token={JWT}&x=1"
    )
    logging.getLogger("lightweight_charts_pro_backend.test").warning(
        f"GET /api/charts?api_key={API_KEY}&count=5 and /p?t={JWT}"
    )
    out = capsys.readouterr().out
    assert JWT not in out and API_KEY not in out
    assert "/ws/charts/a?token=[REDACTED]&x=1" in out
    assert "?api_key=[REDACTED]&count=5" in out and "/p?t=[REDACTED]" in out


def test_dict_config_blanks_credentials_in_gunicorns_access_atoms(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logging.config.dictConfig(log_config_dict(Settings(_env_file=None, log_format="json")))
    atoms = {"r": f"GET /ws/charts/a?token={JWT} HTTP/1.1", "s": "101"}
    logging.getLogger("gunicorn.access").info("%(r)s %(s)s", atoms)
    logging.getLogger("uvicorn.error").info('"WebSocket %s" 403', f"/ws/charts/a?token={API_KEY}")
    out = capsys.readouterr().out
    assert JWT not in out and API_KEY not in out
    lines = [json.loads(line)["message"] for line in out.splitlines()]
    assert lines == [
        "GET /ws/charts/a?token=[REDACTED] HTTP/1.1 101",
        '"WebSocket /ws/charts/a?token=[REDACTED]" 403',
    ]
    for name in SERVER_LOGGERS:
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def test_access_line_timestamps_are_those_datetime_writes() -> None:
    formatter = JsonFormatter()
    rng = random.Random(11)
    moments = [rng.uniform(0, 4e9) for _ in range(5_000)]
    moments += [0.0, 1.9999999, 1_700_000_000.0, 1_700_000_000.9999995, 1_700_000_001.0000004]
    for created in moments:
        line = json.loads(formatter.line(created, "access", "GET /"))
        assert line["timestamp"] == datetime.fromtimestamp(created, UTC).isoformat(), created


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_batched_access_line_is_the_line_of_a_record(
    log_format: str,
    request_fields: dict[str, object],
    restore_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(Settings(_env_file=None, log_format=log_format), access_log=True)
    bind_log_fields(chart_id="btc", user="alice")
    access = AccessLog()
    scope = {
        "method": "GET",
        "path": "/api/charts/btc",
        "route": APIRoute("/api/charts/{chart_id}", lambda: None),
        "client": ("::1", 50000),
    }
    ended = time.perf_counter()
    access.request(scope, 200, ended - 0.0012, ended, current_log_fields())
    access.write("WebSocket /ws/charts/{chart_id} accepted", {"client": "::1"})
    access.flush()
    batched = capsys.readouterr().out.splitlines()
    extras = {
        "method": "GET",
        "route": "/api/charts/{chart_id}",
        "path": "/api/charts/btc",
        "status": 200,
        "duration_ms": 1.2,
        "client": "::1",
    }
    expected = [
        ("GET /api/charts/btc 200 1.2ms", extras),
        ("WebSocket /ws/charts/{chart_id} accepted", {"client": "::1"}),
    ]
    assert len(batched) == len(expected)
    formatter = make_formatter(log_format)
    for text, (message, fields) in zip(batched, expected, strict=True):
        rec = record(message, **fields)
        rec.name = ACCESS_LOGGER
        ContextFilter().filter(rec)
        single = formatter.format(rec)
        if log_format == "text":
            assert text.partition(" ")[2] == single.partition(" ")[2]
            continue
        got, want = json.loads(text), json.loads(single)
        written = datetime.fromisoformat(got.pop("timestamp"))
        assert abs(written - datetime.fromisoformat(want.pop("timestamp"))).total_seconds() < 5
        assert got == want
        assert got["request_id"] == "a1b2c3d4" and got["user"] == "alice"


async def test_a_flush_lends_no_fields_to_the_lines_it_writes(
    restore_logging: None, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(_env_file=None, log_format="json"), access_log=True)
    caplog.set_level(logging.INFO)  # a second handler: the lines go through logging
    access = AccessLog()
    scope = {"method": "GET", "path": "/health", "client": ("::1", 50000)}
    ended = time.perf_counter()
    access.request(scope, 200, ended - 0.001, ended, {"request_id": "quiet"})
    token = log_fields_var.set({"request_id": "flusher", "user": "mallory"})
    try:
        access.flush()
    finally:
        log_fields_var.reset(token)
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert line["request_id"] == "quiet" and line["message"].startswith("GET /health 200")
    assert "user" not in line, "the flushing request's user is not this line's"


async def test_a_value_orjson_refuses_still_gets_its_line_and_its_metrics(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(_env_file=None, log_format="json"), access_log=True)
    reported: list[object] = []
    access = AccessLog()
    access.report_to(reported.extend)
    scope = {"method": "GET", "path": "/api/charts", "client": ("::1", 50000)}
    ended = time.perf_counter()
    # A JWT's sub may carry a lone surrogate; orjson refuses to encode one.
    access.request(scope, 200, ended - 0.001, ended, {"request_id": "odd", "user": "\ud800x"})
    access.flush()
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert line["request_id"] == "odd" and line["user"] == "\ud800x"
    assert [(method, status) for method, _, status, *_ in reported] == [("GET", 200)]  # type: ignore[misc]
    logging.getLogger("lightweight_charts_pro_backend.test").warning("odd", extra={"v": "\udfff"})
    assert json.loads(capsys.readouterr().out)["v"] == "\udfff"


async def test_a_stream_that_fails_costs_the_lines_not_the_request(
    restore_logging: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_logging(Settings(_env_file=None, log_format="json"), access_log=True)

    class Broken(io.BytesIO):
        def write(self, data: object) -> int:
            raise BrokenPipeError("the collector went away")

    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(Broken(), encoding="utf-8"))
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if isinstance(handler, LogHandler)]
    monkeypatch.setattr(root, "handlers", ours)  # the service's handler alone: one batched write
    reported: list[object] = []
    access = AccessLog()
    access.report_to(reported.extend)
    scope = {"method": "GET", "path": "/api/charts", "client": ("::1", 50000)}
    ended = time.perf_counter()
    access.request(scope, 200, ended - 0.001, ended, {"request_id": "lost"})
    access.flush()  # does not raise
    assert len(reported) == 1, "the metrics still count the request"
    error = capsys.readouterr().err
    assert "BrokenPipeError" in error and "access lines lost" in error

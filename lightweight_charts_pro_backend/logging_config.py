"""Log lines: one JSON object per line in production, readable text in development.

Every line carries ``timestamp`` (ISO-8601 UTC with offset), ``level``, ``logger``, ``message``
and ``pid``, plus ``request_id``, ``chart_id``, ``user`` and ``connection_id`` when it is written
inside a request or WebSocket connection that knows them, plus the ``extra`` the caller passed.
uvicorn's and gunicorn's own loggers are routed through the same handler, so a deployment ships
one format, and credentials in the query strings their lines quote are blanked
(:class:`RedactCredentials`). Example line::

    {"timestamp": "2025-01-15T10:30:00.123456+00:00", "level": "INFO", "logger":
     "lightweight_charts_pro_backend.access", "message": "GET /api/charts/chart1 200 0.31ms",
     "request_id": "a1b2c3d4", "chart_id": "chart1", "method": "GET", "status": 200, ...}
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter
from starlette.types import Scope

from .apikeys import API_KEY_PREFIX
from .config import Settings
from .request_context import EXCHANGE_KEY, log_fields_var, route_template

ACCESS_LOGGER = "lightweight_charts_pro_backend.access"
#: A finished HTTP request as the metrics take it: method, route template, status, seconds,
#: and the points of the history chunk it served (``None`` if it served none).
FinishedRequest = tuple[str, str, int, float, int | None]
#: The servers' loggers, sent to the root handler so they share the service's format.
SERVER_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "gunicorn",
    "gunicorn.error",
    "gunicorn.access",
)
# Attributes every LogRecord has; anything else on a record is an extra worth writing out.
# uvicorn adds an ANSI-coloured copy of each message, noise in JSON.
_RECORD_ATTRIBUTES = frozenset(
    [*RESERVED_ATTRS, "message", "asctime", "taskName", "color_message", "context"]
)
_NO_FIELDS: dict[str, Any] = {}
_UTF8 = frozenset({"utf-8", "utf8"})
# Fields the text format shows in brackets, in this order, when a line has them.
_CONTEXT_FIELDS = ("request_id", "connection_id", "chart_id", "user")


class ContextFilter(logging.Filter):
    """Copies the fields bound to the current request onto each record (explicit extras win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = log_fields_var.get()
        if fields:
            attributes = record.__dict__
            for key, value in fields.items():
                attributes.setdefault(key, value)
        return True


class RedactCredentials(logging.Filter):
    """Blanks the credentials in query strings quoted by a record's message or arguments.

    uvicorn logs each WebSocket handshake with its full URL (``"WebSocket /ws/charts/a?token=..."
    [accepted]``), and a URL may reach other lines too (an HTTP client's, a server's access
    line). A parameter is blanked when its name says it is a credential (``token``,
    ``api_key``, ``password``, ...) or its value looks like one (a JWT, an API key), so the line
    keeps its shape: ``?token=[REDACTED]``. Arguments are rewritten in place, which also covers
    uvicorn's coloured copy of the message and gunicorn's access atoms.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "=" in record.msg:
            record.msg = redact_query_credentials(record.msg)
        args = record.args
        if isinstance(args, tuple):
            if any(isinstance(arg, str) and "=" in arg for arg in args):
                record.args = tuple(
                    redact_query_credentials(arg) if isinstance(arg, str) else arg for arg in args
                )
        elif isinstance(args, dict):
            for key, value in args.items():
                if isinstance(value, str) and "=" in value:
                    args[key] = redact_query_credentials(value)
        return True


REDACTED = "[REDACTED]"
_QUERY_PARAMETER = re.compile(r"(?P<head>[?&;](?P<name>[^=&;#?\s\"']+)=)(?P<value>[^&;#\s\"']*)")
_CREDENTIAL_NAME = re.compile(
    r"token|key|secret|passw|pwd|auth|sig|jwt|credential|session", re.IGNORECASE
)
# A JWT (its header is base64url JSON: '{"' encodes as 'eyJ') or one of the service's API keys.
_CREDENTIAL_VALUE = re.compile(r"eyJ|" + re.escape(API_KEY_PREFIX))


def _redact_parameter(match: re.Match[str]) -> str:
    value = match["value"]
    if value and (_CREDENTIAL_NAME.search(match["name"]) or _CREDENTIAL_VALUE.match(value)):
        return match["head"] + REDACTED
    return match[0]


def redact_query_credentials(text: str) -> str:
    """``text`` with the values of credential parameters in its query strings blanked."""
    return _QUERY_PARAMETER.sub(_redact_parameter, text)


class JsonFormatter(OrjsonFormatter):
    """One JSON object per record: timestamp, level, logger, message, pid, then the extras.

    Fields are gathered here rather than by the library's generic merge, which costs more than
    the rest of an access line together; serialization (orjson), exception and stack rendering
    stay the library's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pid = os.getpid()

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["timestamp"] = datetime.fromtimestamp(record.created, UTC)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        # Several workers write to one stream; the pid tells their lines apart.
        log_data["pid"] = record.process
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key[0] != "_":
                log_data[key] = value
        log_data.update(message_dict)

    def line(
        self,
        created: float,
        logger: str,
        message: str,
        context: dict[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
    ) -> bytes:
        """The INFO line, newline included, that ``format`` would write for a record of this
        process with ``context`` and then ``extras`` as its extra fields (later keys win).

        orjson writes the timestamp's ``datetime`` as ``isoformat`` does.
        """
        data = {
            "timestamp": datetime.fromtimestamp(created, UTC),
            "level": "INFO",
            "logger": logger,
            "message": message,
            "pid": self.pid,
            **(context or _NO_FIELDS),
            **(extras or _NO_FIELDS),
        }
        try:
            return orjson.dumps(data, default=self.json_default, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:
            return (_lenient_json(data) + "\n").encode()

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        try:
            return super().jsonify_log_record(log_data)
        except orjson.JSONEncodeError:
            return _lenient_json(log_data)


def _lenient_json(data: dict[str, Any]) -> str:
    """JSON for values orjson refuses, such as a string with a lone surrogate (a JWT's ``sub``
    may carry one): the standard library escapes them; anything else is written as text."""
    return json.dumps(data, default=str, ensure_ascii=True, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``2025-01-15T10:30:00.123+00:00 INFO    logger [request_id=...] message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-8s %(name)s%(context)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        record.context = _context(record.__dict__)
        return super().format(record)

    def line(
        self,
        created: float,
        logger: str,
        message: str,
        context: dict[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
    ) -> bytes:
        """The INFO line, newline included, that ``format`` would write for a record with
        ``context`` and ``extras`` as its extra fields."""
        stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        fields = {**(context or _NO_FIELDS), **(extras or _NO_FIELDS)}
        return f"{stamp} INFO     {logger}{_context(fields)} {message}\n".encode()


def _context(attributes: dict[str, Any]) -> str:
    parts = [f"{key}={attributes[key]}" for key in _CONTEXT_FIELDS if key in attributes]
    return f" [{' '.join(parts)}]" if parts else ""


class LogHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stdout`` is at the time of each record.

    Looking the stream up late keeps working when stdout is replaced after configuration (test
    capture, a supervisor's redirection); the class also marks the handler as ours, so that
    configuring again replaces it instead of stacking a second one.
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        return None


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(settings: Settings, *, access_log: bool = False) -> None:
    """Route every log line of the process through one handler in ``settings``' format.

    ``access_log``: the service writes its own access line per request (with route template,
    request id and duration), so uvicorn's shorter access line is switched off to avoid two
    lines per request; without it, uvicorn's line is kept unless uvicorn was started with
    ``--no-access-log``. Safe to call again (a later call replaces the handler of an earlier
    one).
    """
    # Neither format shows thread or process names; not collecting them makes every record
    # cheaper (the access line is written once per request).
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = LogHandler()
    handler.setFormatter(make_formatter(settings.resolved_log_format))
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactCredentials())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, LogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        if name == "uvicorn.access" and (access_log or _switched_off(server_logger)):
            # uvicorn writes access lines only while this logger has somewhere to send them:
            # no handler and no propagation is its own ``--no-access-log``.
            server_logger.handlers.clear()
            server_logger.propagate = False
            continue
        server_logger.handlers.clear()
        server_logger.propagate = True
        server_logger.setLevel(logging.NOTSET)


def _switched_off(logger: logging.Logger) -> bool:
    return not logger.handlers and not logger.propagate


def log_config_dict(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document with the same handler and format.

    For the server processes that log before the app exists: gunicorn's master
    (``logconfig_dict`` in ``gunicorn.conf.py``) and uvicorn's supervisor (``--log-config``).
    """
    level = settings.log_level
    server = {"level": level, "handlers": ["default"], "propagate": False}
    formatter = {"()": f"{__name__}.make_formatter", "log_format": settings.resolved_log_format}
    handler = {
        "()": f"{__name__}.LogHandler",
        "formatter": "default",
        "filters": ["context", "redact"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": f"{__name__}.ContextFilter"},
            "redact": {"()": f"{__name__}.RedactCredentials"},
        },
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {name: dict(server) for name in SERVER_LOGGERS},
    }


class AccessLog:
    """Access lines written in batches, as nginx's ``access_log ... buffer= flush=`` does.

    One line per request is the most frequent thing the service logs; built one ``LogRecord``
    at a time (record, filters, formatter, handler lock, one write and flush each) it costs more
    than serving a history chunk. Here a finished request is queued as its raw values and the
    queue is rendered by the formatter of the process's handler and written with one call when
    it holds ``max_lines`` entries or its oldest is ``max_delay`` seconds old; ``flush`` empties
    it (the app does at shutdown, the metrics before each scrape). Timestamps are those of the
    requests.

    The same batches can feed the request metrics (:meth:`report_to`): the request's route,
    status and duration are worked out once per batch for both, instead of once per request on
    the request's path.

    When the access logger does not end at the service's handler alone (tests capturing logs,
    a custom logging configuration), the queued lines go through ``logging`` as normal records
    when the queue is flushed.
    """

    def __init__(self, *, max_lines: int = 64, max_delay: float = 0.1) -> None:
        self.max_lines = max_lines
        self.max_delay = max_delay
        self.logger = logging.getLogger(ACCESS_LOGGER)
        # A finished HTTP request: (scope, status, started, ended, its context fields);
        # another line: (None, time, the context fields, message, extras).
        self._pending: list[tuple[Any, ...]] = []
        self._report: Callable[[list[FinishedRequest]], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._lock = threading.Lock()

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def report_to(self, report: Callable[[list[FinishedRequest]], None]) -> None:
        """Hand each batch's finished requests to ``report`` (see ``FinishedRequest``), whether
        or not access lines are written."""
        self._report = report

    def request(
        self,
        scope: Scope,
        status: int,
        started: float,
        ended: float,
        fields: dict[str, Any] | None,
    ) -> None:
        """Queue a finished HTTP request: its ASGI scope (read when the batch is written),
        status, ``time.perf_counter()`` at its start and end, and its context fields."""
        pending = self._pending
        pending.append((scope, status, started, ended, fields))
        if len(pending) >= self.max_lines:
            self.flush()
        elif self._timer is None:
            self._schedule()

    def write(self, message: str, fields: dict[str, Any]) -> None:
        """Queue one INFO line; ``fields`` are its extras (the request's context fields are
        added, explicit fields win)."""
        pending = self._pending
        pending.append((None, time.time(), log_fields_var.get(), message, fields))
        if len(pending) >= self.max_lines:
            self.flush()
        elif self._timer is None:
            self._schedule()

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
        else:
            self._timer = loop.call_later(self.max_delay, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        write_lines = self.enabled()
        if self._report is None and not write_lines:
            return
        finished: list[FinishedRequest] = [
            (
                entry[0]["method"],
                route_template(entry[0]),
                entry[1],
                entry[3] - entry[2],
                getattr(entry[0].get(EXCHANGE_KEY), "points", None),
            )
            for entry in pending
            if entry[0] is not None
        ]
        # Reported before any line is rendered: a line that fails must not cost the metrics.
        if self._report is not None and finished:
            self._report(finished)
        if write_lines:
            self._write(pending, iter(finished))

    def _write(self, pending: list[tuple[Any, ...]], finished: Iterator[FinishedRequest]) -> None:
        handler = _sole_handler(self.logger)
        formatter = handler.formatter if handler is not None else None
        line = formatter.line if isinstance(formatter, JsonFormatter | TextFormatter) else None
        if isinstance(formatter, JsonFormatter):
            formatter.pid = os.getpid()
        name = self.logger.name
        lines: list[bytes] = []
        records: list[tuple[float, dict[str, Any] | None, str, dict[str, Any]]] = []
        # perf_counter readings to wall-clock time; the two clocks drift apart by far less
        # than a microsecond over one batch.
        offset = time.time() - time.perf_counter()
        for entry in pending:
            scope = entry[0]
            if scope is None:
                _, created, context, message, extras = entry
            else:
                context = entry[4]
                method, route, status, seconds, _points = next(finished)
                params = scope.get("path_params")
                if context is not None and params and "chart_id" in params:
                    context.setdefault("chart_id", params["chart_id"])
                path = scope["path"]
                client = scope.get("client")
                duration_ms = round(seconds * 1e6) / 1000
                extras = {
                    "method": method,
                    "route": route,
                    "path": path,
                    "status": status,
                    "duration_ms": duration_ms,
                    "client": client[0] if client else None,
                }
                message = f"{method} {path} {status} {duration_ms}ms"
                created = entry[3] + offset
            if line is not None:
                lines.append(line(created, name, message, context, extras))
            else:
                records.append((created, context, message, extras))
        if handler is not None and lines:
            handler.acquire()
            try:
                _write_bytes(handler.stream, b"".join(lines))
            except Exception:
                # As logging does for one record (a closed pipe, a full disk): report it on
                # stderr and go on; the request that happened to flush must not fail for it.
                handler.handleError(
                    logging.makeLogRecord(
                        {"name": name, "msg": "%d access lines lost", "args": (len(lines),)}
                    )
                )
            finally:
                handler.release()
        if not records:
            return
        # Each record carries its own request's fields: whatever request the flush runs in
        # must not lend it any through ContextFilter.
        token = log_fields_var.set(None)
        try:
            for created, context, message, extras in records:
                fields = {**context, **extras} if context else extras
                record = self.logger.makeRecord(
                    name, logging.INFO, __file__, 0, message, (), None, extra=fields
                )
                record.created = created
                self.logger.handle(record)
        finally:
            log_fields_var.reset(token)


def _write_bytes(stream: TextIO, data: bytes) -> None:
    """Write UTF-8 ``data`` to a text stream, past its text layer when it has a binary one."""
    buffer = getattr(stream, "buffer", None)
    if buffer is not None and (getattr(stream, "encoding", "") or "").lower() in _UTF8:
        stream.flush()
        buffer.write(data)
        buffer.flush()
    else:
        stream.write(data.decode())
        stream.flush()


def _sole_handler(logger: logging.Logger) -> LogHandler | None:
    """The service's handler when it is the only place ``logger``'s records go, else None."""
    if logger.handlers or logger.filters or not logger.propagate:
        return None
    node: Any = logger.parent
    while node.parent is not None:
        if node.handlers or not node.propagate:
            return None
        node = node.parent
    if len(node.handlers) != 1:
        return None
    handler = node.handlers[0]
    if isinstance(handler, LogHandler) and isinstance(
        handler.formatter, JsonFormatter | TextFormatter
    ):
        return handler
    return None

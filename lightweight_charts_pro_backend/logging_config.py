"""Log lines: one JSON object per line in production, readable text in development.

Every line carries ``timestamp`` (ISO-8601 UTC with offset), ``level``, ``logger``, ``message``
and ``pid``, plus ``request_id``, ``chart_id``, ``user`` and ``connection_id`` when it is written
inside a request or WebSocket connection that knows them, plus the ``extra`` the caller passed.
uvicorn's and gunicorn's own loggers are routed through the same handler, so a deployment ships
one format. Example line::

    {"timestamp": "2025-01-15T10:30:00.123456+00:00", "level": "INFO", "logger":
     "lightweight_charts_pro_backend.access", "message": "GET /api/charts/chart1 200 0.31ms",
     "request_id": "a1b2c3d4", "chart_id": "chart1", "method": "GET", "status": 200, ...}
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from .config import Settings
from .request_context import log_fields_var

ACCESS_LOGGER = "lightweight_charts_pro_backend.access"
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


class JsonFormatter(OrjsonFormatter):
    """One JSON object per record: timestamp, level, logger, message, pid, then the extras.

    Fields are gathered here rather than by the library's generic merge, which costs more than
    the rest of an access line together; serialization (orjson), exception and stack rendering
    stay the library's.
    """

    def __init__(self) -> None:
        super().__init__()
        self._stamps = _Stamps()

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
        self, created: float, logger: str, message: str, *fields: dict[str, Any] | None
    ) -> bytes:
        """The INFO line ``format`` would write for a record with ``fields`` as its extras
        (later dicts win)."""
        data: dict[str, Any] = {
            "timestamp": self._stamps.isoformat(created),
            "level": "INFO",
            "logger": logger,
            "message": message,
            "pid": self._stamps.pid,
        }
        for extra in fields:
            if extra:
                data.update(extra)
        return orjson.dumps(data, default=self.json_default)


class _Stamps:
    """ISO-8601 UTC timestamps of recent seconds, formatted once per second.

    The access log writes thousands of lines a second; formatting each one's time from scratch
    costs as much as the rest of the line. The text is what ``datetime.isoformat`` writes.
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""
        self.pid = os.getpid()

    def isoformat(self, created: float) -> str:
        # Split and rounded as datetime.fromtimestamp does, so the text is the same to the µs.
        fraction, whole = math.modf(created)
        micros = round(fraction * 1e6)
        if micros >= 1_000_000:
            whole, micros = whole + 1, micros - 1_000_000
        elif micros < 0:
            whole, micros = whole - 1, micros + 1_000_000
        second = int(whole)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).isoformat()[:-6]
            self.pid = os.getpid()
        if micros == 0:
            return f"{self._prefix}+00:00"
        return f"{self._prefix}.{micros:06d}+00:00"


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
        self, created: float, logger: str, message: str, *fields: dict[str, Any] | None
    ) -> bytes:
        """The INFO line ``format`` would write for a record with ``fields`` as its extras."""
        stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        context: dict[str, Any] = {}
        for extra in fields:
            if extra:
                context.update(extra)
        return f"{stamp} INFO     {logger}{_context(context)} {message}".encode()


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
    handler = {"()": f"{__name__}.LogHandler", "formatter": "default", "filters": ["context"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": f"{__name__}.ContextFilter"}},
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {name: dict(server) for name in SERVER_LOGGERS},
    }


class AccessLog:
    """Access lines written in batches, as nginx's ``access_log ... buffer= flush=`` does.

    One line per request is the most frequent thing the service logs; built one ``LogRecord``
    at a time (record, filters, formatter, handler lock, one write and flush each) it costs more
    than serving a history chunk. Here a line is queued as a dict and the queue is rendered by
    the formatter of the process's handler and written with one call when it holds
    ``max_lines`` lines or its oldest line is ``max_delay`` seconds old; ``flush`` empties it
    (the app does at shutdown). Timestamps are those of the requests.

    When the access logger does not end at the service's handler alone (tests capturing logs,
    a custom logging configuration), the queued lines go through ``logging`` as normal records
    when the queue is flushed.
    """

    def __init__(self, *, max_lines: int = 64, max_delay: float = 0.1) -> None:
        self.max_lines = max_lines
        self.max_delay = max_delay
        self.logger = logging.getLogger(ACCESS_LOGGER)
        # (time, the request's context fields, message, extras); a request's line is queued
        # as its raw values (message None) and rendered when the queue is written.
        self._pending: list[tuple[float, dict[str, Any] | None, str | None, Any]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._lock = threading.Lock()

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def request(
        self, method: str, path: str, route: str, status: int, seconds: float, client: str | None
    ) -> None:
        """Queue the access line of one HTTP request (with the request's context fields)."""
        self._queue(
            (
                time.time(),
                log_fields_var.get(),
                None,
                (method, path, route, status, seconds, client),
            )
        )

    def write(self, message: str, fields: dict[str, Any]) -> None:
        """Queue one INFO line; ``fields`` are its extras (the request's context fields are
        added, explicit fields win)."""
        self._queue((time.time(), log_fields_var.get(), message, fields))

    def _queue(self, entry: tuple[float, dict[str, Any] | None, str | None, Any]) -> None:
        pending = self._pending
        pending.append(entry)
        if len(pending) >= self.max_lines:
            self.flush()
        elif self._timer is None:
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
        lines = [
            (created, context, *_message(message, extra))
            for created, context, message, extra in pending
        ]
        handler = _sole_handler(self.logger)
        if handler is None:
            for created, context, message, fields in lines:
                extra = {**context, **fields} if context else fields
                record = self.logger.makeRecord(
                    self.logger.name, logging.INFO, __file__, 0, message, (), None, extra=extra
                )
                record.created = created
                self.logger.handle(record)
            return
        formatter = handler.formatter
        assert isinstance(formatter, JsonFormatter | TextFormatter)
        name = self.logger.name
        text = b"\n".join(
            formatter.line(created, name, message, context, fields)
            for created, context, message, fields in lines
        )
        handler.acquire()
        try:
            handler.stream.write(text.decode() + "\n")
            handler.stream.flush()
        finally:
            handler.release()


def _message(message: str | None, extra: Any) -> tuple[str, dict[str, Any]]:
    """The message and extras of a queued line; a request's are made from its values."""
    if message is not None:
        return message, extra
    method, path, route, status, seconds, client = extra
    duration_ms = round(seconds * 1000, 3)
    fields = {
        "method": method,
        "route": route,
        "path": path,
        "status": status,
        "duration_ms": duration_ms,
        "client": client,
    }
    return f"{method} {path} {status} {duration_ms:.2f}ms", fields


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

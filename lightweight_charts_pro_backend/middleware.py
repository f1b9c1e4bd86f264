"""Pure ASGI middleware shared by both apps.

Order, outermost first, as ``app.build_app`` installs it::

    RequestIdMiddleware      request id, log context, rate limits, access line, metrics
      CORSMiddleware
        ErrorEnvelopeMiddleware  a lost database -> 503, any other exception -> 500 envelope
                                 (inside CORS: browsers can read it)
          udf.routes.HistoryLane the UDF history route without FastAPI's routing
            HistoryLane          the REST history route without FastAPI's routing
              FastAPI's exception handlers and routes

so a 500 produced by the envelope still passes through CORS and gets its ``X-Request-ID``
header, its access line and its metrics on the way out. A request refused by its rate limit is
answered by the limiter's own CORS-wrapped responder, and gets them too.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import time
import traceback
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api.errors import render_charts_error
from .database import as_unavailable
from .logging_config import AccessLog
from .metrics import METHODS, Metrics, close_reason
from .ratelimit import DECISION_KEY, RateLimitGate
from .request_context import (
    EXCHANGE_KEY,
    Exchange,
    log_fields_var,
    request_id_var,
    route_template,
)

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

logger = logging.getLogger(__name__)


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _bind_path_fields(scope: Scope, fields: dict[str, Any]) -> None:
    params = scope.get("path_params")
    if params and "chart_id" in params:
        fields.setdefault("chart_id", params["chart_id"])


def error_envelope(request_id: str | None, exc: BaseException | None, debug: bool) -> bytes:
    """The body of a 500: no exception text, no traceback, unless the app runs with DEBUG."""
    body: dict[str, Any] = {
        "detail": "Internal server error; the request id identifies it in the server logs.",
        "errorCode": "INTERNAL_ERROR",
        "requestId": request_id,
    }
    if debug and exc is not None:
        body["exception"] = f"{type(exc).__name__}: {exc}"
        body["traceback"] = traceback.format_exception(exc)
    return orjson.dumps(body)


async def send_failure(
    scope: Scope, receive: Receive, send: Send, exc: Exception, *, debug: bool
) -> None:
    """Answer a request that ``exc`` ended before it answered, and log it: a database that could
    not be reached or dropped the connection is 503 ``DATABASE_UNAVAILABLE`` with
    ``Retry-After`` (logged as a warning: the client is told to retry, nothing is broken here);
    anything else is the 500 envelope, logged with its traceback."""
    fields = log_fields_var.get()
    if fields is not None:
        _bind_path_fields(scope, fields)
    method = scope.get("method", "WS")
    refusal = as_unavailable(exc)
    if refusal is not None:
        logger.warning("%s %s: %s", method, route_template(scope), refusal.detail)
        await render_charts_error(refusal)(scope, receive, send)
        return
    logger.error(
        "Unhandled %s in %s %s", type(exc).__name__, method, route_template(scope), exc_info=exc
    )
    await send_error_envelope(send, exc, debug)


async def send_error_envelope(send: Send, exc: BaseException | None, debug: bool) -> None:
    body = error_envelope(request_id_var.get(), exc, debug)
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestIdMiddleware:
    """Accept a well-formed ``X-Request-ID`` or make one; echo it on every HTTP response.

    The id is available as ``scope["state"]["request_id"]``, through
    ``request_context.current_request_id()`` and on every log line written while the request
    runs. A WebSocket connection also gets ``scope["state"]["connection_id"]`` for its lines.

    ``access_log``: one line per request on the ``lightweight_charts_pro_backend.access``
    logger (method, route template, status, duration_ms, client), and an opened and a closed
    line per WebSocket connection, written in batches by ``AccessLog``. ``metrics``: the
    ``http_*`` and ``websocket_*`` metrics. ``rate_limits``: count each request and answer a
    refused one with the gate's refusal instead of the app. All off (the development app)
    leaves only the id.
    An exception that escapes the inner app is logged and answered here as a last resort, as
    ``send_failure`` does; a ``ClientDisconnect`` (the client aborted its upload) is neither: the
    request is counted as 499.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        access_log: AccessLog | None = None,
        metrics: Metrics | None = None,
        rate_limits: RateLimitGate | None = None,
    ) -> None:
        self.app = app
        self.rate_limits = rate_limits
        self.access_log = access_log
        self.metrics = metrics if metrics is not None and metrics.enabled else None
        # Finished requests reach one process's metrics in the access log's batches (scrapes
        # flush it first); with several workers each is reported on its own, at once.
        self._report_each: Metrics | None = None
        self._started: collections.Counter[str] | None = None
        if self.metrics is not None:
            if access_log is not None and self.metrics.batched:
                access_log.report_to(self.metrics.requests_finished)
                self.metrics.before_collect(access_log.flush)
                self._started = self.metrics.started
            else:
                self._report_each = self.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                if _VALID_REQUEST_ID.fullmatch(value):
                    request_id = value.decode()
                break
        if request_id is None:
            request_id = os.urandom(16).hex()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        fields: dict[str, Any] = {"request_id": request_id}
        id_token = request_id_var.set(request_id)
        fields_token = log_fields_var.set(fields)
        try:
            if kind == "http":
                await self._http(scope, receive, send, request_id, fields)
            else:
                connection_id = os.urandom(8).hex()
                state["connection_id"] = fields["connection_id"] = connection_id
                await self._websocket(scope, receive, send, fields)
        finally:
            log_fields_var.reset(fields_token)
            request_id_var.reset(id_token)

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, fields: dict[str, Any]
    ) -> None:
        exchange = Exchange([(REQUEST_ID_HEADER, request_id.encode())])
        scope[EXCHANGE_KEY] = exchange

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *exchange.headers]
                exchange.status = message["status"]
            await send(message)

        access_log = self.access_log
        if self._started is not None:
            method = scope["method"]
            self._started[method if method in METHODS else "other"] += 1
        elif self.metrics is not None:
            self.metrics.request_started(scope["method"])
        started = time.perf_counter()
        try:
            app = self.app
            gate = self.rate_limits
            if gate is not None:
                # Decided in this process without a coroutine, unless only Redis can tell.
                admitted = gate.admit_now(scope, exchange.headers)
                if admitted is None:
                    admitted = await gate.admit(scope, exchange.headers)
                if not admitted:
                    app = gate.refusal
            await app(scope, receive, send_with_headers)
        except ClientDisconnect:
            pass  # the client's doing, not an error: no response, no ERROR line; 499 below
        except Exception as exc:
            if exchange.status != 0:
                _bind_path_fields(scope, fields)
                logger.error(
                    "Unhandled %s in %s %s after the response started",
                    type(exc).__name__,
                    scope["method"],
                    route_template(scope),
                    exc_info=exc,
                )
            else:
                await send_failure(scope, receive, send_with_headers, exc, debug=False)
        finally:
            # A client that went away before the response started (an aborted upload, for
            # one) counts as 499, the de-facto code for "client closed request".
            status = exchange.status or 499
            ended = time.perf_counter()
            if self._report_each is not None:
                route = route_template(scope)
                seconds = ended - started
                self._report_each.request_finished(
                    scope["method"], route, status, seconds, exchange.points
                )
            if access_log is not None:
                access_log.request(scope, status, started, ended, fields)

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, fields: dict[str, Any]
    ) -> None:
        access_log = self.access_log
        if access_log is not None and not access_log.enabled():
            access_log = None
        metrics = self.metrics
        if access_log is None and metrics is None:
            await self._run_websocket(scope, receive, send, fields)
            return
        accepted = False
        server_close: int | None = None
        client_close: int | None = None
        started = time.perf_counter()

        async def observing_send(message: Message) -> None:
            nonlocal accepted, server_close
            kind = message["type"]
            if kind == "websocket.send":
                if metrics is not None:
                    metrics.websocket_message_sent()
            elif kind == "websocket.accept":
                accepted = True
                if metrics is not None:
                    metrics.websocket_opened()
                if access_log is not None:
                    _bind_path_fields(scope, fields)
                    route = route_template(scope)
                    where = {"route": route, "client": _client(scope)}
                    access_log.write(f"WebSocket {route} accepted", where)
            elif kind == "websocket.close" and server_close is None:
                server_close = int(message.get("code", 1000))
            await send(message)

        async def observing_receive() -> Message:
            nonlocal client_close
            message = await receive()
            if message["type"] == "websocket.disconnect" and client_close is None:
                client_close = int(message.get("code", 1005))
            return message

        failed = False
        try:
            await self._run_websocket(scope, observing_receive, observing_send, fields)
        except BaseException:
            failed = True
            raise
        finally:
            state = scope.get("state", {})
            if server_close is None and client_close is not None:
                reason, code = "client", client_close
            elif server_close is not None:
                code = server_close
                reason = state.get("disconnect_reason") or close_reason(code)
            else:
                reason, code = ("error" if failed else "abnormal"), 1006
            route = route_template(scope)
            if accepted and metrics is not None:
                metrics.websocket_closed(str(reason))
            if access_log is not None:
                if accepted:
                    access_log.write(
                        f"WebSocket {route} closed {code} ({reason})",
                        {
                            "route": route,
                            "close_code": code,
                            "reason": reason,
                            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                            "client": _client(scope),
                        },
                    )
                else:
                    where = {"route": route, "client": _client(scope)}
                    access_log.write(f"WebSocket {route} rejected", where)

    async def _run_websocket(
        self, scope: Scope, receive: Receive, send: Send, fields: dict[str, Any]
    ) -> None:
        app = self.app
        gate = self.rate_limits
        try:
            if gate is not None:
                decision = await gate.decide(scope)
                if decision is not None and not decision.allowed:
                    scope[DECISION_KEY] = decision
                    app = gate.refusal
            await app(scope, receive, send)
        except Exception as exc:
            _bind_path_fields(scope, fields)
            logger.error(
                "Unhandled %s in WebSocket %s",
                type(exc).__name__,
                route_template(scope),
                exc_info=exc,
            )


class ErrorEnvelopeMiddleware:
    """Turns any exception a route lets escape into an answer (``send_failure``): 503 when it
    means the database went away, else the 500 error envelope.

    A 500's exception and traceback go to the log (``ERROR``, with the request id); the body
    says only that something failed and which request id to look for, unless ``debug``.
    Install it inside :class:`RequestIdMiddleware`, whose :class:`Exchange` tells it whether
    the response has already started.
    """

    def __init__(self, app: ASGIApp, *, debug: bool = False) -> None:
        self.app = app
        self.debug = debug

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            # The client went away while its body was being read: nobody to answer, and
            # nothing failed here. The outer middleware counts the request as 499.
            raise
        except Exception as exc:
            # The outermost middleware records in the request's Exchange when the response
            # started: after that nothing can be sent, and it logs the exception.
            exchange: Exchange = scope[EXCHANGE_KEY]
            if exchange.status != 0:
                raise
            await send_failure(scope, receive, send, exc, debug=self.debug)

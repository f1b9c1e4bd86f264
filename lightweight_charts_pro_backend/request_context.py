"""Per-request context shared by middleware, logging and error rendering.

The middleware opens a context for every HTTP request and WebSocket connection; anything running
inside it (routes, services, tasks they create) can read the request id and add log fields::

    bind_log_fields(chart_id="btc", user="alice")   # appears on every later log line of it
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Final

from starlette.types import Scope

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# One dict per request, mutated in place by ``bind_log_fields``: code that runs in a copied
# context (threads, tasks) still shares it, so fields bound there reach the access line too.
log_fields_var: ContextVar[dict[str, Any] | None] = ContextVar("log_fields", default=None)


#: The route label of requests no route matched (404s): raw paths would make unbounded label
#: sets in the metrics.
UNMATCHED_ROUTE: Final = "unmatched"

#: The scope key of an HTTP request's :class:`Exchange`, set by the outermost middleware.
EXCHANGE_KEY = "charts.exchange"


class Exchange:
    """What the middleware layers of one HTTP request share about its response.

    The outermost layer sees every message the app sends: it records ``status`` when the
    response starts and appends ``headers`` to it. An inner layer adds a header by appending to
    ``headers`` and learns whether the response has started from ``status``, without wrapping
    ``send`` once more (each wrapper is another call on every message of every request).
    """

    __slots__ = ("headers", "points", "status")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers = headers
        #: The response's status once ``http.response.start`` went out, else 0.
        self.status = 0
        #: The points of the history chunk in the response, if it is one: reported with the
        #: request's metrics (``history_requests_total``, ``history_chunk_points``).
        self.points: int | None = None


def current_request_id() -> str | None:
    return request_id_var.get()


def current_log_fields() -> dict[str, Any] | None:
    """The fields bound to the current request or connection (``request_id`` among them)."""
    return log_fields_var.get()


def bind_log_fields(**fields: Any) -> None:
    """Add fields (``chart_id``, ``user``, ...) to every later log line of this request.

    Outside a request this does nothing: there is no request to attach them to.
    """
    current = log_fields_var.get()
    if current is not None:
        current.update(fields)


def route_template(scope: Scope) -> str:
    """The path template of the route that handled ``scope`` (``/api/charts/{chart_id}``).

    Read after the inner app ran: the router sets ``scope["route"]`` when it matches.
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE

"""Prometheus metrics: one ``Metrics`` per app, correct under many gunicorn workers.

Each app gets its own ``CollectorRegistry``, so several apps can live in one process (tests)
without name clashes. When ``PROMETHEUS_MULTIPROC_DIR`` is set before ``prometheus_client`` is
first imported (``gunicorn.conf.py`` does this), every worker writes its values to files in that
directory and a scrape of any worker returns the sum over all of them; gauges of in-flight work
count only live workers (gunicorn's ``child_exit`` hook calls ``mark_process_dead``).

The app keeps its instance on ``app.state.metrics`` (a disabled one when ``ENABLE_METRICS`` is
off, whose methods do nothing), so feature code calls the hooks unconditionally::

    metrics: Metrics = request.app.state.metrics   # or websocket.app.state.metrics
    metrics.history_served("websocket", chunk.count)
    metrics.rate_limited("history")
    with metrics.db_query("points_before"):
        rows = await session.execute(...)

HTTP requests and WebSocket connections are counted by the middleware; ``charts`` and
``series_points`` are read from the charts service at each scrape (and every few seconds in
multi-process mode, where a scrape reaches one worker only).
"""

from __future__ import annotations

import collections
import importlib
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import accumulate
from typing import Any, Final, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

HistoryTransport = Literal["rest", "websocket"]
RateLimitScope = Literal["api", "history", "websocket"]

#: Method labels; any other method counts as "other" (servers may pass any token as a method).
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_CLASSES: Final = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
# History chunks are served in well under a millisecond, so the buckets start far below
# prometheus_client's default 5 ms.
LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
CHUNK_POINT_BUCKETS: Final = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000)
#: Close codes named in ``websocket_disconnects_total{reason}``; others count as "other".
CLOSE_REASONS: Final = {
    1000: "normal",
    1001: "going_away",
    1006: "abnormal",
    1008: "policy_violation",
    1009: "message_too_big",
    1011: "internal_error",
    1012: "service_restart",
    1013: "try_again_later",
}

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
_REST: Final = ("rest",)
StoreTotals = Callable[[], tuple[int, int]]

_HTTP_REQUESTS_HELP = "HTTP requests answered, by method, route template and status class."
_HTTP_DURATION_HELP = "Request to end of response, by method, route template and status class."
_IN_PROGRESS_HELP = (
    "HTTP requests being served now, by method (the route is known only once routed)."
)
_HISTORY_REQUESTS_HELP = "History chunks served, by transport (rest, websocket)."
_HISTORY_POINTS_HELP = "Points per served history chunk."
_MESSAGES_SENT_HELP = "Messages sent to WebSocket clients."


def multiprocess_dir() -> str | None:
    """The shared directory when prometheus_client runs in multi-process mode, else None."""
    if values.ValueClass is values.MutexValue:
        return None
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def status_class(status: int) -> str:
    return _STATUS_CLASSES.get(status // 100, "other")


def close_reason(code: int) -> str:
    return CLOSE_REASONS.get(code, "application" if 4000 <= code <= 4999 else "other")


class Metrics:
    """The service's metrics and the hooks that update them.

    ``Metrics(enabled=False)`` builds nothing and every hook returns at once; the development app
    uses one so that feature code never checks whether metrics are on.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.registry = CollectorRegistry()
        self._store_totals: StoreTotals | None = None
        self._rate_limit_clients: Callable[[], int | None] | None = None
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._in_progress_children: dict[str, Any] = {}
        self._history_children: dict[str, Any] = {}
        self._started: collections.Counter[str] = collections.Counter()
        self._collect_hooks: list[Callable[[], None]] = []
        self._messages_sent = 0
        self._http = Observations(LATENCY_BUCKETS)
        self._history = Observations(CHUNK_POINT_BUCKETS)
        self._local = True
        if not enabled:
            return
        registry = self.registry
        if multiprocess_dir() is None:
            # Per-process collectors read /proc of the process being scraped; in multi-process
            # mode that would be one random worker, so they are left out there.
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self._local = multiprocess_dir() is None
        if self._local:
            # One process: the per-request metrics are plain counts read at scrape time, which
            # costs the request a few dict operations instead of a lock per value.
            registry.register(_HotPathCollector(self))
        else:
            http = ["method", "route", "status"]
            self.http_requests = Counter(
                "http_requests_total", _HTTP_REQUESTS_HELP, http, registry=registry
            )
            self.http_request_duration = Histogram(
                "http_request_duration_seconds",
                _HTTP_DURATION_HELP,
                http,
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
            self.http_requests_in_progress = Gauge(
                "http_requests_in_progress",
                _IN_PROGRESS_HELP,
                ["method"],
                multiprocess_mode="livesum",
                registry=registry,
            )
            self.history_requests = Counter(
                "history_requests_total", _HISTORY_REQUESTS_HELP, ["transport"], registry=registry
            )
            self.history_chunk_points = Histogram(
                "history_chunk_points",
                _HISTORY_POINTS_HELP,
                buckets=CHUNK_POINT_BUCKETS,
                registry=registry,
            )
        self.websocket_connections = Gauge(
            "websocket_connections",
            "Open (accepted) WebSocket connections.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        if not self._local:
            self.websocket_messages_sent = Counter(
                "websocket_messages_sent_total", _MESSAGES_SENT_HELP, registry=registry
            )
        self.websocket_disconnects = Counter(
            "websocket_disconnects_total",
            "Closed WebSocket connections, by reason (client, normal, going_away, ...).",
            ["reason"],
            registry=registry,
        )
        self.rate_limited_total = Counter(
            "rate_limited_total",
            "Requests refused by a rate limit, by scope (api, history, websocket).",
            ["scope"],
            registry=registry,
        )
        self.database_query_duration = Histogram(
            "database_query_duration_seconds",
            "Database statement latency, by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.charts = Gauge(
            "charts",
            "Charts held in memory (summed over workers).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.rate_limit_clients = Gauge(
            "rate_limit_clients",
            "Client addresses with an open rate-limit window (counted in memory; summed over "
            "workers).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.series_points = Gauge(
            "series_points",
            "Points held in the in-memory series store (summed over workers).",
            multiprocess_mode="livesum",
            registry=registry,
        )

    # HTTP (called by the middleware)

    @property
    def batched(self) -> bool:
        """Whether finished requests may be reported in batches (:meth:`requests_finished`):
        one process, whose scrape first runs the hooks of :meth:`before_collect`. With several
        workers each request is reported at once, since a scrape reaches one worker only."""
        return self.enabled and self._local

    def before_collect(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` before each scrape (one process): a holder of unreported requests
        reports them."""
        if hook not in self._collect_hooks:
            self._collect_hooks.append(hook)

    @property
    def started(self) -> collections.Counter[str] | None:
        """With :attr:`batched` reports, the count of requests started by method label
        (:data:`METHODS` or ``"other"``), which the middleware increments itself (cheaper than
        :meth:`request_started` on every request); otherwise ``None``."""
        return self._started if self.batched else None

    def request_started(self, method: str) -> None:
        if not self.enabled:
            return
        if self._local:
            # In progress: started, less those observed as finished (read at scrape time).
            self._started[_method_label(method)] += 1
        else:
            self._in_progress_child(_method_label(method)).inc()

    def requests_finished(self, requests: list[tuple[str, str, int, float, int | None]]) -> None:
        """Report finished requests, each ``(method, route, status, seconds, points)``, with
        ``points`` the size of the history chunk it served over REST, else ``None``."""
        if not self._local:
            for request in requests:
                self.request_finished(*request)
            return
        if not self.enabled:
            return
        self._http.observe_all(
            [
                ((_method_label(method), route, status), seconds)
                for method, route, status, seconds, _points in requests
            ]
        )
        self._history.observe_all(
            [(_REST, request[4]) for request in requests if request[4] is not None]
        )

    def request_finished(
        self, method: str, route: str, status: int, seconds: float, points: int | None = None
    ) -> None:
        if not self.enabled:
            return
        if self._local:
            self.requests_finished([(method, route, status, seconds, points)])
            return
        if points is not None:
            self.history_served("rest", points)
        method = _method_label(method)
        self._in_progress_child(method).dec()
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            label = (method, route, status_class(status))
            children = self._http_children[key] = (
                self.http_requests.labels(*label),
                self.http_request_duration.labels(*label),
            )
        children[0].inc()
        children[1].observe(seconds)

    def _in_progress_child(self, method: str) -> Any:
        child = self._in_progress_children.get(method)
        if child is None:
            child = self.http_requests_in_progress.labels(method)
            self._in_progress_children[method] = child
        return child

    def _in_progress(self) -> dict[str, int]:
        """Requests in progress by method label (one process): started less finished."""
        counts = dict(self._started)
        for (method, _route, _status), entry in list(self._http.data.items()):
            counts[method] = counts.get(method, 0) - entry[0]
        return counts

    # WebSocket (connections and messages by the middleware; reasons may be set by the handler)

    def websocket_opened(self) -> None:
        if self.enabled:
            self.websocket_connections.inc()

    def websocket_closed(self, reason: str) -> None:
        if self.enabled:
            self.websocket_connections.dec()
            self.websocket_disconnects.labels(reason).inc()

    def websocket_message_sent(self, count: int = 1) -> None:
        if not self.enabled:
            return
        if self._local:
            self._messages_sent += count
        else:
            self.websocket_messages_sent.inc(count)

    # Feature hooks

    def history_served(self, transport: HistoryTransport, points: int) -> None:
        """One history chunk of ``points`` points went out over ``transport``."""
        if not self.enabled:
            return
        if self._local:
            self._history.observe((transport,), points)
            return
        child = self._history_children.get(transport)
        if child is None:
            child = self._history_children[transport] = self.history_requests.labels(transport)
        child.inc()
        self.history_chunk_points.observe(points)

    def rate_limited(self, scope: RateLimitScope) -> None:
        """A request (or WebSocket message) was refused by the ``scope`` rate limit."""
        if self.enabled:
            self.rate_limited_total.labels(scope).inc()

    def observe_db_query(self, operation: str, seconds: float) -> None:
        """A database statement named ``operation`` (a fixed name, never SQL text) took
        ``seconds``."""
        if self.enabled:
            self.database_query_duration.labels(operation).observe(seconds)

    @contextmanager
    def db_query(self, operation: str) -> Iterator[None]:
        """Time the enclosed database work as ``operation``, failures included."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe_db_query(operation, time.perf_counter() - started)

    def instrument_engine(self, engine: Any) -> None:
        """Time every statement of a SQLAlchemy (async) engine, labelled by its SQL verb.

        Call once after ``create_async_engine``; requires SQLAlchemy, imported only here.
        """
        if not self.enabled:
            return
        event = importlib.import_module("sqlalchemy.event")
        sync_engine = getattr(engine, "sync_engine", engine)

        def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            conn.info.setdefault("_query_started", []).append(time.perf_counter())

        def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            stack = conn.info.get("_query_started")
            if stack:
                self.observe_db_query(_sql_verb(statement), time.perf_counter() - stack.pop())

        event.listen(sync_engine, "before_cursor_execute", before)
        event.listen(sync_engine, "after_cursor_execute", after)

    # Store gauges

    def track_store(self, totals: StoreTotals) -> None:
        """Read ``(charts, points)`` from ``totals`` whenever the gauges are refreshed."""
        self._store_totals = totals

    def track_rate_limits(self, clients: Callable[[], int | None]) -> None:
        """Read the number of clients the rate limiter tracks from ``clients`` (``None``:
        kept elsewhere, e.g. in Redis) whenever the gauges are refreshed."""
        self._rate_limit_clients = clients

    def refresh_gauges(self) -> None:
        if not self.enabled:
            return
        if self._store_totals is not None:
            charts, points = self._store_totals()
            self.charts.set(charts)
            self.series_points.set(points)
        if self._rate_limit_clients is not None:
            clients = self._rate_limit_clients()
            if clients is not None:
                self.rate_limit_clients.set(clients)

    # Exposition

    def render(self) -> bytes:
        """The text exposition: this app's registry, or the sum over all worker processes."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


class Observations:
    """Count, sum and bucket counts per label set, in plain Python: the hot path's metrics
    when one process serves (read by ``_HotPathCollector`` at scrape time)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.data: dict[tuple[Any, ...], list[Any]] = {}

    def observe(self, key: tuple[Any, ...], value: float) -> None:
        self.observe_all([(key, value)])

    def observe_all(self, observations: list[tuple[tuple[Any, ...], float]]) -> None:
        """Count each ``(key, value)``: one call for a batch."""
        data = self.data
        bounds = self.bounds
        for key, value in observations:
            entry = data.get(key)
            if entry is None:
                entry = data[key] = [0, 0.0, [0] * (len(bounds) + 1)]
            entry[0] += 1
            entry[1] += value
            entry[2][bisect_left(bounds, value)] += 1

    def merged(self, label: Callable[[tuple[Any, ...]], tuple[str, ...]]) -> dict[Any, list[Any]]:
        """The observations summed by ``label(key)`` (several keys may share a label set)."""
        out: dict[tuple[str, ...], list[Any]] = {}
        for key, (count, total, buckets) in list(self.data.items()):
            labels = label(key)
            entry = out.get(labels)
            if entry is None:
                out[labels] = [count, total, list(buckets)]
            else:
                entry[0] += count
                entry[1] += total
                entry[2] = [a + b for a, b in zip(entry[2], buckets, strict=True)]
        return out


def _histogram(
    name: str, help_text: str, labels: list[str], bounds: tuple[float, ...], data: dict[Any, Any]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, help_text, labels=labels)
    edges = [floatToGoString(bound) for bound in bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
    for label_values, (_count, total, buckets) in data.items():
        cumulative = list(accumulate(buckets))
        family.add_metric(list(label_values), list(zip(edges, cumulative, strict=True)), total)
    return family


class _HotPathCollector:
    """Exposes the plain-Python counts of a one-process ``Metrics``: HTTP requests, WebSocket
    messages and history chunks."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        for hook in metrics._collect_hooks:
            hook()
        http = metrics._http.merged(lambda k: (k[0], k[1], status_class(k[2])))
        requests = CounterMetricFamily(
            "http_requests_total", _HTTP_REQUESTS_HELP, labels=["method", "route", "status"]
        )
        for labels, (count, _total, _buckets) in http.items():
            requests.add_metric(list(labels), count)
        yield requests
        yield _histogram(
            "http_request_duration_seconds",
            _HTTP_DURATION_HELP,
            ["method", "route", "status"],
            LATENCY_BUCKETS,
            http,
        )
        in_progress = GaugeMetricFamily(
            "http_requests_in_progress", _IN_PROGRESS_HELP, labels=["method"]
        )
        for method, count in metrics._in_progress().items():
            in_progress.add_metric([method], count)
        yield in_progress
        sent = CounterMetricFamily("websocket_messages_sent_total", _MESSAGES_SENT_HELP)
        sent.add_metric([], metrics._messages_sent)
        yield sent
        history = metrics._history.merged(lambda k: k)
        served = CounterMetricFamily(
            "history_requests_total", _HISTORY_REQUESTS_HELP, labels=["transport"]
        )
        for labels, (count, _total, _buckets) in history.items():
            served.add_metric(list(labels), count)
        yield served
        yield _histogram(
            "history_chunk_points",
            _HISTORY_POINTS_HELP,
            [],
            CHUNK_POINT_BUCKETS,
            metrics._history.merged(lambda k: ()),
        )


def _method_label(method: str) -> str:
    return method if method in METHODS else "other"


def _sql_verb(statement: str) -> str:
    head = statement.lstrip()[:16].split(None, 1)
    return head[0].lower() if head and head[0].isalpha() else "other"

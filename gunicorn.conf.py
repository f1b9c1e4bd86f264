"""gunicorn settings for the production app (read from the working directory automatically).

    gunicorn                                    # app, bind, workers and logging from here
    gunicorn 'lightweight_charts_pro_backend.app_production:create_app()' --workers 4

Command-line options override the values below. Metrics: every worker writes its Prometheus
values to ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory when unset), which is
emptied at start, and a worker that exits is marked dead, so a scrape of any worker returns the
sum over the live and past workers and in-flight gauges count live workers only.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# prometheus_client picks its storage when first imported, so the directory must be in the
# environment before anything imports it: here, in the master, before workers are forked.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
_own_metrics_dir = not _metrics_dir
if _own_metrics_dir:
    _metrics_dir = tempfile.mkdtemp(prefix="charts-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

from lightweight_charts_pro_backend.config import Settings  # noqa: E402
from lightweight_charts_pro_backend.logging_config import log_config_dict  # noqa: E402

_settings = Settings()

wsgi_app = "lightweight_charts_pro_backend.app_production:create_app()"
bind = [f"{_settings.host}:{_settings.port}"]
# WEB_CONCURRENCY sets the number of workers. Without it: the guide's (2 x cores) + 1 when the
# workers share their state (database and Redis), else one, since each worker would otherwise
# hold charts and WebSocket clients the others never see.
_shared = _settings.enable_persistence and bool(_settings.redis_url)
workers = int(
    os.environ.get("WEB_CONCURRENCY") or (2 * multiprocessing.cpu_count() + 1 if _shared else 1)
)
worker_class = "uvicorn_worker.UvicornWorker"
# A worker warms its cache before it serves (CACHE_WARMUP_SECONDS) and cannot report to the
# master meanwhile: the timeout leaves it room.
timeout = max(30, int(_settings.cache_warmup_seconds) + 20)
graceful_timeout = 30
keepalive = 5
# Workers are not recycled unless asked: a recycled worker starts with an empty cache and warms
# it again, so recycling under load costs every chart its cached series for nothing. Set
# GUNICORN_MAX_REQUESTS (and GUNICORN_MAX_REQUESTS_JITTER) to bound a slow leak anyway; with
# the in-memory store a recycled worker forgets its charts, so keep it off there.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS") or 0)
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER") or 0)
# TRUSTED_PROXIES alone decides whose X-Forwarded-For is believed: the server rewrites the client
# address only for those peers (gunicorn and uvicorn would otherwise believe loopback).
forwarded_allow_ips = ",".join(_settings.trusted_proxies)
# gunicorn >= 25.1 opens a control socket under $HOME by default; the service does not use it,
# and in the image $HOME is not writable.
control_socket_disable = True
loglevel = _settings.log_level.lower()
logconfig_dict = log_config_dict(_settings)


def on_starting(server: Any) -> None:
    """Empty the metrics directory: values of a previous run must not be added to this one.

    Also call the factory when the app is named without parentheses, as in the deployment
    guide's ``gunicorn lightweight_charts_pro_backend.app_production:create_app ...``:
    gunicorn would otherwise serve the factory function itself as the application.
    """
    for path in Path(_metrics_dir).glob("*.db"):
        path.unlink(missing_ok=True)
    uri = getattr(server.app, "app_uri", None)
    if isinstance(uri, str) and uri.endswith(_FACTORIES):
        server.app.app_uri = uri + "()"


_FACTORIES = (
    "lightweight_charts_pro_backend.app_production:create_app",
    "lightweight_charts_pro_backend.app:create_app",
)


def child_exit(server: Any, worker: Any) -> None:
    """Drop the exited worker's in-flight gauges (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_exit(server: Any) -> None:
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)

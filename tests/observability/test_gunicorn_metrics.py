"""Metrics under gunicorn with four workers: one scrape returns the sum over all of them."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ServerProcess, request

pytestmark = pytest.mark.slow

ROUTE = "/api/charts/{chart_id}"
# The deployment guide's command line as written (gunicorn.conf.py calls the factory).
GUIDE_ARGS = (
    "--worker-class",
    "uvicorn.workers.UvicornWorker",
    "--access-logfile",
    "-",
    "--error-logfile",
    "-",
    "lightweight_charts_pro_backend.app_production:create_app",
)
# The form gunicorn itself understands, with the newer worker package.
FACTORY_ARGS = (
    "--worker-class",
    "uvicorn_worker.UvicornWorker",
    "lightweight_charts_pro_backend.app_production:create_app()",
)


def requests_for_route(scrape: str, route: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == "http_requests_total" and sample.labels.get("route") == route
    )


def wait_for_workers(server: ServerProcess, count: int, timeout: float = 60) -> None:
    """Until ``count`` workers have started their app (the first one answers /health alone)."""
    deadline = time.monotonic() + timeout
    while True:
        started = {
            line["pid"]
            for line in server.json_lines()
            if line["message"] == "Application startup complete."
        }
        if len(started) >= count:
            return
        assert time.monotonic() < deadline, f"only {len(started)} of {count} workers started"
        time.sleep(0.1)


def spread(port: int, count: int) -> None:
    def one(i: int) -> int:
        return request(port, "GET", f"/api/charts/spread-{i}").status

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(one, range(count)))
    assert statuses == [404] * count


def sample_sum(scrape: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def served_history(port: int, points: int) -> None:
    """A series and a REST history chunk of ``points`` on one connection, so one worker (which
    holds the chart in its memory) serves both."""
    data = [{"time": 1_700_000_000 + 60 * i, "value": float(i)} for i in range(points)]
    body = json.dumps({"paneId": 0, "seriesType": "line", "data": data})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/api/charts/hist/data/s", body, {"Content-Type": "application/json"})
        stored = conn.getresponse()
        assert stored.status == 200, stored.read()
        stored.read()
        conn.request("GET", f"/api/charts/hist/history/0/s?count={points}")
        reply = conn.getresponse()
        assert reply.status == 200 and len(json.loads(reply.read())["data"]) == points
    finally:
        conn.close()


def test_one_scrape_sums_all_workers(gunicorn_server, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_1.db"
    stale.write_bytes(b"left over from an earlier run")
    server = gunicorn_server(4, {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, GUIDE_ARGS)
    assert not stale.exists(), "the metrics directory is emptied at start"
    wait_for_workers(server, 4)

    spread(server.port, 200)
    assert request(server.port, "POST", "/api/charts/created").status == 201
    served_history(server.port, points=7)
    scrape = request(server.port, "GET", "/metrics").body.decode()
    assert requests_for_route(scrape, ROUTE) >= 200
    assert sample_sum(scrape, "history_requests_total", transport="rest") == 1
    assert sample_sum(scrape, "history_chunk_points_sum") == 7
    assert "spread-1" not in scrape, "labels use route templates, never raw paths"

    server.wait_for_line(lambda line: line.get("path") == "/api/charts/spread-199")
    access = [line for line in server.json_lines() if line.get("route") == ROUTE]
    assert len({line["pid"] for line in access}) >= 2, "requests reached several workers"
    assert any(line["logger"] == "gunicorn.error" for line in server.json_lines())


def test_a_dead_worker_keeps_its_counts_and_leaves_the_live_gauges(
    gunicorn_server, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    server = gunicorn_server(2, {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, FACTORY_ARGS)
    wait_for_workers(server, 2)
    spread(server.port, 40)
    before = requests_for_route(request(server.port, "GET", "/metrics").body.decode(), ROUTE)
    assert before >= 40

    assert server.proc is not None
    workers = psutil.Process(server.proc.pid).children()
    victim = workers[0].pid
    assert list(metrics_dir.glob(f"gauge_livesum_{victim}.db"))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while list(metrics_dir.glob(f"gauge_livesum_{victim}.db")):
        assert time.monotonic() < deadline, "child_exit did not mark the worker dead"
        time.sleep(0.1)

    # The replacement worker boots; the dead worker's requests still count.
    deadline = time.monotonic() + 30
    while len(psutil.Process(server.proc.pid).children()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    after = requests_for_route(request(server.port, "GET", "/metrics").body.decode(), ROUTE)
    assert after >= before

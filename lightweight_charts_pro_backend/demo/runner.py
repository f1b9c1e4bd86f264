"""``charts-backend demo``: seed a chart with synthetic candles, volume, a few markers and a
trend line, then trade on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from . import data

if TYPE_CHECKING:
    from ..client import ChartsClient

START_TIMEOUT_SECONDS = 60.0
BATCH = 50_000


class DemoError(Exception):
    """The demo cannot go on (server down, refused data); one sentence."""


@contextmanager
def dev_server(host: str, port: int) -> Iterator[str]:
    """A development server in a child process on ``host:port``; yields its base URL."""
    import httpx

    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "lightweight_charts_pro_backend.app:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        # Four updates a second would bury the demo's own output in access lines.
        "--no-access-log",
    ]
    proc = subprocess.Popen(command, env=os.environ.copy(), stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if proc.poll() is not None:
                raise DemoError(f"the server exited with status {proc.returncode} (port taken?).")
            try:
                if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise DemoError(f"the server did not answer on {url} within 60 s.")
            time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_demo(
    url: str,
    chart_id: str,
    *,
    candles: int,
    bar_seconds: int,
    rate: float,
    duration: float | None,
    token: str | None,
    api_key: str | None,
    progress: bool,
) -> None:
    """Replace ``chart_id`` with ``candles`` candles (pane 0) and volume (pane 1) ending now,
    print the page's URL, then update the last bar ``rate`` times a second (a new bar every
    ``bar_seconds``) until ``duration`` has passed or the user interrupts."""
    from ..client import ChartsClient, ChartsClientError

    now = time.time()
    last_bar = int(now) - int(now) % bar_seconds
    series = data.Candles(candles, last_bar, bar_seconds)
    with ChartsClient(url, token=token, api_key=api_key) as client:
        try:
            client.create_chart(chart_id)
            _upload(client, chart_id, series, progress)
            draw(client, chart_id, series)
            print(f"Demo chart {chart_id!r}: {url}/demo?chart={chart_id}", flush=True)
            price, volume = series.points(len(series) - 1)
            ticker = data.Ticker(price[-1], float(volume[-1]["value"]), bar_seconds)
            deadline = None if duration is None else time.monotonic() + duration
            period = 1.0 / rate
            while deadline is None or time.monotonic() < deadline:
                bar, bar_volume = ticker.tick(time.time())
                client.update(chart_id, "price", bar)
                client.update(chart_id, "volume", bar_volume, pane=1)
                time.sleep(period)
        except ChartsClientError as exc:
            raise DemoError(exc.detail if exc.status == 0 else str(exc)) from None


def draw(client: ChartsClient, chart_id: str, series: data.Candles) -> None:
    """Replace the demo's drawings (those it made on an earlier run go first)."""
    for old in client.list_annotations(chart_id):
        if old["annotationId"].startswith("demo-"):
            client.delete_annotation(chart_id, old["annotationId"])
    for annotation in data.drawings(series):
        client.add_annotation(chart_id, annotation)


def _upload(client: ChartsClient, chart_id: str, series: data.Candles, progress: bool) -> None:
    """Replace both series with the first batch, then append the others, oldest first."""
    from ..client import progress_bar

    bar = progress_bar(2 * len(series), progress, chart_id)
    try:
        for start in range(0, len(series), BATCH):
            price, volume = series.points(start, start + BATCH)
            if start == 0:
                client.set_series(chart_id, "price", price, series_type="candlestick")
                client.set_series(
                    chart_id,
                    "volume",
                    volume,
                    series_type="histogram",
                    pane=1,
                    options={"priceFormat": {"type": "volume"}, "priceLineVisible": False},
                )
            else:
                client.update(chart_id, "price", price)
                client.update(chart_id, "volume", volume, pane=1)
            if bar is not None:
                bar.update(len(price) + len(volume))
    finally:
        if bar is not None:
            bar.close()

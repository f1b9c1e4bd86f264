"""The demo page in a real Chromium against a real server: drawing, infinite history, live
updates, surviving a server restart. Leaves a screenshot in ``test-artifacts/``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightweight_charts_pro_backend.client import ChartsClient
from lightweight_charts_pro_backend.demo.data import Candles, candles, drawings
from tests.realtime.conftest import ROOT, ServerProcess, start_server

pytestmark = pytest.mark.slow

CHART = "browser"
BARS = 3000
BAR_SECONDS = 60
END = 1_700_000_000 - 1_700_000_000 % BAR_SECONDS
FIRST = END - (BARS - 1) * BAR_SECONDS
ARTIFACTS = ROOT / "test-artifacts"
#: What Chromium itself logs while the server is down; nothing else may reach the console.
OUTAGE_NOISE = ("WebSocket connection to", "net::ERR_CONNECTION_REFUSED")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    # Persistence on, so the chart is still there after the restart.
    srv = start_server(tmp_path / "srv", enable_persistence="true")
    yield srv
    srv.stop()


def _seed(url: str) -> None:
    price, volume = candles(BARS, END, BAR_SECONDS, seed=11)
    with ChartsClient(url) as charts:
        charts.create_chart(CHART)
        charts.set_series(CHART, "price", price, series_type="candlestick")
        charts.set_series(
            CHART, "volume", volume, series_type="histogram", pane=1,
            options={"priceFormat": {"type": "volume"}},
        )  # fmt: skip
        for drawing in drawings(Candles(BARS, END, BAR_SECONDS, seed=11)):
            charts.add_annotation(CHART, drawing)


def _bar(time_: int, close: float) -> dict[str, Any]:
    return {
        "time": time_,
        "open": 100.0,
        "high": max(close, 100.0) + 1,
        "low": 90.0,
        "close": close,
    }


def test_demo_page_in_chromium(server: ServerProcess, browser: Any, tmp_path: Path) -> None:
    _seed(server.http_url)
    with ChartsClient(server.http_url) as charts:
        last_close = charts.history(CHART, "price", count=1)["data"][-1]["close"]

    phase = "load"
    errors: list[tuple[str, str]] = []
    page = browser.new_page(viewport={"width": 1200, "height": 700})
    page.on("console", lambda m: errors.append((phase, m.text)) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append((phase, f"page error: {e}")))
    page.goto(f"{server.http_url}/demo?chart={CHART}")

    # Drawn: canvases present, the library's own data ends with the server's last candle.
    page.wait_for_function("window.demo && window.demo.stats.snapshots > 0", timeout=15_000)
    assert page.locator("#chart canvas").count() > 0
    assert page.evaluate("window.demo.lastBar('0/price').close") == last_close
    assert page.evaluate("window.demo.series.get('0/price').binding.data.length") == 500
    assert page.locator("#status").inner_text() == "live"
    # The OHLC legend shows the last bar until the crosshair points at another.
    legend = page.locator("#legend").inner_text()
    assert legend.startswith("price O ") and " C " in legend and "volume" in legend

    # The seeded markers (createSeriesMarkers) and trend line are drawn, and a marker added
    # through the REST API appears through its annotation_update frame.
    page.wait_for_function("window.demo.drawings.loads > 0", timeout=10_000)
    assert page.evaluate("window.demo.drawings.markers") == 8
    assert page.evaluate("window.demo.markerPlugins.get('0/price').plugin.markers().length") == 8
    assert page.evaluate("window.demo.drawings.trendLines") == 1
    assert page.evaluate("window.demo.trendLines.get('demo-trend').data().length") == 2
    with ChartsClient(server.http_url) as charts:
        charts.add_annotation(
            CHART,
            {
                "kind": "marker", "seriesId": "price", "points": [{"time": END}], "text": "now",
                "style": {"position": "inBar", "shape": "circle", "color": "#ffffff"},
            },
        )  # fmt: skip
    page.wait_for_function("window.demo.drawings.markers === 9", timeout=5_000)
    assert page.evaluate("window.demo.drawings.updates") >= 1

    # Infinite history: dragging the chart to the right scrolls left, into older bars, until the
    # first one.
    box = page.locator("#chart").bounding_box()
    y = box["y"] + box["height"] * 0.3
    for _ in range(80):
        if page.evaluate(
            f"window.demo.firstTime('0/price') === {FIRST}"
            " && !window.demo.series.get('0/price').binding.hasMoreBefore"
        ):
            break
        page.mouse.move(box["x"] + 100, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] - 150, y, steps=6)
        page.mouse.up()
        page.wait_for_timeout(100)
    stats = page.evaluate("window.demo.stats")
    assert page.evaluate("window.demo.firstTime('0/price')") == FIRST
    assert page.evaluate("window.demo.series.get('0/price').binding.data.length") == BARS
    assert page.evaluate("window.demo.firstTime('1/volume')") == FIRST
    assert stats["historyRequests"] >= 10  # (3000 - 500) / 500, for each of the two series
    assert stats["historyResponses"] == stats["historyRequests"]

    # Live: a bar written through the REST API is on the chart within a second.
    with ChartsClient(server.http_url) as charts:
        charts.update(CHART, "price", _bar(END + BAR_SECONDS, 123.25))
        page.wait_for_function("window.demo.lastBar('0/price')?.close === 123.25", timeout=1_000)
    page.mouse.move(0, 0)
    page.wait_for_function(
        "document.getElementById('legend').textContent.includes('C 123.25')", timeout=1_000
    )

    # A server restart: the page shows it, reconnects, resumes (or refetches) and stays live.
    phase = "restart"
    server.stop()
    page.wait_for_function("window.demo.state.status !== 'live'", timeout=10_000)
    assert "reconnecting" in page.locator("#status").inner_text()
    restarted = start_server(server.log_path.parent, port=server.port, enable_persistence="true")
    try:
        page.wait_for_function(
            "window.demo.state.status === 'live' && window.demo.stats.connects >= 2"
            " && !window.demo.loading",
            timeout=15_000,
        )
        phase = "after"
        with ChartsClient(restarted.http_url) as charts:
            started = time.monotonic()
            charts.update(CHART, "price", _bar(END + 2 * BAR_SECONDS, 124.5))
            page.wait_for_function("window.demo.lastBar('0/price')?.close === 124.5", timeout=1_000)
            latency = time.monotonic() - started
        print(f"PATCH to chart after the restart: {latency * 1000:.0f} ms")
        assert page.evaluate("window.demo.lastBar('0/price').time") == END + 2 * BAR_SECONDS

        # A bulk write (many bars in one PATCH) is merged and drawn once.
        bulk = [_bar(END + (3 + i) * BAR_SECONDS, 110.0 + i / 10) for i in range(150)]
        with ChartsClient(restarted.http_url) as charts:
            charts.update(CHART, "price", bulk)
        page.wait_for_function(
            f"window.demo.lastBar('0/price')?.time === {bulk[-1]['time']}", timeout=5_000
        )
        assert page.evaluate("window.demo.series.get('0/price').api.data().length") == BARS + 152
        assert "price: 3,152 of 3,152 loaded" in page.locator("#info").inner_text()

        # The timeframe switcher: 5-minute bars aggregated by the server, live, then back.
        page.get_by_role("button", name="5m", exact=True).click()
        page.wait_for_function(
            "window.demo.resolution === '5' && !window.demo.loading && [...window.demo.series"
            ".values()].every((s) => s.binding.resolution === '5' && s.binding.data.length)",
            timeout=10_000,
        )
        bars = page.evaluate("window.demo.series.get('0/price').api.data()")
        assert 500 <= len(bars) <= (BARS + 160) // 5 + 1  # the newest chunk, older ones as seen
        assert all(bar["time"] % 300 == 0 for bar in bars)
        assert bars[-1]["time"] == bulk[-1]["time"] - bulk[-1]["time"] % 300
        live = END + 160 * BAR_SECONDS
        with ChartsClient(restarted.http_url) as charts:
            charts.update(CHART, "price", _bar(live, 131.5))
        page.wait_for_function(
            f"window.demo.lastBar('0/price')?.time === {live - live % 300}"
            " && window.demo.lastBar('0/price').close === 131.5",
            timeout=1_000,
        )
        assert (
            page.get_by_role("button", name="5m", exact=True).get_attribute("aria-pressed")
            == "true"
        )
        page.get_by_role("button", name="raw", exact=True).click()
        page.wait_for_function(
            f"window.demo.resolution === null && window.demo.lastBar('0/price')?.time === {live}"
            " && window.demo.series.get('0/price').binding.resolution === null",
            timeout=10_000,
        )

        # Back to the newest bars, without the scroll animation, crosshair out of the way.
        page.evaluate("window.demo.chart.timeScale().scrollToPosition(3, false)")
        page.mouse.move(0, 0)
        page.wait_for_timeout(200)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-page.png"))
    finally:
        restarted.stop()

    unexpected = [
        (when, text)
        for when, text in errors
        if not (when == "restart" and any(noise in text for noise in OUTAGE_NOISE))
    ]
    assert unexpected == []

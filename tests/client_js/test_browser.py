"""The browser client in a real Chromium with the real Lightweight Charts, against a real server:
scrolling back to the first of 5,000 bars with the view held still at each prepend, a live bar
within a second, a correction of an older bar drawn in place, a server restart survived with a
resume, and nothing on the console."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightweight_charts_pro_backend.client import ChartsClient
from tests.realtime.conftest import ServerProcess, start_server

pytestmark = pytest.mark.slow

CHART = "client-page"
BARS = 5000
STEP = 60
FIRST = 1_600_000_020
LAST = FIRST + (BARS - 1) * STEP
#: What Chromium itself logs while the server is down; nothing else may reach the console.
OUTAGE_NOISE = ("WebSocket connection to", "net::ERR_CONNECTION_REFUSED")

#: Written into a document of the server's origin, so that the page imports the module and the
#: library from the server as any page of the deployment would (a page that Playwright serves
#: itself would count as public and be refused loopback sockets by Chromium).
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script type="importmap">
  {"imports": {"lightweight-charts": "/demo/lib/lightweight-charts.mjs"}}
</script>
</head><body style="margin:0"><div id="chart" style="width:1000px;height:500px"></div>
<script type="module">
import { CandlestickSeries, createChart } from "lightweight-charts";
import { bindSeries, ChartsClient } from "/client/charts-client.js";

const client = new ChartsClient({ reconnect: { minDelayMs: 100, maxDelayMs: 500 } });
const chart = createChart(document.getElementById("chart"), { width: 1000, height: 500 });
const series = chart.addSeries(CandlestickSeries);
const binding = bindSeries(chart, series, { client, chartId: "CHART_ID", seriesId: "price" });
const socket = client.socket("CHART_ID");
const timeScale = chart.timeScale();
// What is in view: the logical range, the newest bar in view and where it is drawn.
const view = () => {
  const newest = timeScale.getVisibleRange()?.to;
  const x = timeScale.timeToCoordinate(newest);
  return { logical: timeScale.getVisibleLogicalRange(), newest, x };
};
const log = { loads: [], loaded: 0, states: [], resumed: 0, resyncs: 0, connects: 0 };
binding.on("loaded", () => (log.loaded += 1));
binding.on("historyRequested", () => log.loads.push({ before: view() }));
binding.on("prepended", ({ count }) => Object.assign(log.loads.at(-1), { count, after: view() }));
socket.on("state", ({ state }) => log.states.push(state));
socket.on("connected", () => (log.connects += 1));
socket.on("resumed", () => (log.resumed += 1));
socket.on("resync", () => (log.resyncs += 1));
window.page = { chart, series, binding, socket, log, view };
</script></body></html>
""".replace("CHART_ID", CHART)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    # Persistence on, so the chart is still there after the restart.
    srv = start_server(tmp_path / "srv", enable_persistence="true")
    yield srv
    srv.stop()


def _bar(time_: int, close: float) -> dict[str, Any]:
    return {
        "time": time_,
        "open": 100.0,
        "high": max(close, 100.0) + 1,
        "low": min(close, 90.0),
        "close": close,
    }


def _open_page(
    browser: Any, server: ServerProcess, errors: list[tuple[str, str]], phase: list[str]
) -> Any:
    page = browser.new_page(viewport={"width": 1000, "height": 500})
    page.on("console", lambda m: errors.append((phase[0], m.text)) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append((phase[0], f"page error: {e}")))
    page.route("**/favicon.ico", lambda route: route.fulfill(status=204))
    page.goto(f"{server.http_url}/client/charts-client.js")
    page.set_content(PAGE)
    return page


def test_bound_series_in_chromium(server: ServerProcess, browser: Any) -> None:
    with ChartsClient(server.http_url) as charts:
        charts.create_chart(CHART)
        bars = [_bar(FIRST + i * STEP, 100.0 + (i % 50)) for i in range(BARS)]
        charts.set_series(CHART, "price", bars, series_type="candlestick")

    phase = ["load"]
    errors: list[tuple[str, str]] = []
    page = _open_page(browser, server, errors, phase)
    page.wait_for_function("window.page && window.page.log.loaded === 1", timeout=15_000)
    assert page.evaluate("page.series.data().length") == 500
    assert page.evaluate("page.series.data().at(-1).time") == LAST
    assert page.evaluate("page.socket.state") == "connected"

    # Scroll back, 200 bars at a time, until the first bar; each load of older bars must leave
    # the bars in view where they were.
    for _ in range(200):
        if page.evaluate(f"page.binding.data[0].time === {FIRST} && !page.binding.hasMoreBefore"):
            break
        loads, start = page.evaluate(
            "[page.log.loads.length, page.chart.timeScale().getVisibleLogicalRange().from]"
        )
        page.evaluate(
            "{ const scale = page.chart.timeScale(), r = scale.getVisibleLogicalRange();"
            " scale.setVisibleLogicalRange({from: r.from - 200, to: r.to - 200}); }"
        )
        # The library applies the new range and reports it later: wait until it has, then
        # until the load it asks for has started (unless enough bars are left on the left) and
        # has been drawn, so that no scroll falls between a load's two views.
        page.wait_for_function(
            f"page.chart.timeScale().getVisibleLogicalRange().from !== {start}", timeout=5_000
        )
        page.wait_for_function(
            f"page.log.loads.length > {loads} || page.series.barsInLogicalRange("
            "page.chart.timeScale().getVisibleLogicalRange()).barsBefore > page.binding.loadMargin",
            timeout=5_000,
        )
        page.wait_for_function(
            "page.log.loads.every((load) => load.after !== undefined)", timeout=5_000
        )
    assert page.evaluate("page.series.data().length") == BARS
    assert page.evaluate("page.series.data()[0].time") == FIRST
    loads = page.evaluate("page.log.loads")
    assert len(loads) == (BARS - 500) // 500
    for load in loads:
        assert load["count"] == 500
        before, after = load["before"], load["after"]
        # The same bar at the same place; the logical range moved by the bars put before it.
        assert (after["newest"], after["x"]) == (before["newest"], before["x"]), load
        assert after["logical"]["from"] - before["logical"]["from"] == pytest.approx(500), load
        assert after["logical"]["to"] - before["logical"]["to"] == pytest.approx(500), load

    # A mouse drag scrolls too (the library's own handling), and nothing more loads.
    box = page.locator("#chart").bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + 700, box["y"] + 200, steps=5)
    page.mouse.up()

    # A live bar is drawn within a second.
    phase[0] = "live"
    with ChartsClient(server.http_url) as charts:
        started = time.monotonic()
        charts.update(CHART, "price", _bar(LAST + STEP, 123.25))
        page.wait_for_function("page.series.data().at(-1).close === 123.25", timeout=1_000)
        print(f"live bar drawn {1000 * (time.monotonic() - started):.0f} ms after the PATCH")

        # A correction of an older bar: drawn in place, the view unchanged.
        before = page.evaluate("page.view()")
        charts.update(CHART, "price", _bar(FIRST + 2500 * STEP, 77.5))
        page.wait_for_function("page.series.data()[2500].close === 77.5", timeout=1_000)
        assert page.evaluate("page.view()") == before
        assert page.evaluate("page.series.data().length") == BARS + 1

    # A server restart: the socket reconnects, resumes, and live bars keep coming.
    phase[0] = "restart"
    server.stop()
    page.wait_for_function("page.socket.state === 'reconnecting'", timeout=10_000)
    restarted = start_server(server.log_path.parent, port=server.port, enable_persistence="true")
    try:
        page.wait_for_function(
            "page.socket.state === 'connected' && page.log.connects >= 2"
            " && page.log.resumed + page.log.resyncs >= 1",
            timeout=15_000,
        )
        phase[0] = "after"
        with ChartsClient(restarted.http_url) as charts:
            charts.update(CHART, "price", _bar(LAST + 2 * STEP, 124.5))
            page.wait_for_function("page.series.data().at(-1).close === 124.5", timeout=1_000)
        assert page.evaluate("page.series.data().length") == BARS + 2
        assert page.evaluate("page.log.resumed") == 1
    finally:
        restarted.stop()

    unexpected = [
        (when, text)
        for when, text in errors
        if not (when == "restart" and any(noise in text for noise in OUTAGE_NOISE))
    ]
    assert unexpected == []

"""Bars at other resolutions over the WebSocket: history, snapshots, live updates and resume."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest

from .conftest import ServerProcess, candles, open_socket, receive

pytestmark = pytest.mark.slow

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z


def new_chart() -> str:
    return f"tf-{uuid.uuid4().hex[:12]}"


async def replace(
    http: httpx.AsyncClient, chart: str, points: list[Any], series_type: str = "candlestick"
) -> None:
    body = {"paneId": 0, "seriesType": series_type, "data": points}
    resp = await http.post(f"/api/charts/{chart}/data/s", json=body)
    assert resp.status_code == 200, resp.text


async def upsert(http: httpx.AsyncClient, chart: str, points: list[Any]) -> None:
    resp = await http.patch(f"/api/charts/{chart}/data/s", json={"data": points})
    assert resp.status_code == 200, resp.text


def send(ws: Any, **message: Any) -> Any:
    return ws.send(orjson.dumps(message).decode())


async def test_subscribed_sockets_get_the_changed_bars(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    chart = new_chart()
    await replace(http, chart, candles(T0, 120))  # two hours of minutes
    watcher, _ = await open_socket(server.ws_url(chart))
    plain, _ = await open_socket(server.ws_url(chart))
    await send(watcher, type="subscribe", seriesId="s", resolution="60", requestId="sub")
    subscribed = await receive(watcher)
    assert subscribed == {
        "type": "subscribed",
        "chartId": chart,
        "paneId": 0,
        "seriesId": "s",
        "resolution": "60",
        "version": 1,
        "requestId": "sub",
    }
    live = {"time": T0 + 7200, "open": 1.0, "high": 3.0, "low": 0.5, "close": 2.0}
    await upsert(http, chart, [live])
    raw = await receive(watcher)
    assert (raw["op"], raw["version"], "resolution" in raw) == ("upsert", 2, False)
    bars = await receive(watcher)
    assert bars == {
        "type": "data_update",
        "chartId": chart,
        "op": "upsert",
        "paneId": 0,
        "seriesId": "s",
        "resolution": "60",
        "count": 1,
        "version": 2,
        "data": [live],
    }
    plain_raw = await receive(plain)
    assert plain_raw == raw

    # a correction of an old point updates its old bucket
    await upsert(http, chart, [{"time": T0 + 60, "open": 11, "high": 99, "low": 1, "close": 11}])
    await receive(watcher)
    old = await receive(watcher)
    assert old["resolution"] == "60" and old["version"] == 3
    assert old["data"] == [{"time": T0, "open": 10.0, "high": 99, "low": 1, "close": 70.0}]

    await send(watcher, type="unsubscribe", seriesId="s", resolution="1H")
    assert (await receive(watcher))["type"] == "unsubscribed"
    await upsert(http, chart, [{**live, "close": 2.5}])
    assert "resolution" not in await receive(watcher)
    await send(watcher, type="ping", requestId="probe")
    assert (await receive(watcher))["type"] == "pong"  # no bars after the raw update
    await watcher.close()
    await plain.close()


async def test_history_and_snapshot_at_a_resolution(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    chart = new_chart()
    await replace(http, chart, candles(T0, 600))
    ws, _ = await open_socket(server.ws_url(chart))
    await send(ws, type="request_history", seriesId="s", resolution="60", count=3, requestId=7)
    history = await receive(ws)
    assert history["type"] == "history_response" and history["requestId"] == 7
    assert history["resolution"] == "60" and history["totalCount"] == 10
    assert [bar["time"] for bar in history["data"]] == [T0 + 3600 * h for h in (7, 8, 9)]
    await send(ws, type="get_initial_data", paneId=0, seriesId="s", resolution="1D")
    snapshot = await receive(ws)
    assert snapshot["type"] == "initial_data_response" and snapshot["resolution"] == "1D"
    assert snapshot["data"] == [
        {"time": T0, "open": 10.0, "high": 611.0, "low": 9.0, "close": 610.0}
    ]
    await send(ws, type="get_initial_data", resolution="1D")
    assert (await receive(ws))["errorCode"] == "VALIDATION_ERROR"
    await ws.close()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "subscribe", "seriesId": "s", "resolution": "1Y"}, "INVALID_RESOLUTION"),
        ({"type": "subscribe", "seriesId": "s"}, "VALIDATION_ERROR"),
        ({"type": "subscribe", "seriesId": "other", "resolution": "5"}, "SERIES_NOT_FOUND"),
        ({"type": "request_history", "seriesId": "s", "resolution": 0}, "INVALID_RESOLUTION"),
    ],
)
async def test_bad_subscriptions_get_an_error_frame(
    server: ServerProcess, http: httpx.AsyncClient, message: dict[str, Any], code: str
) -> None:
    chart = new_chart()
    await replace(http, chart, candles(T0, 5))
    ws, _ = await open_socket(server.ws_url(chart))
    await send(ws, **message)
    error = await receive(ws)
    # a failed request_history is answered as a history_response carrying the error
    kind = "history_response" if message["type"] == "request_history" else "error"
    assert (error["type"], error["errorCode"]) == (kind, code)
    await ws.close()


async def test_custom_series_need_an_aggregation(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    chart = new_chart()
    await replace(http, chart, [{"time": T0, "value": 1}], "custom")
    ws, _ = await open_socket(server.ws_url(chart))
    await send(ws, type="subscribe", seriesId="s", resolution="5")
    error = await receive(ws)
    assert error["errorCode"] == "INVALID_RESOLUTION" and "aggregation" in error["error"]
    await ws.close()


async def test_replacing_a_watched_series_asks_for_a_refetch(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    chart = new_chart()
    await replace(http, chart, candles(T0, 10))
    ws, _ = await open_socket(server.ws_url(chart))
    await send(ws, type="subscribe", seriesId="s", resolution="5")
    await receive(ws)
    await replace(http, chart, candles(T0, 3))
    assert (await receive(ws))["op"] == "replace"
    refetch = await receive(ws)
    assert (refetch["op"], refetch["resolution"], "data" in refetch) == ("replace", "5", False)
    await ws.close()


async def test_resume_brings_the_missed_bars(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    chart = new_chart()
    await replace(http, chart, candles(T0, 30))
    ws, hello = await open_socket(server.ws_url(chart))
    await ws.close()
    seen = hello["version"]
    await upsert(http, chart, [{"time": T0 + 30 * 60, "open": 1, "high": 2, "low": 1, "close": 2}])
    await upsert(http, chart, [{"time": T0 + 5 * 60, "open": 1, "high": 500, "low": 1, "close": 2}])

    ws, _ = await open_socket(server.ws_url(chart))
    await send(ws, type="subscribe", seriesId="s", resolution="15")
    assert (await receive(ws))["type"] == "subscribed"
    await send(ws, type="resume", sinceVersion=seen)
    frames = [await receive(ws) for _ in range(4)]
    assert [f.get("resolution") for f in frames[:3]] == [None, None, "15"]
    bars = frames[2]
    assert bars["version"] == seen + 2 and bars["op"] == "upsert"
    assert [bar["time"] for bar in bars["data"]] == [T0, T0 + 30 * 60]
    assert bars["data"][0]["high"] == 500
    assert frames[3]["type"] == "resumed"
    await ws.close()

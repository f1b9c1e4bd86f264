"""The WebSocket protocol against a real uvicorn process, with real `websockets` clients."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .conftest import ServerProcess, candles, open_socket, receive

pytestmark = pytest.mark.slow


def new_chart() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


async def replace(http: httpx.AsyncClient, chart: str, series: str, points: list[Any]) -> None:
    body = {"paneId": 0, "seriesType": "candlestick", "data": points}
    resp = await http.post(f"/api/charts/{chart}/data/{series}", json=body)
    assert resp.status_code == 200, resp.text


async def upsert(http: httpx.AsyncClient, chart: str, series: str, points: list[Any]) -> None:
    resp = await http.patch(f"/api/charts/{chart}/data/{series}", json={"data": points})
    assert resp.status_code == 200, resp.text


async def assert_nothing_queued(ws: ClientConnection) -> None:
    """A ping answered by the very next frame proves nothing else was waiting (no duplicates)."""
    await ws.send('{"type":"ping","requestId":"probe"}')
    reply = await receive(ws)
    assert (reply["type"], reply["requestId"]) == ("pong", "probe"), reply


async def test_connected_comes_first_with_the_chart_version(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    chart = new_chart()
    ws, hello = await open_socket(server.ws_url(chart))
    assert hello["chartId"] == chart
    assert hello["version"] == 0  # the chart does not exist yet; the socket waits for it
    await ws.send('{"type":"get_initial_data","requestId":"snap"}')
    missing = await receive(ws)
    assert (missing["type"], missing["errorCode"], missing["requestId"]) == (
        "error",
        "CHART_NOT_FOUND",
        "snap",
    )
    await replace(http, chart, "s", candles(0, 3))
    update = await receive(ws)
    assert update["version"] == 1
    await ws.close()

    ws, hello = await open_socket(server.ws_url(chart))
    assert hello["version"] == 1
    await ws.close()


async def test_every_client_gets_every_update_once_in_version_order(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    chart = new_chart()
    clients = [(await open_socket(server.ws_url(chart)))[0] for _ in range(5)]
    await replace(http, chart, "a", candles(0, 10))
    await replace(http, chart, "b", candles(0, 10))

    async def producer(series: str, offset: int) -> None:
        for i in range(15):
            await upsert(http, chart, series, candles(600 + 60 * i, 1))

    await asyncio.gather(producer("a", 0), producer("b", 1))
    resp = await http.post(f"/api/charts/{chart}", json={"theme": "dark"})
    assert resp.status_code == 200
    assert (await http.delete(f"/api/charts/{chart}/data/0/b")).status_code == 204
    total = 2 + 30 + 2

    sequences = []
    for ws in clients:
        seen = [await receive(ws) for _ in range(total)]
        await assert_nothing_queued(ws)
        sequences.append(seen)
        await ws.close()

    first = sequences[0]
    assert [m["version"] for m in first] == list(range(1, total + 1))
    assert all(m["type"] == "data_update" and m["chartId"] == chart for m in first)
    assert all(seq == first for seq in sequences[1:])
    upserts = [m for m in first if m["op"] == "upsert"]
    assert len(upserts) == 30
    for series in ("a", "b"):
        times = [m["data"][0]["time"] for m in upserts if m["seriesId"] == series]
        assert times == [600 + 60 * i for i in range(15)]
    assert upserts[0]["data"] == candles(600, 1)
    assert upserts[0]["count"] == 1 and upserts[0]["paneId"] == 0
    assert first[0] == {
        "type": "data_update",
        "chartId": chart,
        "op": "replace",
        "paneId": 0,
        "seriesId": "a",
        "count": 10,
        "version": 1,
    }
    assert first[-2]["op"] == "options" and first[-2]["options"] == {"theme": "dark"}
    assert first[-1]["op"] == "delete" and first[-1]["seriesId"] == "b"


async def test_chart_deletion_is_announced_and_the_socket_stays(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    chart = new_chart()
    ws, _ = await open_socket(server.ws_url(chart))
    await replace(http, chart, "s", candles(0, 2))
    assert (await http.delete(f"/api/charts/{chart}")).status_code == 204
    await replace(http, chart, "s", candles(0, 1))
    seen = [await receive(ws) for _ in range(3)]
    assert [(m["op"], m["version"]) for m in seen] == [
        ("replace", 1),
        ("chart_deleted", 2),
        ("replace", 1),  # a new chart under the same id starts again
    ]
    await ws.close()


async def test_history_and_initial_data_over_the_socket(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    chart = new_chart()
    points = candles(1_000, 120)
    await replace(http, chart, "big", points)
    await replace(http, chart, "small", points[:5])
    ws, hello = await open_socket(server.ws_url(chart))
    assert hello["version"] == 2

    await ws.send(
        orjson.dumps(
            {
                "type": "request_history",
                "paneId": 0,
                "seriesId": "big",
                "beforeTime": points[50]["time"],
                "count": 10,
                "requestId": "older-1",
            }
        ).decode()
    )
    chunk = await receive(ws)
    rest = await http.get(
        f"/api/charts/{chart}/history/0/big",
        params={"before_time": points[50]["time"], "count": 10},
    )
    assert chunk.pop("type") == "history_response"
    assert chunk.pop("chartId") == chart
    assert chunk.pop("paneId") == 0
    assert chunk.pop("requestId") == "older-1"
    assert chunk == rest.json()
    assert chunk["data"] == points[40:50]

    await ws.send('{"type":"request_history","series_id":"big","after_time":1000,"count":3}')
    after = await receive(ws)
    assert "requestId" not in after
    assert after["direction"] == "after" and after["data"] == points[1:4]

    await ws.send('{"type":"request_history","seriesId":"big"}')  # default count, newest points
    newest = await receive(ws)
    assert newest["data"] == points[-20:] and newest["hasMoreBefore"] is True

    await ws.send('{"type":"get_initial_data","requestId":5}')
    whole = await receive(ws)
    assert whole["type"] == "initial_data_response" and whole["requestId"] == 5
    assert whole["version"] == 2 and whole["chartId"] == chart
    big = whole["panes"]["0"]["big"]
    assert big["chunked"] is True and big["data"] == points[-20:] and big["totalCount"] == 120
    assert whole["panes"]["0"]["small"]["data"] == points[:5]

    await ws.send('{"type":"get_initial_data","paneId":0,"seriesId":"small"}')
    one = await receive(ws)
    assert one["type"] == "initial_data_response"
    assert (one["chartId"], one["paneId"], one["seriesId"], one["version"]) == (
        chart,
        0,
        "small",
        2,
    )
    assert one["data"] == points[:5] and one["chunked"] is False

    await ws.send('{"type":"request_history","seriesId":"nope","requestId":"x"}')
    missing = await receive(ws)
    assert missing["type"] == "history_response" and missing["seriesId"] == "nope"
    assert missing["errorCode"] == "SERIES_NOT_FOUND" and missing["requestId"] == "x"
    await ws.close()


async def test_initial_data_of_one_pane(server: ServerProcess, http: httpx.AsyncClient) -> None:
    chart = new_chart()
    points = candles(1_000, 60)
    await replace(http, chart, "price", points)
    for series, count in (("volume", 60), ("rsi", 5)):
        line = [{"time": p["time"], "value": p["close"]} for p in points[:count]]
        body = {"paneId": 1, "seriesType": "line", "data": line}
        resp = await http.post(f"/api/charts/{chart}/data/{series}", json=body)
        assert resp.status_code == 200, resp.text
    whole = (await http.get(f"/api/charts/{chart}")).json()
    ws, _ = await open_socket(server.ws_url(chart))

    await ws.send('{"type":"get_initial_data","paneId":1,"requestId":"pane-1"}')
    pane = await receive(ws)
    assert pane.pop("type") == "initial_data_response"
    assert pane.pop("requestId") == "pane-1"
    assert (pane.pop("chartId"), pane.pop("paneId"), pane.pop("version")) == (chart, 1, 3)
    assert pane == {"options": whole["options"], "panes": {"1": whole["panes"]["1"]}}
    assert set(pane["panes"]["1"]) == {"volume", "rsi"}
    assert pane["panes"]["1"]["volume"]["chunked"] is True  # chunked as in the whole chart

    await ws.send('{"type":"get_initial_data","pane_id":7}')
    empty = await receive(ws)
    assert empty["type"] == "initial_data_response" and empty["panes"] == {"7": {}}

    await ws.send('{"type":"get_initial_data","paneId":101,"requestId":"too-far"}')
    refused = await receive(ws)
    assert (refused["type"], refused["errorCode"], refused["requestId"]) == (
        "error",
        "VALIDATION_ERROR",
        "too-far",
    )
    await ws.close()


async def test_resume_replays_what_was_missed_in_order(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    chart = new_chart()
    await replace(http, chart, "s", candles(0, 1))
    ws, hello = await open_socket(server.ws_url(chart))
    assert hello["version"] == 1
    await upsert(http, chart, "s", candles(60, 1))
    last_seen = (await receive(ws))["version"]
    assert last_seen == 2
    await ws.close()

    for i in range(3):  # missed while away
        await upsert(http, chart, "s", candles(120 + 60 * i, 1))

    ws, hello = await open_socket(server.ws_url(chart))
    assert hello["version"] == 5
    await upsert(http, chart, "s", candles(300, 1))  # live, before the client asks to resume
    await ws.send(
        orjson.dumps({"type": "resume", "sinceVersion": last_seen, "requestId": 1}).decode()
    )
    frames = [await receive(ws) for _ in range(6)]
    live, replayed, resumed = frames[0], frames[1:5], frames[5]
    assert live["version"] == 6
    assert [m["version"] for m in replayed] == [3, 4, 5, 6]
    assert [m["data"][0]["time"] for m in replayed] == [120, 180, 240, 300]
    assert resumed == {
        "type": "resumed",
        "chartId": chart,
        "sinceVersion": 2,
        "requestId": 1,
        "version": 6,
        "replayed": 4,
    }
    await upsert(http, chart, "s", candles(360, 1))
    assert (await receive(ws))["version"] == 7

    await ws.send('{"type":"resume","sinceVersion":7}')  # nothing missed
    assert (await receive(ws))["replayed"] == 0
    await ws.close()


async def test_resync_required_when_the_gap_is_no_longer_held(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    chart = new_chart()
    ws, _ = await open_socket(server.ws_url(chart))
    await replace(http, chart, "s", candles(0, 1))
    assert (await receive(ws))["version"] == 1
    await ws.close()
    for i in range(12):  # the test server holds 8 events per chart
        await upsert(http, chart, "s", candles(60 + 60 * i, 1))

    ws, hello = await open_socket(server.ws_url(chart))
    await ws.send('{"type":"resume","sinceVersion":1}')
    reply = await receive(ws)
    assert reply["type"] == "resync_required"
    assert reply["sinceVersion"] == 1 and reply["version"] == hello["version"] == 13
    assert reply["reason"]

    await ws.send('{"type":"resume","sinceVersion":6}')  # 7..13 are still held
    frames = [await receive(ws) for _ in range(8)]
    assert [m["version"] for m in frames[:7]] == list(range(7, 14))
    assert frames[7]["type"] == "resumed"

    await ws.send('{"type":"resume","sinceVersion":99}')  # a version this chart never had
    assert (await receive(ws))["type"] == "resync_required"
    await ws.close()


def _nested(depth: int) -> str:
    return '{"type":"ping","x":' + "[" * depth + "]" * depth + "}"


BAD_FRAMES: list[tuple[str, str | bytes, str]] = [
    ("not json", "hello", "INVALID_JSON"),
    ("truncated json", '{"type":"ping"', "INVALID_JSON"),
    ("array", "[1, 2]", "INVALID_MESSAGE"),
    ("string", '"ping"', "INVALID_MESSAGE"),
    ("number", "42", "INVALID_MESSAGE"),
    ("null", "null", "INVALID_MESSAGE"),
    ("no type", "{}", "INVALID_MESSAGE"),
    ("type not a string", '{"type": 7}', "INVALID_MESSAGE"),
    ("unknown type", '{"type":"watch"}', "UNKNOWN_MESSAGE_TYPE"),
    ("unknown field", '{"type":"resume","sinceVersion":0,"extra":1}', "VALIDATION_ERROR"),
    ("negative version", '{"type":"resume","sinceVersion":-1}', "VALIDATION_ERROR"),
    ("version as string", '{"type":"resume","sinceVersion":"3"}', "VALIDATION_ERROR"),
    ("version missing", '{"type":"resume"}', "VALIDATION_ERROR"),
    ("bad request id", '{"type":"ping","requestId":{"a":1}}', "VALIDATION_ERROR"),
    ("pane as string", '{"type":"get_initial_data","paneId":"0"}', "VALIDATION_ERROR"),
    ("huge frame", '{"type":"ping","pad":"' + "x" * 10_000 + '"}', "MESSAGE_TOO_LARGE"),
    ("deeply nested", _nested(2000), "INVALID_JSON"),
    ("binary", b"\x00\x01binary", "BINARY_NOT_SUPPORTED"),
]


async def test_bad_frames_get_an_error_frame_and_the_socket_stays_usable(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    chart = new_chart()
    await replace(http, chart, "s", candles(0, 5))
    before = (await http.get(f"/api/charts/{chart}")).json()
    ws, _ = await open_socket(server.ws_url(chart))
    for name, frame, code in BAD_FRAMES:
        await ws.send(frame)
        reply = await receive(ws)
        assert reply["type"] == "error", name
        assert reply["errorCode"] == code, (name, reply)
        assert isinstance(reply["error"], str) and reply["error"], name
        await ws.send('{"type":"ping"}')
        assert (await receive(ws))["type"] == "pong", name

    await ws.send('{"type":"resume","sinceVersion":"1","requestId":"r1"}')
    assert (await receive(ws))["requestId"] == "r1"  # errors echo a readable requestId

    assert (await http.get(f"/api/charts/{chart}")).json() == before
    await ws.send('{"type":"resume","sinceVersion":1}')
    assert (await receive(ws))["type"] == "resumed"  # no version was spent on the bad frames
    await ws.close()


#: request_history frames that fail: (name, frame, errorCode, paneId and seriesId echoed).
BAD_HISTORY_REQUESTS: list[tuple[str, str, str, object, object]] = [
    ("pane as string", '{"paneId":"0","seriesId":"s"}', "VALIDATION_ERROR", None, "s"),
    ("pane as boolean", '{"paneId":true,"seriesId":"s"}', "VALIDATION_ERROR", None, "s"),
    ("pane out of range", '{"paneId":500,"seriesId":"s"}', "VALIDATION_ERROR", 500, "s"),
    ("series as list", '{"seriesId":["s"]}', "VALIDATION_ERROR", 0, None),
    ("series missing", '{"paneId":2,"count":5}', "VALIDATION_ERROR", 2, None),
    ("bad series id", '{"seriesId":"../x"}', "VALIDATION_ERROR", 0, "../x"),
    ("dot series id", '{"seriesId":"."}', "VALIDATION_ERROR", 0, "."),
    ("count as string", '{"seriesId":"s","count":"5"}', "VALIDATION_ERROR", 0, "s"),
    ("count too large", '{"seriesId":"s","count":100000}', "VALIDATION_ERROR", 0, "s"),
    ("bad time", '{"seriesId":"s","beforeTime":"soon"}', "VALIDATION_ERROR", 0, "s"),
    ("both times", '{"seriesId":"s","beforeTime":1,"afterTime":2}', "VALIDATION_ERROR", 0, "s"),
    ("unknown field", '{"pane_id":1,"series_id":"s","extra":1}', "VALIDATION_ERROR", 1, "s"),
    ("bad request id", '{"seriesId":"s","requestId":{"a":1}}', "VALIDATION_ERROR", 0, "s"),
    ("no such series", '{"paneId":3,"seriesId":"nope"}', "SERIES_NOT_FOUND", 3, "nope"),
]


async def test_failed_history_requests_are_answered_as_history_responses(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    chart = new_chart()
    await replace(http, chart, "s", candles(0, 5))
    ws, _ = await open_socket(server.ws_url(chart))
    for name, fields, code, pane_id, series_id in BAD_HISTORY_REQUESTS:
        await ws.send('{"type":"request_history",' + fields[1:])
        reply = await receive(ws)
        assert isinstance(reply.pop("error"), str), name
        assert reply == {
            "type": "history_response",
            "errorCode": code,
            "chartId": chart,
            "paneId": pane_id,
            "seriesId": series_id,
        }, name

    frame = '{"type":"request_history","seriesId":"s","count":"5","requestId":"r1"}'
    await ws.send(frame)
    assert (await receive(ws))["requestId"] == "r1"
    await ws.send('{"type":"request_history","seriesId":"s","count":2,"requestId":"r2"}')
    answered = await receive(ws)
    assert "error" not in answered and answered["data"] == candles(0, 5)[-2:]
    await ws.close()

    gone = new_chart()
    ws, _ = await open_socket(server.ws_url(gone))
    await ws.send('{"type":"request_history","paneId":0,"seriesId":"s","requestId":7}')
    missing = await receive(ws)
    assert (missing["type"], missing["errorCode"], missing["requestId"]) == (
        "history_response",
        "CHART_NOT_FOUND",
        7,
    )
    assert (missing["chartId"], missing["paneId"], missing["seriesId"]) == (gone, 0, "s")
    await ws.close()


@pytest.mark.parametrize("chart_id", ["bad..id", "%2E", "%2E%2E%2E"])
async def test_invalid_chart_id_is_refused_with_a_reason(
    server: ServerProcess, chart_id: str
) -> None:
    async with connect(server.ws_url(chart_id)) as ws:
        reply = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply["type"] == "error" and reply["errorCode"] == "VALIDATION_ERROR"
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

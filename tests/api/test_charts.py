"""The REST contract through the app, in process."""

from __future__ import annotations

from typing import Any
from unittest.mock import ANY

import httpx
import orjson
import pytest

CANDLES = [
    {"time": 1_700_000_000 + 60 * i, "open": 10 + i, "high": 12 + i, "low": 9 + i, "close": 11 + i}
    for i in range(30)
]


async def put_series(
    client: httpx.AsyncClient, chart: str = "c1", series: str = "s1", data: list[Any] = CANDLES
) -> httpx.Response:
    body = {"paneId": 0, "seriesType": "candlestick", "data": data, "options": {"upColor": "#0f0"}}
    return await client.post(f"/api/charts/{chart}/data/{series}", json=body)


async def test_create_is_idempotent_and_listed(client: httpx.AsyncClient) -> None:
    first = await client.post("/api/charts/c1", json={"layout": {"textColor": "#333"}})
    assert first.status_code == 201
    options = {"layout": {"textColor": "#333"}}
    assert first.json() == {"chartId": "c1", "options": options, "version": 1}
    assert first.headers["x-chart-version"] == "1"
    again = await client.post("/api/charts/c1")
    assert again.status_code == 200
    assert again.json()["options"] == {"layout": {"textColor": "#333"}}
    listing = (await client.get("/api/charts")).json()["charts"]
    assert [(c["chartId"], c["seriesCount"]) for c in listing] == [("c1", 0)]
    assert listing[0]["updatedAt"].endswith("+00:00")


async def test_a_blank_body_is_not_an_empty_one(client: httpx.AsyncClient) -> None:
    json_type = {"Content-Type": "application/json"}
    blank = await client.post("/api/charts/c1", content=b" \n", headers=json_type)
    assert blank.status_code == 422 and blank.json()["errorCode"] == "VALIDATION_ERROR"
    assert (await client.get("/api/charts")).json()["charts"] == [], "nothing was created"
    empty = await client.post("/api/charts/c1", content=b"", headers=json_type)
    assert empty.status_code == 201 and empty.json()["options"] == {}


async def test_series_round_trip_and_whole_chart(client: httpx.AsyncClient) -> None:
    response = await put_series(client)
    assert response.json() == {
        "seriesId": "s1",
        "seriesType": "candlestick",
        "count": 30,
        "version": 1,
    }
    series = (await client.get("/api/charts/c1/data/0/s1")).json()
    assert series == {
        "seriesId": "s1",
        "seriesType": "candlestick",
        "options": {"upColor": "#0f0"},
        "data": CANDLES,
        "chunked": False,
        "totalCount": 30,
    }
    chart = (await client.get("/api/charts/c1")).json()
    assert chart["chartId"] == "c1"
    assert chart["panes"] == {"0": {"s1": series}}


async def test_large_series_come_as_their_newest_chunk(
    make_client: Any,
) -> None:
    async with make_client(chunk_size_threshold=20, default_chunk_size=7) as client:
        await put_series(client)
        chart = (await client.get("/api/charts/c1")).json()
        series = chart["panes"]["0"]["s1"]
        assert series["chunked"] is True
        assert series["data"] == CANDLES[-7:]
        assert series["totalCount"] == 30
        assert series["hasMoreBefore"] is True and series["hasMoreAfter"] is False
        assert series["chunkInfo"] == {
            "startIndex": 23,
            "endIndex": 30,
            "startTime": CANDLES[23]["time"],
            "endTime": CANDLES[29]["time"],
            "count": 7,
        }


async def test_series_of_more_than_500_points_come_chunked_by_default(
    client: httpx.AsyncClient,
) -> None:
    line = [{"time": 1_700_000_000 + 60 * i, "value": float(i)} for i in range(501)]
    for series, points in (("small", line[:499]), ("large", line)):
        body = {"paneId": 0, "seriesType": "line", "data": points}
        assert (await client.post(f"/api/charts/c1/data/{series}", json=body)).status_code == 200
    small = (await client.get("/api/charts/c1/data/0/small")).json()
    assert small["chunked"] is False and len(small["data"]) == 499
    large = (await client.get("/api/charts/c1/data/0/large")).json()
    assert large["chunked"] is True and large["hasMoreBefore"] is True
    assert large["data"] == line[-500:] and large["totalCount"] == 501


async def test_history_before_after_and_newest(client: httpx.AsyncClient) -> None:
    await put_series(client)
    t10 = CANDLES[10]["time"]
    before = (await client.get(f"/api/charts/c1/history/0/s1?before_time={t10}&count=4")).json()
    assert before["data"] == CANDLES[6:10]
    assert before["direction"] == "before"
    assert (before["hasMoreBefore"], before["hasMoreAfter"], before["totalCount"]) == (
        True,
        True,
        30,
    )
    assert before["chunkInfo"]["startIndex"] == 6 and before["chunkInfo"]["endIndex"] == 10

    after = (await client.get(f"/api/charts/c1/history/0/s1?afterTime={t10}&count=3")).json()
    assert after["data"] == CANDLES[11:14] and after["direction"] == "after"

    newest = (await client.get("/api/charts/c1/history/0/s1?count=2")).json()
    assert newest["data"] == CANDLES[-2:] and newest["hasMoreAfter"] is False

    start = (
        await client.get(f"/api/charts/c1/history/0/s1?before_time={CANDLES[0]['time']}")
    ).json()
    assert start["data"] == [] and start["hasMoreBefore"] is False
    assert start["chunkInfo"]["startTime"] is None

    by_body = await client.post(
        "/api/charts/c1/history",
        json={"paneId": 0, "seriesId": "s1", "beforeTime": t10, "count": 4},
    )
    assert by_body.json() == before
    iso = (
        await client.get("/api/charts/c1/history/0/s1?before_time=2023-11-14T22:23:20Z&count=1")
    ).json()
    assert iso["data"] == [CANDLES[9]]


async def test_upsert_appends_replaces_and_corrects(client: httpx.AsyncClient) -> None:
    await put_series(client)
    last = CANDLES[-1]["time"]
    changes = [
        {"time": CANDLES[3]["time"], "open": 1, "high": 1, "low": 1, "close": 1},
        {"time": last, "open": 5, "high": 6, "low": 4, "close": 5},
        {"time": last + 60, "open": 5, "high": 6, "low": 4, "close": 6},
    ]
    response = await client.patch("/api/charts/c1/data/s1", json={"pane_id": 0, "data": changes})
    assert response.json() == {"seriesId": "s1", "count": 3, "totalCount": 31, "version": 2}
    data = (await client.get("/api/charts/c1/data/0/s1")).json()["data"]
    assert data == [*CANDLES[:3], changes[0], *CANDLES[4:29], changes[1], changes[2]]


async def test_deletes(client: httpx.AsyncClient) -> None:
    await put_series(client)
    assert (await client.delete("/api/charts/c1/data/0/s1")).status_code == 204
    assert (await client.get("/api/charts/c1/data/0/s1")).status_code == 404
    assert (await client.delete("/api/charts/c1")).status_code == 204
    missing = await client.get("/api/charts/c1")
    assert missing.status_code == 404
    assert missing.json()["errorCode"] == "CHART_NOT_FOUND"
    assert missing.json()["requestId"] == missing.headers["x-request-id"]


BAD_WRITES: list[tuple[str, str, object, int, str]] = [
    (
        "POST",
        "/api/charts/c1/data/s1",
        {
            "paneId": 0,
            "seriesType": "line",
            "data": [{"time": 1, "value": 1}, {"time": 1, "value": 2}],
        },
        400,
        "DUPLICATE_TIME",
    ),
    (
        "POST",
        "/api/charts/c1/data/s1",
        {"paneId": 0, "seriesType": "line", "data": [{"time": 1, "value": "x"}]},
        400,
        "INVALID_DATA",
    ),
    (
        "POST",
        "/api/charts/c1/data/s1",
        {
            "paneId": 0,
            "seriesType": "candlestick",
            "data": [{"time": 1, "open": 1, "high": 1, "low": 2, "close": 1}],
        },
        400,
        "INVALID_DATA",
    ),
    (
        "POST",
        "/api/charts/c1/data/s1",
        {"paneId": 0, "seriesType": "line", "data": [{"time": 10**16, "value": 1}]},
        400,
        "INVALID_DATA",
    ),
    (
        "POST",
        "/api/charts/c1/data/s1",
        {"paneId": 101, "seriesType": "line", "data": []},
        422,
        "VALIDATION_ERROR",
    ),
    (
        "POST",
        "/api/charts/c1/data/s1",
        {"paneId": "0", "seriesType": "line", "data": []},
        422,
        "VALIDATION_ERROR",
    ),
    (
        "POST",
        "/api/charts/c1/data/s1",
        {"paneId": 0, "seriesType": "pie", "data": []},
        422,
        "VALIDATION_ERROR",
    ),
    ("POST", "/api/charts/c1/data/s1", {"paneId": 0, "data": []}, 422, "VALIDATION_ERROR"),
    (
        "POST",
        "/api/charts/c1/data/s1",
        {"paneId": 0, "seriesType": "line", "data": {"time": 1}},
        400,
        "INVALID_DATA",
    ),
    (
        "POST",
        "/api/charts/c1/data/s1",
        {"paneId": 0, "seriesType": "line", "data": [], "bogus": 1},
        422,
        "VALIDATION_ERROR",
    ),
    (
        "POST",
        "/api/charts/c1/data/s1",
        {"paneId": 0, "seriesType": "line", "data": [], "options": [1]},
        422,
        "VALIDATION_ERROR",
    ),
    ("POST", "/api/charts/c1/data/s1", b"{not json", 422, "VALIDATION_ERROR"),
    ("POST", "/api/charts/c1/data/s1", b"[1, 2]", 422, "VALIDATION_ERROR"),
    ("POST", "/api/charts/c1/data/s1", b"", 422, "VALIDATION_ERROR"),
    (
        "POST",
        "/api/charts/c1/data/s1",
        b'{"paneId":0,"seriesType":"line","data":[{"time":1,"value":NaN}]}',
        422,
        "VALIDATION_ERROR",
    ),
    (
        "POST",
        "/api/charts/c1/data/s1",
        b'{"paneId":0,"seriesType":"line","data":[{"time":1,"value":1e999}]}',
        422,
        "VALIDATION_ERROR",
    ),
    (
        "POST",
        "/api/charts/bad%20id/data/s1",
        {"paneId": 0, "seriesType": "line", "data": []},
        422,
        "VALIDATION_ERROR",
    ),
    (
        "POST",
        "/api/charts/c1/data/%2E%2E",
        {"paneId": 0, "seriesType": "line", "data": []},
        422,
        "VALIDATION_ERROR",
    ),
    ("POST", "/api/charts/%2E", None, 422, "VALIDATION_ERROR"),
    (
        "POST",
        "/api/charts/c1/data/%2E",
        {"paneId": 0, "seriesType": "line", "data": []},
        422,
        "VALIDATION_ERROR",
    ),
    ("PATCH", "/api/charts/c1/data/%2E%2E%2E", {"paneId": 0, "data": []}, 422, "VALIDATION_ERROR"),
    ("GET", "/api/charts/%2E/history/0/s1", None, 422, "VALIDATION_ERROR"),
    ("DELETE", "/api/charts/%2E%2E%2E", None, 422, "VALIDATION_ERROR"),
    (
        "POST",
        "/api/charts/a..b/data/s1",
        {"paneId": 0, "seriesType": "line", "data": []},
        422,
        "VALIDATION_ERROR",
    ),
    (
        "POST",
        "/api/charts/c1/data/s%2F1",
        {"paneId": 0, "seriesType": "line", "data": []},
        405,
        "METHOD_NOT_ALLOWED",
    ),
    ("PATCH", "/api/charts/c1/data/s%2F1", {"paneId": 0, "data": []}, 405, "METHOD_NOT_ALLOWED"),
    ("GET", "/api/charts/c1/data/0/a%2F..%2Fb", None, 404, "NOT_FOUND"),
    (
        "PATCH",
        "/api/charts/c1/data/s1",
        {"paneId": 0, "seriesType": "line", "data": [{"time": 1, "value": 1}]},
        409,
        "SERIES_TYPE_CONFLICT",
    ),
    (
        "PATCH",
        "/api/charts/c1/data/s1",
        {"paneId": 0, "data": [{"time": 5, "open": 1, "high": 2, "low": 0, "close": 3}]},
        400,
        "INVALID_DATA",
    ),
    (
        "POST",
        "/api/charts/c1/data/candles",
        {"paneId": 0, "seriesType": "line", "data": [{"time": 1, "open": 1, "close": 1.5}]},
        400,
        "INVALID_DATA",
    ),
    (
        "PATCH",
        "/api/charts/c1/data/s1",
        {
            "paneId": 0,
            "data": [
                {"time": 5, "open": 1, "high": 1, "low": 1, "close": 1},
                {"time": 6, "value": 1},
            ],
        },
        400,
        "INVALID_DATA",
    ),
    (
        "PATCH",
        "/api/charts/c1/data/s1",
        {"paneId": 0, "data": [{"time": 5}, {"time": 5}]},
        400,
        "DUPLICATE_TIME",
    ),
    ("PATCH", "/api/charts/c1/data/nope", {"paneId": 0, "data": []}, 404, "SERIES_NOT_FOUND"),
    ("PATCH", "/api/charts/c1/data/s1", {"paneId": 2, "data": []}, 404, "SERIES_NOT_FOUND"),
    ("POST", "/api/charts/c1", b"[]", 422, "VALIDATION_ERROR"),
    ("POST", "/api/charts/c1", b"\x0c", 422, "VALIDATION_ERROR"),
    (
        "POST",
        "/api/charts/c1/history",
        {"paneId": 0, "seriesId": "s1", "count": 0},
        422,
        "VALIDATION_ERROR",
    ),
    ("POST", "/api/charts/c1/history", {"paneId": 0, "count": 5}, 422, "VALIDATION_ERROR"),
    (
        "POST",
        "/api/charts/c1/history",
        {"paneId": 0, "seriesId": "s1", "beforeTime": "soon"},
        422,
        "VALIDATION_ERROR",
    ),
    (
        "POST",
        "/api/charts/c1/history",
        {"paneId": 0, "seriesId": "s1", "beforeTime": 5, "afterTime": 1},
        422,
        "VALIDATION_ERROR",
    ),
    ("GET", "/api/charts/c1/history/0/s1?count=0", None, 422, "VALIDATION_ERROR"),
    ("GET", "/api/charts/c1/history/0/s1?count=10001", None, 422, "VALIDATION_ERROR"),
    ("GET", "/api/charts/c1/history/0/s1?count=ten", None, 422, "VALIDATION_ERROR"),
    ("GET", "/api/charts/c1/history/101/s1", None, 422, "VALIDATION_ERROR"),
    ("GET", "/api/charts/c1/history/x/s1", None, 422, "VALIDATION_ERROR"),
    ("GET", "/api/charts/c1/history/0/s1?before_time=tomorrow", None, 422, "VALIDATION_ERROR"),
    ("GET", "/api/charts/c%20x/history/0/s1", None, 422, "VALIDATION_ERROR"),
    ("GET", "/api/charts/c1/history/0/missing", None, 404, "SERIES_NOT_FOUND"),
    ("GET", "/api/charts/nope/history/0/s1", None, 404, "CHART_NOT_FOUND"),
    ("GET", "/api/charts/c1/data/-1/s1", None, 422, "VALIDATION_ERROR"),
    ("GET", "/api/charts/c1/data/zero/s1", None, 422, "VALIDATION_ERROR"),
    ("DELETE", "/api/charts/nope", None, 404, "CHART_NOT_FOUND"),
]


@pytest.mark.parametrize(("method", "url", "body", "status", "code"), BAD_WRITES)
async def test_bad_requests_get_a_sentence_and_change_nothing(
    client: httpx.AsyncClient, method: str, url: str, body: object, status: int, code: str
) -> None:
    await put_series(client)
    before = (await client.get("/api/charts/c1")).content
    content = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else None
    headers = {"Content-Type": "application/json"} if content is not None else {}
    response = await client.request(method, url, content=content, headers=headers)
    assert response.status_code == status, response.text
    envelope = response.json()
    assert envelope["errorCode"] == code
    assert isinstance(envelope["detail"], str) and len(envelope["detail"]) > 10
    assert envelope["requestId"] == response.headers["x-request-id"]
    if status == 422:
        assert isinstance(envelope["errors"], list)
    after = (await client.get("/api/charts/c1")).content
    assert after == before
    assert [c["chartId"] for c in (await client.get("/api/charts")).json()["charts"]] == ["c1"]


async def test_request_id_is_accepted_when_well_formed(client: httpx.AsyncClient) -> None:
    kept = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    replaced = await client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    assert len(replaced.headers["x-request-id"]) == 32


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "healthy", "version": "0.1.0"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["datafeed"] == {"status": "ok", "chartsInMemory": 0, "durationMs": ANY}
    assert "store" not in checks


async def test_openapi_documents_every_route(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    history = paths["/api/charts/{chart_id}/history/{pane_id}/{series_id}"]["get"]
    assert {p["name"] for p in history["parameters"]} >= {"before_time", "after_time", "count"}
    replace = paths["/api/charts/{chart_id}/data/{series_id}"]["post"]
    assert (
        "seriesType"
        in replace["requestBody"]["content"]["application/json"]["schema"]["properties"]
    )

"""Bars at other resolutions through the REST contract (memory mode; persistence in
tests/charts/test_persistence.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z, a Monday
MINUTES = [
    {
        "time": T0 + 60 * i,
        "open": 100 + i,
        "high": 101 + i,
        "low": 99 + i,
        "close": 100.5 + i,
        "volume": 2,
    }
    for i in range(600)
]


async def put(
    client: httpx.AsyncClient,
    data: list[dict[str, Any]] = MINUTES,
    series_type: str = "candlestick",
    **extra: Any,
) -> httpx.Response:
    body = {"paneId": 0, "seriesType": series_type, "data": data, **extra}
    return await client.post("/api/charts/c/data/s", json=body)


async def test_history_in_hourly_bars(client: httpx.AsyncClient) -> None:
    assert (await put(client)).status_code == 200
    got = (await client.get("/api/charts/c/history/0/s?resolution=60&count=3")).json()
    assert got["resolution"] == "60"
    assert got["totalCount"] == 10
    assert [bar["time"] for bar in got["data"]] == [T0 + 3600 * h for h in (7, 8, 9)]
    assert got["data"][-1] == {
        "time": T0 + 9 * 3600,
        "open": 640,
        "high": 700,
        "low": 639,
        "close": 699.5,
        "volume": 120,
    }
    assert got["hasMoreBefore"] is True and got["hasMoreAfter"] is False
    assert got["chunkInfo"] == {
        "startIndex": 7,
        "endIndex": 10,
        "startTime": T0 + 7 * 3600,
        "endTime": T0 + 9 * 3600,
        "count": 3,
    }
    before = await client.get(
        f"/api/charts/c/history/0/s?resolution=60&count=2&before_time={T0 + 7 * 3600}"
    )
    assert [bar["time"] for bar in before.json()["data"]] == [T0 + 5 * 3600, T0 + 6 * 3600]
    after = await client.get(f"/api/charts/c/history/0/s?resolution=4H&after_time={T0 + 3600}")
    assert after.json()["resolution"] == "240"
    assert [bar["time"] for bar in after.json()["data"]] == [T0 + 4 * 3600, T0 + 8 * 3600]
    assert after.json()["direction"] == "after"
    raw = (await client.get("/api/charts/c/history/0/s?count=2")).json()
    assert "resolution" not in raw and raw["data"] == MINUTES[-2:]


async def test_post_history_and_series_at_a_resolution(client: httpx.AsyncClient) -> None:
    await put(client)
    body = {"paneId": 0, "seriesId": "s", "resolution": "1D", "count": 5}
    got = (await client.post("/api/charts/c/history", json=body)).json()
    assert got["resolution"] == "1D" and len(got["data"]) == 1 and got["data"][0]["time"] == T0
    series = (await client.get("/api/charts/c/data/0/s?resolution=120")).json()
    assert series["resolution"] == "120" and series["totalCount"] == 5
    assert series["chunked"] is False and len(series["data"]) == 5


@pytest.mark.parametrize("resolution", ["0", "1Y", "5m", "abc", "1441", "1.5", "60S60"])
async def test_bad_resolutions_are_422(client: httpx.AsyncClient, resolution: str) -> None:
    await put(client)
    for response in (
        await client.get(f"/api/charts/c/history/0/s?resolution={resolution}"),
        await client.get(f"/api/charts/c/data/0/s?resolution={resolution}"),
        await client.post(
            "/api/charts/c/history", json={"seriesId": "s", "resolution": resolution}
        ),
    ):
        assert response.status_code == 422, response.text
        assert response.json()["errorCode"] == "INVALID_RESOLUTION"
        assert f"resolution '{resolution}'" in response.json()["detail"]


async def test_market_is_stored_and_returned_and_aligns_bars(client: httpx.AsyncClient) -> None:
    market = {
        "timezone": "America/New_York",
        "session": "0930-1600:23456",
        "symbol": "ACME",
        "pricescale": 100,
    }
    # Tuesday 2024-01-02 from 14:00 UTC (09:00 EST): the first 30 minutes are before the open
    data = [{"time": T0 + 86_400 + 14 * 3600 + 60 * i, "value": float(i)} for i in range(120)]
    assert (await put(client, data, "line", market=market)).status_code == 200
    series = (await client.get("/api/charts/c/data/0/s")).json()
    assert series["market"] == market
    got = (await client.get("/api/charts/c/history/0/s?resolution=60")).json()
    assert [(bar["time"], bar["value"]) for bar in got["data"]] == [
        (T0 + 86_400 + 14 * 3600 + 1800, 89.0),
        (T0 + 86_400 + 15 * 3600 + 1800, 119.0),
    ]
    chart = (await client.get("/api/charts/c")).json()
    assert chart["panes"]["0"]["s"]["market"] == market


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"market": {"timezone": "Mars/Olympus"}}, "INVALID_MARKET"),
        ({"market": {"session": "9:30-16:00"}}, "INVALID_MARKET"),
        ({"market": "NYSE"}, "INVALID_MARKET"),
        ({"aggregation": "median"}, "INVALID_RESOLUTION"),
        ({"aggregation": "sum"}, "INVALID_RESOLUTION"),  # not for a candlestick series
    ],
)
async def test_bad_markets_store_nothing(
    client: httpx.AsyncClient, extra: dict[str, Any], code: str
) -> None:
    response = await put(client, **extra)
    assert response.status_code == 422 and response.json()["errorCode"] == code
    assert (await client.get("/api/charts/c/data/0/s")).status_code == 404


async def test_value_rules_and_custom_series(client: httpx.AsyncClient) -> None:
    data = [{"time": T0 + 60 * i, "value": float(i)} for i in range(10)]
    await put(client, data, "histogram")
    got = (await client.get("/api/charts/c/history/0/s?resolution=5")).json()["data"]
    assert got == [{"time": T0, "value": 10.0}, {"time": T0 + 300, "value": 35.0}]
    await put(client, data, "line", aggregation="max")
    series = (await client.get("/api/charts/c/data/0/s?resolution=10")).json()
    assert series["aggregation"] == "max" and series["data"] == [{"time": T0, "value": 9.0}]
    await put(client, data, "custom")
    refused = await client.get("/api/charts/c/history/0/s?resolution=5")
    assert refused.status_code == 422 and "custom series" in refused.json()["detail"]
    await put(client, data, "custom", aggregation="mean")
    got = (await client.get("/api/charts/c/history/0/s?resolution=5")).json()["data"]
    assert got == [{"time": T0, "value": 2.0}, {"time": T0 + 300, "value": 7.0}]


async def test_writes_update_cached_bars(client: httpx.AsyncClient) -> None:
    await put(client)
    path = "/api/charts/c/history/0/s?resolution=60&count=100"
    assert len((await client.get(path)).json()["data"]) == 10
    correction = {"time": T0 + 60, "open": 101, "high": 5000, "low": 1, "close": 101}
    live = {"time": T0 + 600 * 60, "open": 1, "high": 2, "low": 0.5, "close": 1.5, "color": "red"}
    await client.patch("/api/charts/c/data/s", json={"data": [correction, live]})
    bars = (await client.get(path)).json()["data"]
    assert bars[0]["high"] == 5000 and bars[0]["low"] == 1 and bars[0]["volume"] == 118
    assert bars[-1] == {
        "time": T0 + 10 * 3600,
        "open": 1,
        "high": 2,
        "low": 0.5,
        "close": 1.5,
        "color": "red",
    }
    await put(client, MINUTES[:120])
    assert len((await client.get(path)).json()["data"]) == 2
    await client.delete("/api/charts/c/data/0/s")
    assert (await client.get(path)).status_code == 404


async def test_whitespace_only_buckets_are_whitespace(client: httpx.AsyncClient) -> None:
    data = [*MINUTES[:60], *({"time": T0 + 3600 + 60 * i} for i in range(60))]
    await put(client, data)
    got = (await client.get("/api/charts/c/history/0/s?resolution=60")).json()["data"]
    assert got[1] == {"time": T0 + 3600}


async def test_raw_history_lane_unchanged(client: httpx.AsyncClient) -> None:
    await put(client)
    got = await client.get("/api/charts/c/history/0/s?count=1&resolution=1")
    assert got.json()["data"] == [
        {"time": MINUTES[-1]["time"], **{k: v for k, v in MINUTES[-1].items() if k != "time"}}
    ]


async def test_range_returns_stored_points_when_they_fit(client: httpx.AsyncClient) -> None:
    await put(client)
    got = await client.get(f"/api/charts/c/range/0/s?from={T0 + 60}&to={T0 + 240}")
    assert got.json() == {
        "seriesId": "s",
        "from": T0 + 60,
        "to": T0 + 240,
        "data": MINUTES[1:4],
        "resolution": None,
        "downsampled": False,
        "sourceCount": 3,
    }


async def test_range_of_an_ohlc_series_picks_the_finest_bars_that_fit(
    client: httpx.AsyncClient,
) -> None:
    await put(client)
    got = (await client.get("/api/charts/c/range/0/s?max_points=100")).json()
    assert (got["resolution"], got["downsampled"], got["sourceCount"]) == ("15", True, 600)
    assert len(got["data"]) == 40 and got["from"] is None and got["to"] is None
    hourly = (await client.get("/api/charts/c/history/0/s?resolution=15&count=100")).json()
    assert got["data"] == hourly["data"]
    narrow = (await client.get(f"/api/charts/c/range/0/s?max_points=2&to={T0 + 3600}")).json()
    assert narrow["resolution"] == "30" and narrow["data"][1]["close"] == MINUTES[59]["close"]


async def test_range_of_a_value_series_keeps_the_extremes(client: httpx.AsyncClient) -> None:
    values = [((i * 7919) % 1000) / 10 for i in range(20_000)]
    values[12_345] = 1e6
    values[777] = -1e6
    data = [{"time": T0 + i, "value": v, "color": "#abc"} for i, v in enumerate(values)]
    data[5] = {"time": T0 + 5}
    await put(client, data, "line")
    got = (await client.get("/api/charts/c/range/0/s?max_points=400")).json()
    assert got["downsampled"] is True and got["resolution"] is None
    assert got["sourceCount"] == 20_000 and len(got["data"]) <= 400
    stored = {p["time"]: p for p in data}
    assert all(stored[p["time"]] == p for p in got["data"])
    picked = [p["value"] for p in got["data"]]
    assert 1e6 in picked and -1e6 in picked
    assert got["data"][0] == data[0] and got["data"][-1] == data[-1]


@pytest.mark.parametrize(
    "query", ["max_points=1", "max_points=20001", "max_points=ten", "from=soon", "to=later"]
)
async def test_range_refuses_bad_parameters(client: httpx.AsyncClient, query: str) -> None:
    await put(client)
    got = await client.get(f"/api/charts/c/range/0/s?{query}")
    assert got.status_code == 422 and got.json()["errorCode"] == "VALIDATION_ERROR"

"""The UDF datafeed with persistence on (SQLite, PostgreSQL, MariaDB): symbols are listed from the
series table, so charts that no process holds in memory are found too."""

from __future__ import annotations

import pytest

from lightweight_charts_pro_backend.charts.repository import ChartsRepository, SeriesMarket

from ..charts.test_persistence import serve
from .test_datafeed import T0, minutes

pytestmark = pytest.mark.slow


async def test_symbols_and_history_after_a_restart(database_url: str) -> None:
    async with serve(database_url) as (client, _):
        for chart, pane, series, market in [
            ("desk", 0, "es", {"symbol": "ES", "exchange": "CME", "type": "futures"}),
            ("desk", 1, "nq", {"symbol": "NQ", "exchange": "CME"}),
            ("other", 0, "plain", None),
            ("other", 0, "tz", {"timezone": "Europe/London"}),
        ]:
            body = {"paneId": pane, "seriesType": "candlestick", "data": minutes(240)}
            if market is not None:
                body["market"] = market
            response = await client.post(f"/api/charts/{chart}/data/{series}", json=body)
            assert response.status_code == 200

    async with serve(database_url) as (client, app):
        assert app.state.charts.loaded_charts() == 0
        config = (await client.get("/udf/config")).json()
        assert [e["value"] for e in config["exchanges"]] == ["", "CME"]
        found = (await client.get("/udf/search?query=")).json()
        assert [(item["symbol"], item["ticker"]) for item in found] == [
            ("ES", "desk~0~es"),
            ("NQ", "desk~1~nq"),
        ]
        assert app.state.charts.loaded_charts() == 0  # listed without loading a chart
        info = (await client.get("/udf/symbols?symbol=CME:NQ")).json()
        assert info["ticker"] == "desk~1~nq" and info["pricescale"] == 100
        got = (
            await client.get(
                f"/udf/history?symbol=desk~1~nq&resolution=60&from={T0}&to={T0 + 7200}"
            )
        ).json()
        assert got["t"] == [T0, T0 + 3600] and got["o"] == [100, 160] and got["v"] == [120, 120]
        # A write of this process is served at once, and its new symbol resolves by ticker
        # before the listing is read again.
        body = {"paneId": 0, "seriesType": "line", "data": [{"time": T0, "value": 1}]}
        body["market"] = {"symbol": "NEW"}
        assert (await client.post("/api/charts/desk/data/new", json=body)).status_code == 200
        assert (await client.get("/udf/symbols?symbol=desk~0~new")).json()["name"] == "NEW"


async def test_the_repository_lists_series_with_a_market(database_url: str) -> None:
    async with serve(database_url) as (client, app):
        for series, market in [("b", {"symbol": "B"}), ("a", None), ("c", {"session": "24x7"})]:
            body = {"paneId": 0, "seriesType": "line", "data": [{"time": T0, "value": 1}]}
            if market is not None:
                body["market"] = market
            assert (await client.post(f"/api/charts/x/data/{series}", json=body)).status_code == 200
        repository = ChartsRepository(app.state.database)
        listed = await repository.series_markets()
        assert listed == [
            SeriesMarket(
                "x", 0, "b", "line", None, {"symbol": "B", "timezone": "Etc/UTC", "session": "24x7"}
            ),
            SeriesMarket("x", 0, "c", "line", None, {"timezone": "Etc/UTC", "session": "24x7"}),
        ]

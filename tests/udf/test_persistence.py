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


async def test_history_with_min_version_reads_a_write_another_process_made(
    database_url: str,
) -> None:
    # Two processes on one database with no bus between them: the reader never hears of the
    # writer's changes, as when a change's announcement is lost.
    async with serve(database_url) as (writer, _), serve(database_url) as (reader, _):
        body = {"paneId": 0, "seriesType": "candlestick", "data": minutes(120)}
        body["market"] = {"symbol": "S"}
        assert (await writer.post("/api/charts/c/data/s", json=body)).status_code == 200
        history = f"/udf/history?symbol=c~0~s&resolution=60&to={T0 + 10**5}&countback=5"
        cached = (await reader.get(history)).json()
        assert cached["t"] == [T0, T0 + 3600]
        live = {"time": T0 + 7200, "open": 1, "high": 9, "low": 1, "close": 5}
        written = await writer.patch("/api/charts/c/data/s", json={"paneId": 0, "data": [live]})
        version = written.json()["version"]

        assert (await reader.get(history)).json() == cached  # its copy, without a token
        got = (await reader.get(f"{history}&min_version={version}")).json()
        assert got["t"] == [T0, T0 + 3600, T0 + 7200] and got["c"][-1] == 5
        rest = await reader.get(
            f"/api/charts/c/history/0/s?resolution=60&count=5&min_version={version}"
        )
        assert [bar["time"] for bar in rest.json()["data"]] == got["t"]
        # A token above the chart's newest version (a chart deleted and made again) reads the
        # newest, as the REST routes do.
        above = await reader.get(f"{history}&min_version={version + 100}")
        assert above.status_code == 200 and above.json() == got

        # A series the reader has never seen is found by its ticker with the write's token.
        body["market"] = {"symbol": "N"}
        written = await writer.post("/api/charts/c/data/n", json=body)
        version = written.json()["version"]
        new = f"/udf/history?symbol=c~0~n&resolution=60&to={T0 + 10**5}&countback=5"
        assert (await reader.get(new)).status_code == 404
        found = await reader.get(f"{new}&min_version={version}")
        assert found.status_code == 200 and found.json()["t"] == [T0, T0 + 3600]

        # The library resolves a symbol before it asks for bars: the same token finds it.
        body["market"] = {"symbol": "M"}
        written = await writer.post("/api/charts/c/data/m", json=body)
        version = written.json()["version"]
        assert (await reader.get("/udf/symbols?symbol=c~0~m")).status_code == 404
        info = await reader.get(f"/udf/symbols?symbol=c~0~m&min_version={version}")
        assert info.status_code == 200 and info.json()["ticker"] == "c~0~m"

"""The UDF datafeed driven the way the stock ``UDFCompatibleDatafeed`` adapter drives it (memory
mode; persistence at the end of the file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightweight_charts_pro_backend.app import create_app
from lightweight_charts_pro_backend.config import Settings

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z, a Monday
NEW_YORK = {"timezone": "America/New_York", "session": "0930-1600:23456"}


def minutes(n: int, start: int = T0, step: int = 60) -> list[dict[str, Any]]:
    return [
        {
            "time": start + step * i,
            "open": 100 + i,
            "high": 101.5 + i,
            "low": 99 + i,
            "close": 100.25 + i,
            "volume": 2,
        }
        for i in range(n)
    ]


def encode_uri_component(value: object) -> str:
    """What the adapter's ``encodeURIComponent`` writes."""
    return quote(str(value), safe="-_.!~*'()")


class Adapter:
    """The requests and the parsing of the stock adapter (``Requester``, ``HistoryProvider``,
    ``resolveSymbol``): JSON bodies whatever the status, errors only through ``s``."""

    def __init__(self, client: httpx.AsyncClient, url: str = "/udf") -> None:
        self.client = client
        self.url = url
        self.requests: list[str] = []

    async def send(self, path: str, **params: object) -> Any:
        query = "&".join(
            f"{encode_uri_component(k)}={encode_uri_component(v)}" for k, v in params.items()
        )
        target = f"{self.url}/{path}" + (f"?{query}" if query else "")
        self.requests.append(target)
        response = await self.client.get(target)
        assert response.status_code < 500, response.text
        return response.json()

    async def config(self) -> dict[str, Any]:
        config: dict[str, Any] = await self.send("config")
        return config

    async def resolve(self, name: str) -> dict[str, Any]:
        response = await self.send("symbols", symbol=name)
        if "s" in response:
            raise LookupError("unknown_symbol")
        info: dict[str, Any] = {
            **response,
            "base_name": [f"{response['listed_exchange']}:{response['name']}"],
        }
        return info

    async def get_bars(
        self,
        info: dict[str, Any],
        resolution: str,
        start: int,
        end: int,
        count_back: int | None = None,
    ) -> tuple[list[dict[str, float]], dict[str, Any]]:
        params: dict[str, object] = {
            "symbol": info["ticker"],
            "resolution": resolution,
            "from": start,
            "to": end,
        }
        if count_back is not None:
            params["countback"] = count_back
        response = await self.send("history", **params)
        if response["s"] not in ("ok", "no_data"):
            raise RuntimeError(response.get("errmsg"))
        if response["s"] == "no_data":
            return [], {"noData": True, "nextTime": response.get("nextTime")}
        bars = []
        for i, t in enumerate(response["t"]):
            close = float(response["c"][i])
            bar = {"time": t * 1000, "open": close, "high": close, "low": close, "close": close}
            if "o" in response:
                bar |= {
                    "open": float(response["o"][i]),
                    "high": float(response["h"][i]),
                    "low": float(response["l"][i]),
                }
            if "v" in response:
                bar["volume"] = float(response["v"][i])
            bars.append(bar)
        return bars, {"noData": False}


@asynccontextmanager
async def serve(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(_env_file=None, **overrides))  # type: ignore[call-arg]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with serve() as c:
        yield c


async def put(
    client: httpx.AsyncClient,
    chart: str,
    series: str,
    data: list[dict[str, Any]],
    series_type: str = "candlestick",
    pane: int = 0,
    **extra: Any,
) -> None:
    body = {"paneId": pane, "seriesType": series_type, "data": data, **extra}
    response = await client.post(f"/api/charts/{chart}/data/{series}", json=body)
    assert response.status_code == 200, response.text


async def rest_bars(
    client: httpx.AsyncClient, chart: str, series: str, resolution: str, pane: int = 0
) -> list[dict[str, Any]]:
    """Every bar of the series at ``resolution`` through the REST history route."""
    url = f"/api/charts/{chart}/history/{pane}/{series}?resolution={resolution}&count=10000"
    got = (await client.get(url)).json()
    assert got["totalCount"] <= 10000
    bars: list[dict[str, Any]] = got["data"]
    return bars


def as_adapter_bars(bars: list[dict[str, Any]]) -> list[dict[str, float]]:
    out = []
    for bar in bars:
        if "close" not in bar and "value" not in bar:
            continue  # whitespace: UDF has no such bar
        if "close" in bar:
            item = {k: float(bar[k]) for k in ("open", "high", "low", "close")}
            if "volume" in bar:
                item["volume"] = float(bar["volume"])
        else:
            value = float(bar["value"])
            item = {"open": value, "high": value, "low": value, "close": value}
        out.append({"time": bar["time"] * 1000, **item})
    return out


# ---------------------------------------------------------------------------- the protocol


async def test_config_then_resolve_then_page_back_with_countback_until_no_data(
    client: httpx.AsyncClient,
) -> None:
    # Three trading days of New York minutes, a weekend in between and points outside sessions.
    data = minutes(6 * 24 * 60, start=T0 + 3 * 86_400)  # Thu 2024-01-04 .. Tue 2024-01-09
    market = {**NEW_YORK, "symbol": "ACME", "exchange": "NYSE", "description": "Acme Corp"}
    await put(client, "desk", "acme", data, market=market)
    adapter = Adapter(client)

    config = await adapter.config()
    assert config["supports_search"] is True and config["supports_group_request"] is False
    assert config["supports_time"] is True and config["supports_marks"] is True
    for resolution in ("1S", "5S", "15S", "30S", "1", "5", "15", "30", "60", "240", "1D", "1W"):
        assert resolution in config["supported_resolutions"]
    assert {"value": "NYSE", "name": "NYSE", "desc": "NYSE"} in config["exchanges"]

    info = await adapter.resolve("ACME")
    assert info["ticker"] == "desk~0~acme" and info["name"] == "ACME"
    assert info["timezone"] == "America/New_York" and info["session"] == "0930-1600:23456"
    assert info["base_name"] == ["NYSE:ACME"]
    assert "60" in info["supported_resolutions"] and info["has_intraday"] is True

    expected = as_adapter_bars(await rest_bars(client, "desk", "acme", "60"))
    assert len(expected) == 4 * 7  # Thu, Fri, Mon, Tue: 09:30-16:00 in hourly buckets

    # The library asks for the newest bars first, then pages back from the oldest it holds.
    received: list[dict[str, float]] = []
    end = data[-1]["time"] + 3600
    pages = 0
    while True:
        bars, meta = await adapter.get_bars(info, "60", end - 5 * 3600, end, count_back=5)
        pages += 1
        if meta["noData"]:
            assert meta.get("nextTime") is None  # nothing older: the library stops
            break
        assert len(bars) <= 5 and bars == sorted(bars, key=lambda b: b["time"])
        assert all(b["time"] < end * 1000 for b in bars)
        received = bars + received
        end = bars[0]["time"] // 1000
        assert pages < 50
    assert received == expected
    assert pages == 7  # 28 bars in pages of 5, then no_data
    # Every request carried the ticker exactly as the symbol info gave it.
    assert all("symbol=desk~0~acme&" in r for r in adapter.requests if "/history" in r)


async def test_paging_by_time_ranges_follows_next_time_across_gaps(
    client: httpx.AsyncClient,
) -> None:
    """Older libraries send no countback: a range without bars is ``no_data`` with the time of
    the newest bar before it, so the library jumps over weekends instead of stopping."""
    data = minutes(6 * 24 * 60, start=T0 + 3 * 86_400)
    await put(client, "desk", "acme", data, market={**NEW_YORK, "symbol": "ACME"})
    adapter = Adapter(client)
    info = await adapter.resolve("desk~0~acme")
    expected = as_adapter_bars(await rest_bars(client, "desk", "acme", "15"))

    received: list[dict[str, float]] = []
    end = data[-1]["time"] + 60
    span = 6 * 3600
    jumps = 0
    for _ in range(200):
        bars, meta = await adapter.get_bars(info, "15", end - span, end)
        if meta["noData"]:
            if meta.get("nextTime") is None:
                break
            jumps += 1
            end = meta["nextTime"] + 1
            continue
        received = bars + received
        end -= span
    else:
        pytest.fail("paging did not end")
    assert received == expected
    assert jumps >= 3  # overnight gaps and the weekend


async def test_ranges_countback_cap_and_no_data(client: httpx.AsyncClient) -> None:
    await put(client, "c", "s", minutes(600), market={"symbol": "S"})
    history = "/udf/history?symbol=c~0~s&resolution=60"

    got = (await client.get(f"{history}&from={T0}&to={T0 + 2 * 3600}")).json()
    assert got == {
        "s": "ok",
        "t": [T0, T0 + 3600],
        "o": [100, 160],
        "h": [160.5, 220.5],
        "l": [99, 159],
        "c": [159.25, 219.25],
        "v": [120, 120],
    }
    # from inclusive, to exclusive
    got = (await client.get(f"{history}&from={T0 + 3600}&to={T0 + 3601}")).json()
    assert got["t"] == [T0 + 3600]
    # countback: that many bars before to, from ignored
    got = await client.get(f"{history}&from={T0 + 9 * 3600}&to={T0 + 5 * 3600}&countback=3")
    assert got.json()["t"] == [T0 + 2 * 3600, T0 + 3 * 3600, T0 + 4 * 3600]
    got = (await client.get(f"{history}&to={T0 + 99 * 3600}&countback=100")).json()
    assert got["t"] == [T0 + h * 3600 for h in range(10)]
    # nothing before to
    assert (await client.get(f"{history}&to={T0}&countback=5")).json() == {"s": "no_data"}
    # nothing in the range: the newest bar before from
    got = (await client.get(f"{history}&from={T0 + 20 * 3600}&to={T0 + 30 * 3600}")).json()
    assert got == {"s": "no_data", "nextTime": T0 + 9 * 3600}
    got = (await client.get(f"{history}&from={T0 - 7200}&to={T0}")).json()
    assert got == {"s": "no_data"}
    assert (await client.get(f"{history}&from={T0}&to={T0}")).json() == {"s": "no_data"}


async def test_a_response_holds_at_most_10000_bars_the_newest(client: httpx.AsyncClient) -> None:
    data = [{"time": T0 + i, "value": float(i)} for i in range(10_050)]
    await put(client, "c", "line", data, series_type="line", market={"symbol": "L"})
    got = (
        await client.get(f"/udf/history?symbol=c~0~line&resolution=1S&from={T0}&to={T0 + 10**6}")
    ).json()
    assert len(got["t"]) == 10_000
    assert got["t"][0] == T0 + 50 and got["t"][-1] == T0 + 10_049
    got = (
        await client.get(
            f"/udf/history?symbol=c~0~line&resolution=1S&to={T0 + 10**6}&countback=20000"
        )
    ).json()
    assert len(got["t"]) == 10_000 and got["t"][0] == T0 + 50


async def test_value_series_give_close_only_by_their_rule(client: httpx.AsyncClient) -> None:
    values = [{"time": T0 + 60 * i, "value": i} for i in range(120)]
    values[5] = {"time": T0 + 300}  # whitespace
    await put(client, "c", "line", values, series_type="line", market={"symbol": "LINE"})
    await put(client, "c", "hist", values, series_type="histogram", market={"symbol": "H"})
    line = await client.get(f"/udf/history?symbol=c~0~line&resolution=60&from=0&to={T0 + 10**5}")
    assert line.json() == {"s": "ok", "t": [T0, T0 + 3600], "c": [59, 119]}
    hist = await client.get(f"/udf/history?symbol=c~0~hist&resolution=60&from=0&to={T0 + 10**5}")
    assert hist.json() == {
        "s": "ok",
        "t": [T0, T0 + 3600],
        "c": [sum(range(60)) - 5, sum(range(60, 120))],
    }
    adapter = Adapter(client)
    bars, _ = await adapter.get_bars(await adapter.resolve("LINE"), "60", 0, T0 + 10**5)
    assert bars[0] == {"time": T0 * 1000, "open": 59.0, "high": 59.0, "low": 59.0, "close": 59.0}


async def test_whitespace_bars_are_left_out(client: httpx.AsyncClient) -> None:
    data = minutes(180)
    for i in range(60, 120):
        data[i] = {"time": data[i]["time"]}  # the second hour is whitespace only
    await put(client, "c", "s", data, market={"symbol": "S"})
    got = await client.get(f"/udf/history?symbol=c~0~s&resolution=60&from=0&to={T0 + 10**5}")
    assert got.json()["t"] == [T0, T0 + 7200]
    got = await client.get(
        f"/udf/history?symbol=c~0~s&resolution=60&from={T0 + 3600}&to={T0 + 7200}"
    )
    assert got.json() == {"s": "no_data", "nextTime": T0}


async def test_live_upserts_reach_the_next_history_request(client: httpx.AsyncClient) -> None:
    await put(client, "c", "s", minutes(120), market={"symbol": "S"})
    history = f"/udf/history?symbol=c~0~s&resolution=60&to={T0 + 10**5}&countback=1"
    assert (await client.get(history)).json()["c"] == [219.25]
    patch = {"paneId": 0, "data": [{"time": T0 + 7200, "open": 1, "high": 9, "low": 1, "close": 5}]}
    assert (await client.patch("/api/charts/c/data/s", json=patch)).status_code == 200
    got = (await client.get(history)).json()
    assert got["t"] == [T0 + 7200] and got["c"] == [5] and got["v"] == [0]  # none given
    correction = {"paneId": 0, "data": [{**minutes(1)[0], "time": T0 + 3600, "high": 999}]}
    written = await client.patch("/api/charts/c/data/s", json=correction)
    assert written.status_code == 200
    got = await client.get(f"/udf/history?symbol=c~0~s&resolution=60&from={T0}&to={T0 + 7200}")
    assert got.json()["h"] == [160.5, 999]
    # One process holds every version there is: a write's version as min_version, or one above
    # the newest, reads what it holds, as the REST history route does.
    version = written.json()["version"]
    for token in (version, version + 100):
        udf = await client.get(f"{history}&min_version={token}")
        rest = await client.get(
            f"/api/charts/c/history/0/s?resolution=60&count=1&min_version={token}"
        )
        assert udf.status_code == rest.status_code == 200
        assert udf.json()["t"] == [bar["time"] for bar in rest.json()["data"]] == [T0 + 7200]


# ---------------------------------------------------------------------------- symbols


async def test_symbols_by_ticker_name_and_exchange_prefix(client: httpx.AsyncClient) -> None:
    await put(client, "a", "px", minutes(10), market={"symbol": "BTCUSD", "exchange": "Kraken"})
    await put(client, "b", "px", minutes(10), pane=2, market={"symbol": "BTCUSD"})
    await put(client, "b", "plain", minutes(10))  # no market: not a symbol
    await put(client, "b", "nosym", minutes(10), market={"timezone": "Etc/UTC"})
    adapter = Adapter(client)
    for name, ticker in [
        ("a~0~px", "a~0~px"),
        ("b~2~px", "b~2~px"),
        ("BTCUSD", "a~0~px"),  # a name shared by two series: the first by chart, pane, id
        ("btcusd", "a~0~px"),
        ("Kraken:BTCUSD", "a~0~px"),
        ("KRAKEN:btcusd", "a~0~px"),
        ("Kraken:b~2~px", "b~2~px"),
    ]:
        assert (await adapter.resolve(name))["ticker"] == ticker, name
        # What the adapter sends back verbatim: encodeURIComponent leaves a ticker as it is.
        assert encode_uri_component(ticker) == ticker
    for unknown in ("b~0~plain", "b~0~nosym", "ETHUSD", "a~1~px", "zz~0~px", "a~0~px~", "~"):
        with pytest.raises(LookupError):
            await adapter.resolve(unknown)


async def test_symbol_info_defaults_from_the_data_and_market_overrides(
    client: httpx.AsyncClient,
) -> None:
    prices = [{"time": T0 + i, "value": round(1.1 + i * 0.001, 3)} for i in range(50)]
    await put(client, "c", "fx", prices, series_type="line", market={"symbol": "EURUSD"})
    info = (await client.get("/udf/symbols?symbol=EURUSD")).json()
    assert info["pricescale"] == 1000 and info["minmov"] == 1
    assert info["volume_precision"] == 0 and info["has_no_volume"] is True
    assert info["visible_plots_set"] == "c" and info["type"] == "stock"
    assert info["timezone"] == "Etc/UTC" and info["session"] == "24x7"
    assert info["exchange"] == "" and info["description"] == "EURUSD"

    candles = [{**c, "volume": 1.25} for c in minutes(5)]
    market = {
        "symbol": "ES",
        "exchange": "CME",
        "type": "futures",
        "pricescale": 4,
        "minmov": 1,
        "currency_code": "USD",
        "timezone": "America/Chicago",
        "session": "1700-1600:23456",
    }
    await put(client, "c", "es", candles, market=market)
    info = (await client.get("/udf/symbols?symbol=CME:ES")).json()
    assert info["pricescale"] == 4 and info["currency_code"] == "USD" and info["type"] == "futures"
    assert info["volume_precision"] == 2 and info["visible_plots_set"] == "ohlcv"
    assert info["session"] == "1700-1600:23456" and info["timezone"] == "America/Chicago"
    assert "s" not in info  # the adapter takes any "s" for a failed resolve


async def test_search(client: httpx.AsyncClient) -> None:
    for series, market in [
        ("aapl", {"symbol": "AAPL", "exchange": "NASDAQ", "description": "Apple Inc"}),
        ("pineapple", {"symbol": "PNAP", "exchange": "NYSE", "description": "Pineapple Co"}),
        ("aa", {"symbol": "AA", "exchange": "NYSE", "description": "Alcoa", "type": "stock"}),
        ("btc", {"symbol": "BTCUSD", "exchange": "Kraken", "type": "crypto"}),
    ]:
        await put(client, "c", series, minutes(3), market=market)

    async def search(**params: object) -> list[str]:
        got = (await client.get("/udf/search", params=params)).json()
        assert all(
            set(item) == {"symbol", "full_name", "description", "exchange", "ticker", "type"}
            for item in got
        )
        return [item["symbol"] for item in got]

    assert await search(query="AA", limit=30) == ["AA", "AAPL"]
    assert await search(query="apple") == ["AAPL", "PNAP"]  # descriptions, any case
    assert await search(query="", type="crypto") == ["BTCUSD"]
    assert await search(query="a", exchange="nyse") == ["AA", "PNAP"]
    assert await search(query="", limit=2) == ["AA", "AAPL"]
    assert await search(query="c~0~btc") == ["BTCUSD"]
    assert await search(query="zzz") == []
    first = (await client.get("/udf/search?query=AAPL")).json()[0]
    assert first == {
        "symbol": "AAPL",
        "full_name": "NASDAQ:AAPL",
        "description": "Apple Inc",
        "exchange": "NASDAQ",
        "ticker": "c~0~aapl",
        "type": "stock",
    }


async def test_time_is_plain_unix_seconds(client: httpx.AsyncClient) -> None:
    import time

    response = await client.get("/udf/time")
    assert response.headers["content-type"].startswith("text/plain")
    assert abs(int(response.text) - time.time()) < 5


async def test_udf_path_is_a_setting() -> None:
    async with serve(udf_path="/tv/datafeed") as client:
        await put(client, "c", "s", minutes(3), market={"symbol": "S"})
        assert (await client.get("/tv/datafeed/symbols?symbol=S")).json()["ticker"] == "c~0~s"
        assert (await client.get("/udf/config")).status_code == 404


def test_udf_path_may_not_take_the_services_own_paths() -> None:
    for path in ("/api", "/api/udf", "/ws", "udf", "/udf/", "/"):
        with pytest.raises(ValueError):
            Settings(_env_file=None, udf_path=path)  # type: ignore[call-arg]


# ---------------------------------------------------------------------------- marks


async def annotate(client: httpx.AsyncClient, chart: str, body: dict[str, Any]) -> None:
    response = await client.post(f"/api/charts/{chart}/annotations", json=body)
    assert response.status_code == 201, response.text


async def test_markers_are_bar_marks_and_vertical_lines_timescale_marks(
    client: httpx.AsyncClient,
) -> None:
    await put(client, "c", "s", minutes(600), market={"symbol": "S"})
    await put(client, "c", "t", minutes(600), market={"symbol": "T"})
    style = {"position": "aboveBar", "shape": "arrowDown", "color": "#ef5350"}
    for at, text, series in ((T0 + 3700, "buy", "s"), (T0 + 60, "sell", "s"), (T0, "x", "t")):
        body = {"kind": "marker", "paneId": 0, "seriesId": series, "points": [{"time": at}]}
        await annotate(client, "c", {**body, "style": {**style, "size": 2}, "text": text})
    await annotate(
        client,
        "c",
        {
            "kind": "vertical_line",
            "annotationId": "open",
            "paneId": 0,
            "points": [{"time": T0 + 7300}],
            "style": {"color": "#26a69a"},
            "text": "Open",
        },
    )
    await annotate(
        client, "c", {"kind": "vertical_line", "paneId": 1, "points": [{"time": T0 + 60}]}
    )
    adapter = Adapter(client)
    info = await adapter.resolve("S")
    marks = await adapter.send(
        "marks", symbol=info["ticker"], **{"from": T0, "to": T0 + 36_000}, resolution="60"
    )
    assert [(m["time"], m["text"], m["label"]) for m in marks] == [
        (T0, "sell", "S"),
        (T0 + 3600, "buy", "B"),  # at the time of its hourly bar
    ]
    assert marks[0]["color"] == {"border": "#ef5350", "background": "#ef5350"}
    assert marks[0]["minSize"] == 28 and marks[0]["labelFontColor"]
    raw = await adapter.send("marks", symbol="c~0~s", **{"from": T0 + 61, "to": T0 + 36_000})
    assert [m["time"] for m in raw] == [T0 + 3700]  # from and to inclusive, times as drawn
    scale = await adapter.send(
        "timescale_marks", symbol="c~0~s", **{"from": T0, "to": T0 + 36_000}, resolution="60"
    )
    assert scale == [
        {"id": "open", "time": T0 + 7200, "color": "#26a69a", "label": "O", "tooltip": ["Open"]}
    ]
    bad = await adapter.send("marks", symbol="c~0~s", **{"from": "x", "to": T0})
    assert bad["s"] == "error" and "from" in bad["errmsg"]
    bad = await adapter.send("marks", symbol="nope", **{"from": T0, "to": T0})
    assert bad["s"] == "error" and "unknown_symbol" in bad["errmsg"]


async def test_marks_outside_the_session_sit_on_the_bars_the_markers_route_gives(
    client: httpx.AsyncClient,
) -> None:
    # New York in January is UTC-5: the session is 14:30-21:00 UTC. The pre-market minutes from
    # 13:00 are stored but in no bar.
    data = minutes(90, start=T0 + 13 * 3600) + minutes(390, start=T0 + 14 * 3600 + 1800)
    await put(client, "c", "s", data, market={**NEW_YORK, "symbol": "S"})
    news, after_close = T0 + 13 * 3600 + 300, T0 + 22 * 3600
    style = {"position": "aboveBar", "shape": "arrowDown", "color": "#ef5350"}
    for name, at in (("news", news), ("late", after_close)):
        marker = {"kind": "marker", "annotationId": name, "paneId": 0, "seriesId": "s"}
        await annotate(client, "c", {**marker, "points": [{"time": at}], "style": style})
    line = {"kind": "vertical_line", "annotationId": "bell", "paneId": 0}
    await annotate(client, "c", {**line, "points": [{"time": news}], "text": "Bell"})

    adapter = Adapter(client)
    window = {"from": T0, "to": T0 + 86_400}
    hourly = [bar["time"] for bar in await rest_bars(client, "c", "s", "60")]
    assert hourly[0] == T0 + 14 * 3600 + 1800 and hourly[-1] == T0 + 20 * 3600 + 1800
    route = await client.get("/api/charts/c/markers/0/s", params={"resolution": "60"})
    placed = {m["id"]: m["time"] for m in route.json()["markers"]}
    assert placed == {"news": hourly[0], "late": hourly[-1]}  # the session's first and last bar
    marks = await adapter.send("marks", symbol="c~0~s", **window, resolution="60")
    assert {m["id"]: m["time"] for m in marks} == placed
    scale = await adapter.send("timescale_marks", symbol="c~0~s", **window, resolution="60")
    assert [(m["id"], m["time"]) for m in scale] == [("bell", hourly[0])]
    # Without a resolution, marks keep the times they were drawn at.
    raw = await adapter.send("marks", symbol="c~0~s", **window)
    assert [m["time"] for m in raw] == [news, after_close]
    raw_scale = await adapter.send("timescale_marks", symbol="c~0~s", **window)
    assert [m["time"] for m in raw_scale] == [news]


# ---------------------------------------------------------------------------- bad input

BAD_INPUT = [
    # (query string, what errmsg must mention)
    ("/symbols", "symbol"),
    ("/symbols?symbol=", "symbol"),
    ("/symbols?symbol=nope", "unknown_symbol"),
    ("/symbols?symbol=c~101~s", "unknown_symbol"),
    ("/symbols?symbol=..~0~s", "unknown_symbol"),
    ("/search?limit=abc", "limit"),
    ("/search?limit=", "limit"),
    ("/history?symbol=S&resolution=60&from=0&to=10&countback=", "countback"),
    ("/search?limit=0", "limit"),
    ("/search?limit=-3", "limit"),
    ("/history?resolution=60&from=0&to=10", "symbol"),
    ("/history?symbol=S&from=0&to=10", "resolution"),
    ("/history?symbol=S&resolution=60&from=0", "to"),
    ("/history?symbol=S&resolution=60&to=10", "from"),
    ("/history?symbol=S&resolution=60&from=x&to=10", "from"),
    ("/history?symbol=S&resolution=60&from=0&to=1e9", "to"),
    ("/history?symbol=S&resolution=60&from=0&to=1.5", "to"),
    ("/history?symbol=S&resolution=60&from=20&to=10", "from"),
    ("/history?symbol=S&resolution=60&from=0&to=10&countback=0", "countback"),
    ("/history?symbol=S&resolution=60&to=10&countback=x", "countback"),
    ("/history?symbol=S&resolution=60&from=0&to=99999999999999999999", "to"),
    ("/history?symbol=S&resolution=60&from=0&to=10&min_version=-1", "min_version"),
    ("/history?symbol=S&resolution=60&from=0&to=10&min_version=1.5", "min_version"),
    ("/history?symbol=S&resolution=60&to=10&countback=5&minVersion=x", "min_version"),
    ("/symbols?symbol=S&min_version=-1", "min_version"),
    ("/symbols?symbol=S&minVersion=x", "min_version"),
    ("/history?symbol=S&resolution=0&from=0&to=10", "resolution"),
    ("/history?symbol=S&resolution=1Y&from=0&to=10", "resolution"),
    ("/history?symbol=S&resolution=1441&from=0&to=10", "resolution"),
    ("/history?symbol=S&resolution=%00&from=0&to=10", "resolution"),
    ("/history?symbol=nope&resolution=60&from=0&to=10", "unknown_symbol"),
    ("/history?symbol=c~0~custom&resolution=60&from=0&to=10", "unknown_symbol"),
    ("/history?symbol=c~0~nobars&resolution=60&from=0&to=10", "unknown_symbol"),
    ("/marks?symbol=S&from=0", "to"),
    ("/marks?symbol=S&from=5&to=1", "from"),
    ("/marks?symbol=S&from=0&to=10&resolution=7Q", "resolution"),
    ("/timescale_marks?symbol=S&to=10", "from"),
    ("/timescale_marks?from=0&to=10", "symbol"),
]


async def test_every_bad_input_is_an_s_error(client: httpx.AsyncClient) -> None:
    await put(client, "c", "s", minutes(10), market={"symbol": "S"})
    await put(
        client, "c", "custom", [{"time": T0, "x": 1}], series_type="custom", market={"symbol": "X"}
    )
    for query, mention in BAD_INPUT:
        response = await client.get("/udf" + query)
        status = 404 if mention == "unknown_symbol" else 422
        assert response.status_code == status, (query, response.text)
        body = response.json()
        assert body["s"] == "error" and mention in body["errmsg"], (query, body)
        assert body["errorCode"] in ("UNKNOWN_SYMBOL", "VALIDATION_ERROR", "INVALID_RESOLUTION")


PARAMETERS = (
    "symbol",
    "resolution",
    "from",
    "to",
    "countback",
    "query",
    "type",
    "exchange",
    "limit",
    "min_version",
)
values = st.one_of(
    st.text(max_size=24),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["c~0~s", "S", "60", "1D", "0", "-1", "", " 5", "1e3", "NaN", "c~0~s~"]),
)
requests = st.tuples(
    st.sampled_from(
        ["/config", "/symbols", "/search", "/history", "/marks", "/timescale_marks", "/time"]
    ),
    st.dictionaries(st.sampled_from(PARAMETERS), values, max_size=6),
)


@settings(max_examples=4, deadline=None)
@given(cases=st.lists(requests, min_size=60, max_size=60))
async def test_any_query_is_answered_by_the_protocol(
    cases: list[tuple[str, dict[str, str]]],
) -> None:
    async with serve() as client:
        await put(client, "c", "s", minutes(300), market={"symbol": "S"})
        for path, params in cases:
            response = await client.get("/udf" + path, params=params)
            assert response.status_code in (200, 404, 422), (path, params, response.text)
            if path == "/time":
                assert response.text.isdigit()
                continue
            body = response.json()
            if response.status_code != 200:
                assert body["s"] == "error" and body["errmsg"], body
            elif path == "/history":
                assert body["s"] in ("ok", "no_data"), body
                if body["s"] == "ok":
                    assert body["t"] == sorted(set(body["t"])) and len(body["t"]) == len(body["c"])
            elif path == "/symbols":
                assert body["ticker"] == "c~0~s"

"""The Python client against a real uvicorn server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from lightweight_charts_pro_backend.apikeys import SettingsKeyStore, new_api_key
from lightweight_charts_pro_backend.auth import create_access_token
from lightweight_charts_pro_backend.client import (
    GZIP_ABOVE,
    AsyncChartsClient,
    ChartsClient,
    ChartsClientError,
    ChartsConnectionError,
    to_frame,
)
from lightweight_charts_pro_backend.config import Settings
from tests.realtime.conftest import ServerProcess, free_port, start_server

pytestmark = pytest.mark.slow

START = 1_700_000_000
SECRET = "client-test-secret-key-that-is-long-enough-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("client-server"))
    yield srv
    srv.stop()


@pytest.fixture
def charts(server: ServerProcess) -> Iterator[ChartsClient]:
    with ChartsClient(server.http_url) as client:
        yield client


def _upsert_of(events: Iterator[dict[str, Any]], time: int) -> dict[str, Any]:
    """The first upsert of a point at ``time`` among the next few events."""
    for _, event in zip(range(50), events, strict=False):
        if event.get("op") == "upsert" and event["data"][0]["time"] == time:
            return event
    raise AssertionError(f"no upsert at {time} in 50 events")


def _frame(series_type: str, n: int, index: str) -> pd.DataFrame:
    rng = np.random.default_rng(len(series_type))
    times = pd.date_range("2024-03-30 22:00", periods=n, freq="min")
    if series_type in ("bar", "candlestick"):
        close = 100 + rng.normal(0, 1, n).cumsum()
        open_ = np.concatenate(([100.0], close[:-1]))
        frame = pd.DataFrame(
            {
                "open": open_,
                "high": np.maximum(open_, close) + 0.5,
                "low": np.minimum(open_, close) - 0.5,
                "close": close,
            }
        )
    else:
        frame = pd.DataFrame({"value": rng.normal(0, 1, n).round(6)})
    if index == "aware-index":
        # Across a DST change: the offsets must not leak into the UTC seconds.
        frame.index = times.tz_localize("UTC").tz_convert("Europe/Berlin")
    elif index == "naive-index":
        frame.index = times
    else:
        frame.insert(0, "time", times)
    return frame


@pytest.mark.parametrize(
    ("series_type", "index"),
    [
        ("line", "aware-index"),
        ("area", "naive-index"),
        ("baseline", "time-column"),
        ("histogram", "aware-index"),
        ("bar", "naive-index"),
        ("candlestick", "time-column"),
    ],
)
def test_dataframe_round_trip(charts: ChartsClient, series_type: str, index: str) -> None:
    frame = _frame(series_type, 250, index)
    chart = f"frame-{series_type}"
    charts.create_chart(chart)
    result = charts.set_series(chart, "s", frame, series_type=series_type, batch_size=100)
    assert result["count"] == 250

    back = to_frame(charts.all_points(chart, "s"))
    expected_times = pd.date_range("2024-03-30 22:00", periods=250, freq="min", tz="UTC")
    assert list(back.index) == list(expected_times)
    values = frame.drop(columns="time", errors="ignore").reset_index(drop=True)
    pd.testing.assert_frame_equal(
        back[list(values.columns)].reset_index(drop=True), values, check_dtype=False
    )


def test_list_of_dicts_with_gaps_and_extra_fields(charts: ChartsClient) -> None:
    frame = pd.DataFrame(
        {"time": [START, START + 60, START + 120], "value": [1.0, np.nan, 3.0]}
    ).assign(color=["red", "blue", "green"])
    charts.set_series("gaps", "v", frame)
    assert charts.all_points("gaps", "v") == [
        {"time": START, "value": 1.0, "color": "red"},
        {"time": START + 60, "color": "blue"},
        {"time": START + 120, "value": 3.0, "color": "green"},
    ]


def _encodings_sent(server: ServerProcess, gzip_above: int | None) -> list[str | None]:
    """The Content-Encoding of a large upload and of a small update, as they left the client."""
    points = [{"time": START + 60 * i, "value": float(i)} for i in range(5000)]  # ~200 KB
    encodings: list[str | None] = []
    with ChartsClient(server.http_url, gzip_above=gzip_above) as client:
        client._http.event_hooks["request"].append(
            lambda request: encodings.append(request.headers.get("content-encoding"))
        )
        client.set_series("zipped", "v", points)
        client.update("zipped", "v", {"time": START, "value": -1.0})
        assert client.all_points("zipped", "v") == [{"time": START, "value": -1.0}, *points[1:]]
    return encodings[:2]


def test_large_uploads_are_gzipped(server: ServerProcess) -> None:
    assert GZIP_ABOVE == 64 * 1024
    assert _encodings_sent(server, GZIP_ABOVE) == ["gzip", None]
    assert _encodings_sent(server, None) == [None, None]


def test_paging_the_whole_history(charts: ChartsClient) -> None:
    points = [{"time": START + 60 * i, "value": float(i)} for i in range(2500)]
    charts.set_series("paged", "v", points, batch_size=700, progress=True)

    chunks = list(charts.iter_history("paged", "v", count=1000))
    assert [len(chunk) for chunk in chunks] == [1000, 1000, 500]
    assert chunks[0][-1]["time"] == points[-1]["time"]  # newest first
    assert [p for chunk in reversed(chunks) for p in chunk] == points

    newest = charts.history("paged", "v", count=3)
    assert [p["value"] for p in newest["data"]] == [2497.0, 2498.0, 2499.0]
    assert newest["hasMoreBefore"] is True


NEW_YORK = {"timezone": "America/New_York", "session": "0930-1600:23456"}


def _utc(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").timestamp())


def _session_candles() -> pd.DataFrame:
    """Minute candles of Friday 2024-03-08 (EST) and Monday 2024-03-11 (EDT) in the New York
    session, after 90 minutes of Friday's pre-market (stored, in no bar)."""
    friday = pd.date_range("2024-03-08 13:00", periods=480, freq="min", tz="UTC")
    monday = pd.date_range("2024-03-11 13:30", periods=390, freq="min", tz="UTC")
    index = friday.append(monday)
    close = np.arange(len(index), dtype=float)
    return pd.DataFrame(
        {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1},
        index=index,
    )


#: The hourly bars of ``_session_candles``: from each session's open, the last one cut at 16:00.
HOURLY = [_utc(f"2024-03-08 {h}:30") for h in range(14, 21)] + [
    _utc(f"2024-03-11 {h}:30") for h in range(13, 20)
]


def test_bars_ranges_and_markers_by_the_series_market(charts: ChartsClient) -> None:
    frame = _session_candles()
    written = charts.set_series(
        "tf", "price", frame, series_type="candlestick", batch_size=300, market=NEW_YORK
    )
    assert written["count"] == 870
    assert charts.get_series("tf", "price")["market"] == NEW_YORK  # kept by the appends

    newest = charts.history("tf", "price", resolution="60", count=3)
    assert newest["resolution"] == "60" and newest["hasMoreBefore"] is True
    assert [bar["time"] for bar in newest["data"]] == HOURLY[-3:]
    chunks = list(charts.iter_history("tf", "price", count=5, resolution="60"))
    assert [len(chunk) for chunk in chunks] == [5, 5, 4]
    hourly = to_frame(charts.all_points("tf", "price", resolution="60"))
    assert [int(t.timestamp()) for t in hourly.index] == HOURLY
    in_session = frame[frame.index >= pd.Timestamp("2024-03-08 14:30", tz="UTC")]
    first_hour = in_session.iloc[:60]
    assert hourly.iloc[0].to_dict() == {
        "open": first_hour["open"].iloc[0],
        "high": first_hour["high"].max(),
        "low": first_hour["low"].min(),
        "close": first_hour["close"].iloc[-1],
        "volume": 60,
    }
    daily = charts.get_series("tf", "price", resolution="1D")
    assert daily["resolution"] == "1D"
    assert [bar["time"] for bar in daily["data"]] == [_utc("2024-03-08"), _utc("2024-03-11")]

    view = charts.get_range(
        "tf", "price", start="2024-03-08", end=_utc("2024-03-12"), max_points=20
    )
    assert (view["downsampled"], view["resolution"], view["sourceCount"]) == (True, "60", 870)
    assert [bar["time"] for bar in view["data"]] == HOURLY
    assert (view["from"], view["to"]) == (_utc("2024-03-08"), _utc("2024-03-12"))
    whole = charts.get_range("tf", "price")
    assert whole["downsampled"] is False and len(whole["data"]) == 870

    style = {"position": "aboveBar", "shape": "arrowDown", "color": "#ef5350"}
    for name, at in (("premarket", "2024-03-08T13:05:00"), ("monday", "2024-03-11T14:45:00")):
        body = {"kind": "marker", "annotationId": name, "seriesId": "price", "style": style}
        charts.add_annotation("tf", {**body, "points": [{"time": at}]})
    drawn = charts.markers("tf", "price")
    assert [m["time"] for m in drawn] == [_utc("2024-03-08 13:05"), _utc("2024-03-11 14:45")]
    on_bars = charts.markers("tf", "price", resolution="60")
    # before the open: the session's first bar; Monday after the DST switch: 10:30 EDT
    assert [m["time"] for m in on_bars] == [HOURLY[0], _utc("2024-03-11 14:30")]
    later = charts.markers("tf", "price", start=_utc("2024-03-09"), resolution="1D")
    assert [m["time"] for m in later] == [_utc("2024-03-11")]

    with pytest.raises(ChartsClientError) as bad:
        charts.history("tf", "price", resolution="7Q")
    assert (bad.value.status, bad.value.error_code) == (422, "INVALID_RESOLUTION")
    with pytest.raises(ChartsClientError) as wrong:
        charts.set_series("tf", "other", frame.iloc[:5], market={"timezone": "Mars/Olympus"})
    assert (wrong.value.status, wrong.value.error_code) == (422, "INVALID_MARKET")


def test_aggregation_of_a_value_series(charts: ChartsClient) -> None:
    points = [{"time": START + 60 * i, "value": float(i % 7)} for i in range(120)]
    charts.set_series("agg", "v", points, aggregation="max")
    assert charts.get_series("agg", "v")["aggregation"] == "max"
    bars = charts.all_points("agg", "v", resolution="60")
    assert [bar["value"] for bar in bars] == [6.0, 6.0, 6.0]  # START is 22:13:20 UTC


def test_update_delete_and_errors(charts: ChartsClient) -> None:
    charts.set_series("crud", "price", [{"time": START, "value": 1}])
    result = charts.update("crud", "price", {"time": START + 60, "value": 2})
    assert result["totalCount"] == 2
    with pytest.raises(ChartsClientError) as bad:
        charts.update("crud", "price", [{"time": START, "value": "x"}])
    assert bad.value.status == 400
    charts.delete_series("crud", "price")
    with pytest.raises(ChartsClientError) as missing:
        charts.get_series("crud", "price")
    assert missing.value.error_code == "SERIES_NOT_FOUND"
    charts.delete_chart("crud")
    with pytest.raises(ChartsClientError) as gone:
        charts.get_chart("crud")
    assert (gone.value.status, gone.value.error_code) == (404, "CHART_NOT_FOUND")


def test_unreachable_server_is_a_connection_error() -> None:
    with (
        ChartsClient(f"http://127.0.0.1:{free_port()}") as client,
        pytest.raises(ChartsConnectionError, match="cannot reach the server"),
    ):
        client.list_charts()


async def test_async_client_and_live_subscription(server: ServerProcess) -> None:
    async with AsyncChartsClient(server.http_url) as charts:
        await charts.set_series("live", "price", [{"time": START, "value": 1.0}])
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def follow() -> None:
            async for event in charts.subscribe("live"):
                await events.put(event)

        task = asyncio.create_task(follow())
        try:
            # The subscription is live once an update made after it shows up.
            async with asyncio.timeout(10):
                while True:
                    await charts.update("live", "price", {"time": START + 60, "value": 2.0})
                    try:
                        event = await asyncio.wait_for(events.get(), 0.5)
                        break
                    except TimeoutError:
                        continue
            assert event["type"] == "data_update"
            assert event["op"] == "upsert"
            assert event["data"] == [{"time": START + 60, "value": 2.0}]
            await charts.update("live", "price", {"time": START + 120, "value": 3.0})
            async with asyncio.timeout(5):
                while event["data"] != [{"time": START + 120, "value": 3.0}]:
                    event = await events.get()
            chunks = [chunk async for chunk in charts.iter_history("live", "price", count=2)]
            assert [len(chunk) for chunk in chunks] == [2, 1]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_async_client_reads_bars_and_ranges(server: ServerProcess) -> None:
    async with AsyncChartsClient(server.http_url) as charts:
        written = await charts.set_series(
            "tf-async", "price", _session_candles(), "candlestick", market=NEW_YORK
        )
        assert written["count"] == 870
        series = await charts.get_series("tf-async", "price", resolution="60")
        assert series["market"] == NEW_YORK and [b["time"] for b in series["data"]] == HOURLY
        chunk = await charts.history("tf-async", "price", resolution="60", before_time=HOURLY[7])
        assert [bar["time"] for bar in chunk["data"]] == HOURLY[:7]
        bars = await charts.all_points("tf-async", "price", resolution="1W")
        assert [bar["time"] for bar in bars] == [_utc("2024-03-04"), _utc("2024-03-11")]
        view = await charts.get_range("tf-async", "price", start=HOURLY[7], max_points=10)
        assert view["resolution"] == "60" and [b["time"] for b in view["data"]] == HOURLY[7:]
        style = {"position": "belowBar", "shape": "arrowUp", "color": "#26a69a"}
        early = {"time": "2024-03-11T12:00:00Z"}  # 08:00 EDT, before Monday's open
        await charts.add_annotation(
            "tf-async",
            {"kind": "marker", "seriesId": "price", "style": style, "points": [early]},
        )
        markers = await charts.markers("tf-async", "price", resolution="60")
        assert [m["time"] for m in markers] == [HOURLY[7]]


def test_sync_subscription_resumes_after_a_restart(tmp_path: Path) -> None:
    """The sync iterator reconnects to a restarted server and keeps yielding updates."""
    first = start_server(tmp_path / "srv", enable_persistence="true")
    try:
        with ChartsClient(first.http_url) as charts:
            charts.set_series("again", "v", [{"time": START, "value": 1.0}])
            events = charts.subscribe("again")
            charts.update("again", "v", {"time": START + 60, "value": 2.0})
            assert _upsert_of(events, START + 60)["data"][0]["value"] == 2.0
            first.stop()
            second = start_server(tmp_path / "srv", port=first.port, enable_persistence="true")
            try:
                charts.update("again", "v", {"time": START + 120, "value": 3.0})
                # Either the missed update or an instruction to refetch: never silence.
                event = next(events)
                while event["type"] == "data_update" and event["data"][0]["time"] < START + 120:
                    event = next(events)
                assert event["type"] in ("data_update", "resync_required")
                events.close()
            finally:
                second.stop()
    finally:
        first.stop()


def test_auth_with_token_and_api_key(tmp_path: Path) -> None:
    secret, record = new_api_key("writer", ["secured"])
    keys = SettingsKeyStore([])
    asyncio.run(keys.add(record))
    api_keys = keys.setting_line().removeprefix("API_KEYS='").removesuffix("'")
    server = start_server(
        tmp_path / "auth", enable_auth="true", secret_key=SECRET, api_keys=api_keys
    )
    try:
        settings = Settings(_env_file=None, secret_key=SECRET)  # type: ignore[call-arg]
        token = create_access_token({"sub": "tester", "chart_ids": ["secured"]}, settings)
        with ChartsClient(server.http_url) as anonymous, pytest.raises(ChartsClientError) as no:
            anonymous.create_chart("secured")
        assert no.value.status == 401
        with ChartsClient(server.http_url, api_key=secret) as by_key:
            by_key.set_series("secured", "v", [{"time": START, "value": 1.0}])
            with pytest.raises(ChartsClientError) as other:
                by_key.create_chart("elsewhere")
            assert other.value.status == 403
        with ChartsClient(server.http_url, token=token) as by_token:
            events = by_token.subscribe("secured", reconnect=False)
            by_token.update("secured", "v", {"time": START + 60, "value": 2.0})
            assert _upsert_of(events, START + 60)["data"] == [{"time": START + 60, "value": 2.0}]
            events.close()
            assert by_token.all_points("secured", "v")[-1]["value"] == 2.0
    finally:
        server.stop()


def test_reads_after_a_write_carry_its_version(charts: ChartsClient) -> None:
    created = charts.create_chart("versions")
    written = charts.set_series("versions", "s", [{"time": START, "value": 1.0}])
    updated = charts.update("versions", "s", {"time": START + 60, "value": 2.0})
    assert created["version"] < written["version"] < updated["version"]
    # The reads go out with min_version=<that version>, which the server takes.
    assert charts.history("versions", "s")["data"][-1] == {"time": START + 60, "value": 2.0}
    assert charts.get_series("versions", "s")["totalCount"] == 2


def test_the_request_core_sends_the_version_its_writes_returned() -> None:
    from lightweight_charts_pro_backend.client import _Call, _Operations

    ops = _Operations()
    read = _Call("GET", "/api/charts/c/data/0/s", chart_id="c")
    assert ops.request(read)[3] is None  # nothing written yet: no token

    def answer(call: _Call, status: int, version: int) -> None:
        request = httpx.Request(call.method, "http://server" + call.path)
        headers = {"X-Chart-Version": str(version)}
        ops.answer(call, httpx.Response(status, headers=headers, request=request))

    write = _Call("PATCH", "/api/charts/c/data/s", {}, chart_id="c", writes=True)
    answer(write, 200, 7)
    assert ops.request(read)[3] == {"min_version": 7}
    answer(write, 200, 5)  # an answer overtaken by a newer one lowers nothing
    assert ops.request(read)[3] == {"min_version": 7}
    assert ops.request(_Call("GET", "/api/charts/other", chart_id="other"))[3] is None
    answer(_Call("DELETE", "/api/charts/c", chart_id="c", writes=True), 204, 8)
    assert ops.request(read)[3] is None  # a chart made again starts its versions anew
    answer(_Call("POST", "/api/charts/c", {}, chart_id="c", writes=True), 201, 0)
    assert ops.request(read)[3] == {"min_version": 0}


def test_the_request_core_sends_resolutions_ranges_and_markets() -> None:
    from lightweight_charts_pro_backend.client import _Operations

    ops = _Operations()
    ops.versions["c"] = 4
    history = next(ops.history("c", "s", 0, None, None, 50, "1D"))
    assert ops.request(history)[3] == {"count": 50, "resolution": "1D", "min_version": 4}
    moment = datetime(2024, 3, 8, 14, 30, tzinfo=UTC)
    view = next(ops.get_range("c", "s", 1, moment, 1_710_000_000, 500))
    assert ops.request(view)[1] == "/api/charts/c/range/1/s"
    assert ops.request(view)[3] == {
        "from": "2024-03-08 14:30:00+00:00",
        "to": 1_710_000_000,
        "max_points": 500,
        "min_version": 4,
    }
    # Markers are annotations, which have versions of their own; resolution=60 is sent as 60.
    markers = next(ops.markers("c", "s", 0, None, None, 60))
    assert ops.request(markers)[3] == {"resolution": 60}
    replace = next(
        ops.set_series("c", "s", [], "line", 0, None, 100, False, NEW_YORK, aggregation="mean")
    )
    assert replace.body == {
        "paneId": 0,
        "seriesType": "line",
        "data": [],
        "options": {},
        "market": NEW_YORK,
        "aggregation": "mean",
    }

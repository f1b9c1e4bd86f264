"""The annotation routes on every store: memory, SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from .conftest import Serve, auth, marker, trend_line

pytestmark = pytest.mark.slow

ALICE = auth("alice")
BOB = auth("bob")
CAROL = auth("carol", scope="charts:read")
CHART = "/api/charts/c1"


async def new_chart(client: httpx.AsyncClient, chart: str = CHART) -> None:
    assert (await client.post(chart, headers=ALICE)).status_code == 201


async def listing(
    client: httpx.AsyncClient, headers: dict[str, str] = ALICE, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(f"{CHART}/annotations", params=params, headers=headers)
    assert response.status_code == 200, response.text
    annotations: list[dict[str, Any]] = response.json()["annotations"]
    return annotations


async def test_create_read_update_delete(serve: Serve) -> None:
    async with serve(enable_auth=True) as client:
        await new_chart(client)
        created = await client.post(f"{CHART}/annotations", json=trend_line(), headers=ALICE)
        assert created.status_code == 201, created.text
        drawn = created.json()
        assert drawn["kind"] == "trend_line" and drawn["owner"] == "alice"
        assert (drawn["version"], drawn["visibility"], drawn["paneId"]) == (1, "chart", 0)
        assert drawn["points"] == [{"time": 1000, "price": 10.0}, {"time": 2000, "price": 12.5}]
        url = f"{CHART}/annotations/{drawn['annotationId']}"
        assert (await client.get(url, headers=BOB)).json() == drawn
        assert await listing(client) == [drawn]

        points = [{"time": 1500, "price": 11}, {"time": 2500, "price": 12}]
        moved = await client.patch(url, json={"version": 1, "points": points}, headers=BOB)
        assert moved.status_code == 200, moved.text
        assert moved.json()["version"] == 2 and moved.json()["owner"] == "alice"
        assert moved.json()["createdAt"] == drawn["createdAt"]

        stale = await client.patch(url, json={"version": 1, "text": "late"}, headers=ALICE)
        assert stale.status_code == 409
        assert stale.json()["errorCode"] == "ANNOTATION_CONFLICT"
        assert "version 2, not 1" in stale.json()["detail"]
        assert (await client.get(url, headers=ALICE)).json() == moved.json()

        assert (await client.delete(url + "?version=1", headers=ALICE)).status_code == 409
        assert (await client.delete(url, headers=ALICE)).status_code == 204
        gone = await client.get(url, headers=ALICE)
        assert (gone.status_code, gone.json()["errorCode"]) == (404, "ANNOTATION_NOT_FOUND")
        assert await listing(client) == []
        assert (await client.delete(url, headers=ALICE)).status_code == 404


async def test_a_listing_returns_what_overlaps_the_visible_range(serve: Serve) -> None:
    async with serve() as client:
        await new_chart(client)
        ids = {}
        for name, body in {
            "early": trend_line(100, 200),
            "late": trend_line(900, 1000),
            "across": trend_line(150, 950),
            "level": {"kind": "horizontal_line", "points": [{"price": 5}]},
            "ray": {
                "kind": "ray",
                "points": [{"time": 600, "price": 1}, {"time": 700, "price": 2}],
            },
            "m": marker(500, paneId=1),
        }.items():
            response = await client.post(
                f"{CHART}/annotations", json={**body, "annotationId": name}
            )
            assert response.status_code == 201, response.text
            ids[name] = response.json()["annotationId"]
        assert ids["m"] == "m"

        def names(found: list[dict[str, Any]]) -> list[str]:
            return [a["annotationId"] for a in found]

        everything = names(await listing(client))
        assert everything == ["level", "early", "across", "m", "ray", "late"]  # by first time
        assert names(await listing(client, **{"from": 300, "to": 800})) == [
            "level", "across", "m", "ray",
        ]  # fmt: skip
        assert names(await listing(client, **{"from": 200, "to": 201})) == [
            "level",
            "early",
            "across",
        ]
        assert names(await listing(client, **{"from": 1001})) == ["level", "ray"]
        assert names(await listing(client, to=100)) == ["level"]  # [from, to): 100 excluded
        assert names(await listing(client, paneId=1)) == ["m"]
        assert names(await listing(client, series_id="price")) == ["m"]
        iso = await listing(client, **{"from": "1970-01-01T00:15:00Z", "to": 1_000_000})
        assert names(iso) == ["level", "across", "ray", "late"]


async def test_private_annotations_belong_to_their_owner(serve: Serve) -> None:
    async with serve(enable_auth=True) as client:
        await new_chart(client)
        mine = (
            await client.post(
                f"{CHART}/annotations", json=trend_line(visibility="private"), headers=ALICE
            )
        ).json()
        shared = (
            await client.post(f"{CHART}/annotations", json=trend_line(), headers=ALICE)
        ).json()
        url = f"{CHART}/annotations/{mine['annotationId']}"

        assert sorted(a["annotationId"] for a in await listing(client, ALICE)) == sorted(
            [mine["annotationId"], shared["annotationId"]]
        )
        assert [a["annotationId"] for a in await listing(client, BOB)] == [shared["annotationId"]]
        for method in ("get", "delete"):
            refused = await client.request(method, url, headers=BOB)
            assert refused.status_code == 404, (method, refused.text)
        refused = await client.patch(url, json={"version": 1, "text": "x"}, headers=BOB)
        assert refused.status_code == 404

        # A reader may keep private drawings on a chart it cannot change, and nothing more.
        note = await client.post(
            f"{CHART}/annotations", json=trend_line(visibility="private"), headers=CAROL
        )
        assert note.status_code == 201 and note.json()["owner"] == "carol"
        assert (
            await client.post(f"{CHART}/annotations", json=trend_line(), headers=CAROL)
        ).status_code == 403
        shared_url = f"{CHART}/annotations/{shared['annotationId']}"
        assert (await client.get(shared_url, headers=CAROL)).status_code == 200
        patched = await client.patch(shared_url, json={"version": 1, "text": "x"}, headers=CAROL)
        assert (patched.status_code, patched.json()["errorCode"]) == (403, "FORBIDDEN")
        assert (await client.delete(shared_url, headers=CAROL)).status_code == 403
        going_public = await client.patch(
            f"{CHART}/annotations/{note.json()['annotationId']}",
            json={"version": 1, "visibility": "chart"},
            headers=CAROL,
        )
        assert going_public.status_code == 403

        # Only the owner moves an annotation between private and shared.
        hide = await client.patch(
            shared_url, json={"version": 1, "visibility": "private"}, headers=BOB
        )
        assert hide.status_code == 403
        hide = await client.patch(
            shared_url, json={"version": 1, "visibility": "private"}, headers=ALICE
        )
        assert hide.status_code == 200
        assert await listing(client, BOB) == []

        # Another chart's token sees nothing of this chart.
        elsewhere = auth("dave", chart_ids=["other"])
        assert (await client.get(f"{CHART}/annotations", headers=elsewhere)).status_code == 403


async def test_limits_answer_413_and_keep_nothing(serve: Serve) -> None:
    async with serve(max_annotations_per_chart=3, max_annotation_bytes=1024) as client:
        await new_chart(client)
        for i in range(3):
            response = await client.post(f"{CHART}/annotations", json=marker(i))
            assert response.status_code == 201
        full = await client.post(f"{CHART}/annotations", json=marker(9))
        assert (full.status_code, full.json()["errorCode"]) == (413, "TOO_MANY_ANNOTATIONS")
        assert "MAX_ANNOTATIONS_PER_CHART=3" in full.json()["detail"]
        big = await client.post(f"{CHART}/annotations", json=trend_line(text="x" * 2000))
        assert (big.status_code, big.json()["errorCode"]) == (413, "ANNOTATION_TOO_LARGE")
        assert len(await listing(client)) == 3

        first = (await listing(client))[0]
        assert (
            await client.delete(f"{CHART}/annotations/{first['annotationId']}")
        ).status_code == 204
        assert (await client.post(f"{CHART}/annotations", json=marker(9))).status_code == 201
        # The stored form counts too: a body under the limit that grows past it is refused.
        near = await client.patch(
            f"{CHART}/annotations/{(await listing(client))[0]['annotationId']}",
            json={"version": 1, "text": "y" * 900},
        )
        assert near.status_code == 413


LINE = {"kind": "vertical_line", "points": [{"time": 1}]}
HERE = "/api/charts/c1/annotations"
INVALID = (422, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (HERE, {"kind": "marker", "points": [{"time": 1}]}, INVALID),
        (HERE, {"kind": "trend_line", "points": "x"}, INVALID),
        (HERE, [1, 2], INVALID),
        (HERE, "not json", INVALID),
        (HERE, {"kind": "text", "points": [{"time": 1e300, "price": 1}], "text": "t"}, INVALID),
        (HERE, {**LINE, "annotationId": "../x"}, INVALID),
        ("/api/charts/nope/annotations", LINE, (404, "CHART_NOT_FOUND")),
        ("/api/charts/bad..id/annotations", LINE, INVALID),
    ],
)
async def test_bad_input_is_a_clear_4xx_and_stores_nothing(
    serve: Serve, path: str, body: object, expected: tuple[int, str]
) -> None:
    status, code = expected
    async with serve() as client:
        await new_chart(client)
        if isinstance(body, str):
            headers = {"Content-Type": "application/json"}
            response = await client.post(path, content=body, headers=headers)
        else:
            response = await client.post(path, json=body)
        assert response.status_code == status, response.text
        assert response.json()["errorCode"] == code and response.json()["detail"]
        assert await listing(client) == []


async def test_bad_queries_and_patches_are_refused(serve: Serve) -> None:
    async with serve() as client:
        await new_chart(client)
        drawn = (await client.post(f"{CHART}/annotations", json=marker(60))).json()
        url = f"{CHART}/annotations/{drawn['annotationId']}"
        for params in (
            {"from": "yesterday"},
            {"paneId": "-1"},
            {"paneId": "\u00b9"},  # a digit to str.isdigit, not to int()
            {"series_id": "a b"},
        ):
            response = await client.get(f"{CHART}/annotations", params=params)
            assert response.status_code == 422, params
        for patch in (
            {"text": "no version"},
            {"version": 1, "kind": "text"},
            {"version": 1, "points": []},
            {"version": 1, "style": {"position": "inBar"}},
            {"version": 1, "wat": 1},
        ):
            response = await client.patch(url, json=patch)
            assert response.status_code == 422, patch
        assert (await client.delete(url + "?version=x")).status_code == 422
        assert (await client.delete(url, params={"version": "\u00b2"})).status_code == 422
        assert (await client.get(url)).json() == drawn
        duplicate = await client.post(
            f"{CHART}/annotations", json=marker(1, annotationId=drawn["annotationId"])
        )
        assert (duplicate.status_code, duplicate.json()["errorCode"]) == (409, "ANNOTATION_EXISTS")


async def test_markers_are_ready_for_create_series_markers(serve: Serve) -> None:
    async with serve() as client:
        await new_chart(client)
        at_price = {"position": "atPriceTop", "shape": "circle", "color": "blue", "size": 2}
        for body in (
            marker(7_260, annotationId="b"),
            marker(3_630, annotationId="a", text=None),
            marker(
                3_700, annotationId="p", style=at_price, points=[{"time": 3_700, "price": 99.5}]
            ),
            marker(3_000, annotationId="other", seriesId="volume"),
            marker(3_000, annotationId="pane1", paneId=1),
            trend_line(3_000, 4_000, seriesId="price"),
        ):
            assert (await client.post(f"{CHART}/annotations", json=body)).status_code == 201

        response = await client.get(f"{CHART}/markers/0/price")
        assert response.status_code == 200
        above = {"position": "aboveBar", "shape": "arrowDown", "color": "#ef5350"}
        assert response.json() == {
            "seriesId": "price",
            "markers": [
                {"id": "a", "time": 3_630, **above, "text": ""},
                {"id": "p", "time": 3_700, **at_price, "text": "m3700", "price": 99.5},
                {"id": "b", "time": 7_260, **above, "text": "m7260"},
            ],
        }
        hourly = (await client.get(f"{CHART}/markers/0/price", params={"resolution": "60"})).json()
        assert [m["time"] for m in hourly["markers"]] == [3_600, 3_600, 7_200]
        daily = await client.get(
            f"{CHART}/markers/0/price", params={"resolution": "1D", "from": 3_650, "to": 7_260}
        )
        assert [(m["id"], m["time"]) for m in daily.json()["markers"]] == [("p", 0)]
        assert (await client.get(f"{CHART}/markers/1/price")).json()["markers"][0]["id"] == "pane1"
        bad = await client.get(f"{CHART}/markers/0/price", params={"resolution": "1Q"})
        assert bad.status_code == 422 and "resolution" in bad.json()["detail"]
        assert (await client.get(f"{CHART}/markers/0/a..b")).status_code == 422
        assert (await client.get(f"{CHART}/markers/\u00b9/price")).status_code == 422
        assert (await client.get("/api/charts/none/markers/0/price")).status_code == 404


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def minute_candles(first: str, count: int, step: int = 60) -> list[dict[str, Any]]:
    start = utc(first)
    return [
        {"time": start + step * i, "open": 10, "high": 11, "low": 9, "close": 10}
        for i in range(count)
    ]


async def bar_times(client: httpx.AsyncClient, series: str, resolution: str) -> list[int]:
    url = f"{CHART}/history/0/{series}"
    response = await client.get(url, params={"resolution": resolution, "count": 1000})
    assert response.status_code == 200, response.text
    return [bar["time"] for bar in response.json()["data"]]


async def snapped_markers(
    client: httpx.AsyncClient, series: str, resolution: str
) -> dict[str, int]:
    url = f"{CHART}/markers/0/{series}"
    response = await client.get(url, params={"resolution": resolution})
    assert response.status_code == 200, response.text
    return {m["id"]: m["time"] for m in response.json()["markers"]}


async def test_markers_at_a_resolution_sit_on_the_bars_of_the_series_market(serve: Serve) -> None:
    """Markers snap to the bars the bars routes return, by the series' market: session starts,
    DST, trading days; a marker outside the sessions goes to the nearest session's bar."""
    new_york = {"timezone": "America/New_York", "session": "0930-1600:23456"}
    # Friday 2024-03-08 is EST (open 14:30 UTC), Monday 2024-03-11 EDT (open 13:30 UTC); the
    # pre-market points of Friday are stored but in no bar.
    data = minute_candles("2024-03-08T13:00:00", 90) + minute_candles("2024-03-08T14:30:00", 390)
    data += minute_candles("2024-03-11T13:30:00", 390)
    inside = {
        "fri-open": utc("2024-03-08T14:45:00"),
        "fri-last": utc("2024-03-08T20:59:00"),
        "mon-open": utc("2024-03-11T13:30:00"),
        "mon-noon": utc("2024-03-11T16:10:00"),
    }
    outside = {
        "premarket": (utc("2024-03-08T13:05:00"), utc("2024-03-08T14:30:00")),
        "evening": (utc("2024-03-08T22:00:00"), utc("2024-03-08T20:30:00")),
        "saturday": (utc("2024-03-09T15:00:00"), utc("2024-03-08T20:30:00")),
        "sunday-night": (utc("2024-03-11T02:00:00"), utc("2024-03-11T13:30:00")),
    }
    # London: Friday 2024-03-29 is GMT, Tuesday 2024-04-02 BST; 07:30 UTC is before the open on
    # the first and inside the session on the second.
    london = {"timezone": "Europe/London", "session": "0800-1630:23456"}
    ftse = minute_candles("2024-03-29T08:00:00", 510) + minute_candles("2024-04-02T07:00:00", 510)
    async with serve() as client:
        await new_chart(client)
        for series, points, market in (("price", data, new_york), ("ftse", ftse, london)):
            body = {"paneId": 0, "seriesType": "candlestick", "data": points, "market": market}
            written = await client.post(f"{CHART}/data/{series}", json=body)
            assert written.status_code == 200, written.text
        times = {**inside, **{name: at for name, (at, _) in outside.items()}}
        times |= {"gmt-early": utc("2024-03-29T07:30:00"), "bst-early": utc("2024-04-02T07:30:00")}
        for name, at in times.items():
            series = "ftse" if name.endswith("-early") else "price"
            body = marker(at, annotationId=name, seriesId=series)
            assert (await client.post(f"{CHART}/annotations", json=body)).status_code == 201

        hourly = await bar_times(client, "price", "60")
        markers = await snapped_markers(client, "price", "60")
        for name, at in inside.items():  # the bar whose bucket holds the marker's time
            assert markers[name] == max(bar for bar in hourly if bar <= at), name
        for name, (_, bar) in outside.items():
            assert markers[name] == bar, name
        assert set(markers.values()) <= set(hourly)
        # The US switch moved the open an hour earlier in UTC, and the bars and markers with it.
        assert markers["mon-open"] - markers["fri-open"] == 3 * 86_400 - 3600

        daily = await bar_times(client, "price", "1D")
        assert daily == [utc("2024-03-08T00:00:00"), utc("2024-03-11T00:00:00")]
        by_day = await snapped_markers(client, "price", "1D")
        assert {name for name, at in by_day.items() if at == daily[1]} == {
            "mon-open",
            "mon-noon",
            "sunday-night",
        }
        assert set(by_day.values()) == set(daily)

        four_hours = await bar_times(client, "ftse", "240")
        assert four_hours == [
            utc("2024-03-29T08:00:00"),
            utc("2024-03-29T12:00:00"),
            utc("2024-03-29T16:00:00"),
            utc("2024-04-02T07:00:00"),
            utc("2024-04-02T11:00:00"),
            utc("2024-04-02T15:00:00"),
        ]
        assert await snapped_markers(client, "ftse", "240") == {
            "gmt-early": utc("2024-03-29T08:00:00"),  # outside: the day's first bar
            "bst-early": utc("2024-04-02T07:00:00"),  # 08:30 BST: in the 08:00 BST bar
        }
        # Without a resolution, markers keep the times they were drawn at.
        raw = await client.get(f"{CHART}/markers/0/ftse")
        drawn = [m["time"] for m in raw.json()["markers"]]
        assert drawn == [times["gmt-early"], times["bst-early"]]


async def test_deleting_a_chart_deletes_its_annotations(serve: Serve) -> None:
    async with serve() as client:
        await new_chart(client)
        assert (await client.post(f"{CHART}/annotations", json=marker(5))).status_code == 201
        assert (await client.delete(CHART)).status_code == 204
        assert (await client.get(f"{CHART}/annotations")).status_code == 404
        await new_chart(client)
        assert await listing(client) == []
        assert (await client.post(f"{CHART}/annotations", json=marker(5))).status_code == 201

"""Annotation changes on the bus and the sockets: who receives which frame, once, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from lightweight_charts_pro_backend.annotations.events import AnnotationEvent
from lightweight_charts_pro_backend.app import create_app
from lightweight_charts_pro_backend.charts.events import ChartEvent
from lightweight_charts_pro_backend.realtime.bus import InProcessEventBus
from lightweight_charts_pro_backend.realtime.hub import Connection, Hub, HubLimits
from lightweight_charts_pro_backend.realtime.redis_bus import decode_event, encode_event

from ..realtime.conftest import open_socket, receive
from ..servers import uvicorn_thread
from .conftest import auth, marker, settings_for, trend_line


def change(sequence: int, audience: str | None = None, **fields: Any) -> AnnotationEvent:
    values: dict[str, Any] = {
        "chart_id": "c",
        "sequence": sequence,
        "op": "update",
        "annotation_id": f"a{sequence}",
        "version": 2,
        "audience": audience,
        "data": orjson.dumps({"annotationId": f"a{sequence}", "version": 2}),
    }
    values.update(fields)
    return AnnotationEvent(**values)


def drain(conn: Connection) -> list[dict[str, Any]]:
    messages = []
    while len(conn.outbox):
        messages.append(orjson.loads(conn.outbox._items.popleft()["text"]))
    return messages


@pytest.fixture
async def bus() -> AsyncIterator[InProcessEventBus]:
    bus = InProcessEventBus()
    yield bus
    await bus.close()


async def test_the_hub_sends_private_changes_to_the_owner_only(bus: InProcessEventBus) -> None:
    hub = Hub(bus, HubLimits())
    alice, bob, anyone = hub.join("c", 0, "alice"), hub.join("c", 0, "bob"), hub.join("c", 0)
    await bus.publish(change(1))
    await bus.publish(change(2, audience="alice"))
    await bus.publish(change(3, audience="alice", withdrawn=True))
    await bus.publish(change(4, audience="alice", op="delete", data=None, version=3))
    assert [(m["op"], m["annotationId"]) for m in drain(alice)] == [
        ("update", "a1"), ("update", "a2"), ("update", "a3"), ("delete", "a4"),
    ]  # fmt: skip
    for other in (bob, anyone):
        frames = drain(other)
        assert [(m["op"], m["annotationId"]) for m in frames] == [
            ("update", "a1"),
            ("delete", "a3"),
        ]
    first = drain(alice) or None
    assert first is None


async def test_the_hub_orders_annotation_changes_by_sequence(bus: InProcessEventBus) -> None:
    hub = Hub(bus, HubLimits(gap_wait_seconds=0.05))
    conn = hub.join("c", 0, "alice")
    for sequence in (5, 7, 6, 6, 5, 8):  # late, early and twice, as from other processes
        await bus.publish(change(sequence))
    assert [m["annotationId"] for m in drain(conn)] == ["a5", "a6", "a7", "a8"]
    # Chart events keep their own order alongside.
    await bus.publish(ChartEvent("c", 1, "options", options={}))
    assert [m["type"] for m in drain(conn)] == ["data_update"]

    # A change that never comes: the later ones go out after the wait, with a resync request.
    await bus.publish(change(10))
    assert drain(conn) == []
    await asyncio.sleep(0.15)
    frames = drain(conn)
    assert [f.get("annotationId") for f in frames] == ["a10", None]
    assert frames[1]["type"] == "resync_required" and frames[1]["scope"] == "annotations"

    # A deleted chart numbers its annotations from 1 again.
    await bus.publish(ChartEvent("c", 2, "chart_deleted"))
    await bus.publish(change(1))
    assert [m.get("annotationId") for m in drain(conn)] == [None, "a1"]


async def test_a_channel_starts_from_the_charts_annotation_sequence(
    bus: InProcessEventBus,
) -> None:
    hub = Hub(bus, HubLimits(gap_wait_seconds=0.05))
    conn = hub.join("c", 0, "alice", annotation_sequence=5)
    # Another worker's change 6 is delayed past this worker's 7: 7 waits for it.
    await bus.publish(change(7))
    assert drain(conn) == []
    await bus.publish(change(6))
    await bus.publish(change(5))  # already in what the socket fetches
    assert [m["annotationId"] for m in drain(conn)] == ["a6", "a7"]
    assert hub.join("c", 0, annotation_sequence=0) is not None  # the channel keeps its own

    # A change that never comes: the later ones go out after the wait, then a resync.
    other = hub.join("d", 0, "bob", annotation_sequence=2)
    await bus.publish(change(4, chart_id="d"))
    await asyncio.sleep(0.15)
    frames = drain(other)
    assert [(f["type"], f.get("annotationId")) for f in frames] == [
        ("annotation_update", "a4"), ("resync_required", None),
    ]  # fmt: skip
    assert frames[1]["scope"] == "annotations" and frames[1]["chartId"] == "d"


async def test_a_socket_gets_a_late_change_from_another_worker(database_url: str | None) -> None:
    app = create_app(settings_for(database_url))
    loops: list[asyncio.AbstractEventLoop] = []

    async def server_loop() -> None:
        loops.append(asyncio.get_running_loop())

    app.add_api_route("/loop", server_loop)
    with uvicorn_thread(app) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            assert (await client.post("/api/charts/c")).status_code == 201
            for time in (1, 2):
                response = await client.post("/api/charts/c/annotations", json=marker(time))
                assert response.status_code == 201
            await client.get("/loop")
            ws, _ = await open_socket(f"ws://{address}/ws/charts/c")

            def publish(event: AnnotationEvent) -> None:
                asyncio.run_coroutine_threadsafe(app.state.bus.publish(event), loops[0]).result()

            # Changes 3 and 4 of other workers, heard in the wrong order by this one.
            publish(change(4, chart_id="c", op="create"))
            publish(change(3, chart_id="c", op="create"))
            frames = await frames_until(ws, 2)
            assert [(f["type"], f["annotationId"]) for f in frames] == [
                ("annotation_update", "a3"), ("annotation_update", "a4"),
            ]  # fmt: skip
            await quiet(ws)
            await ws.close()


def test_annotation_events_cross_the_redis_bus_unchanged() -> None:
    for event in (
        change(3, audience="alice", withdrawn=True),
        change(4, op="delete", data=None),
        change(5, op="create"),
    ):
        origin, decoded = decode_event(encode_event(event, "me"))
        assert (origin, decoded) == ("me", event)
    chart = ChartEvent("c", 2, "upsert", pane_id=0, series_id="s", count=1, data=b"[1]")
    assert decode_event(encode_event(chart, "me"))[1] == chart


async def frames_until(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    return [await receive(ws) for _ in range(count)]


async def quiet(ws: ClientConnection) -> None:
    """Nothing more arrives: a ping is answered by the next frame."""
    await ws.send('{"type":"ping","requestId":"probe"}')
    reply = await receive(ws)
    assert (reply["type"], reply.get("requestId")) == ("pong", "probe"), reply


async def test_sockets_receive_what_their_caller_may_see() -> None:
    app = create_app(settings_for(None, enable_auth=True))
    alice_headers, bob_headers = auth("alice"), auth("bob")
    with uvicorn_thread(app) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            assert (await client.post("/api/charts/c", headers=alice_headers)).status_code == 201
            tokens = {
                who: headers["Authorization"].split()[1]
                for who, headers in (("alice", alice_headers), ("bob", bob_headers))
            }
            sockets = {
                who: (await open_socket(f"ws://{address}/ws/charts/c?token={token}"))[0]
                for who, token in tokens.items()
            }
            url = "/api/charts/c/annotations"
            shared = await client.post(url, json=trend_line(), headers=alice_headers)
            mine = await client.post(
                url, json=marker(5, visibility="private"), headers=alice_headers
            )
            shared_id = shared.json()["annotationId"]
            hidden = await client.patch(
                f"{url}/{shared_id}", json={"version": 1, "visibility": "private"},
                headers=alice_headers,
            )  # fmt: skip
            await client.delete(f"{url}/{mine.json()['annotationId']}", headers=alice_headers)

            alice = await frames_until(sockets["alice"], 4)
            assert [(f["type"], f["op"], f["version"]) for f in alice] == [
                ("annotation_update", "create", 1),
                ("annotation_update", "create", 1),
                ("annotation_update", "update", 2),
                ("annotation_update", "delete", 2),
            ]
            assert alice[0]["annotation"] == shared.json()
            assert alice[1]["annotation"] == mine.json()
            assert alice[2]["annotation"] == hidden.json() and alice[2]["chartId"] == "c"
            assert alice[3]["annotationId"] == mine.json()["annotationId"]
            bob = await frames_until(sockets["bob"], 2)
            assert [(f["op"], f["annotationId"]) for f in bob] == [
                ("create", shared_id), ("delete", shared_id),
            ]  # fmt: skip
            assert "annotation" not in bob[1]
            for ws in sockets.values():
                await quiet(ws)
                await ws.close()

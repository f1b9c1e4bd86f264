"""The hub on its own: fan-out, outboxes, resume history, liveness (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from lightweight_charts_pro_backend.charts.events import ChartEvent
from lightweight_charts_pro_backend.realtime.bus import InProcessEventBus
from lightweight_charts_pro_backend.realtime.hub import Connection, Hub, HubLimits, Outbox


@pytest.fixture
async def bus() -> AsyncIterator[InProcessEventBus]:
    bus = InProcessEventBus()
    yield bus
    await bus.close()


def make_hub(bus: InProcessEventBus, **limits: float) -> Hub:
    return Hub(bus, HubLimits(**limits))  # type: ignore[arg-type]


def upsert(version: int, chart: str = "c", pad: int = 0) -> ChartEvent:
    data = orjson.dumps([{"time": version, "value": 1.5, "pad": "x" * pad}])
    return ChartEvent(chart, version, "upsert", pane_id=0, series_id="s", count=1, data=data)


def drain(conn: Connection) -> list[dict[str, object]]:
    messages = []
    while len(conn.outbox):
        messages.append(orjson.loads(conn.outbox._items.popleft()["text"]))
    return messages


async def test_each_socket_gets_each_event_once_from_one_subscription(
    bus: InProcessEventBus,
) -> None:
    hub = make_hub(bus)
    conns = [hub.join("c", 0) for _ in range(3)]
    other = hub.join("d", 0)
    assert bus.listener_count("c") == 1
    for version in (1, 2):
        await bus.publish(upsert(version))
    firsts = [conn.outbox._items[0] for conn in conns]
    assert all(message is firsts[0] for message in firsts)  # encoded once, shared
    for conn in conns:
        assert [m["version"] for m in drain(conn)] == [1, 2]
    assert len(other.outbox) == 0


async def test_a_full_outbox_closes_only_that_socket(bus: InProcessEventBus) -> None:
    hub = make_hub(bus, send_queue_size=2)
    slow, fast = hub.join("c", 0), hub.join("c", 0)
    for version in (1, 2, 3):
        await bus.publish(upsert(version))
        drain(fast)
    assert slow.close_request is not None
    assert slow.close_request[0] == 1008 and "slow consumer" in slow.close_request[1]
    assert slow.closing.is_set() and len(slow.outbox) == 0
    assert hub.connection_count == 1
    await bus.publish(upsert(4))
    assert [m["version"] for m in drain(fast)] == [4]
    assert not slow.send({"type": "websocket.send", "text": "{}"})


async def test_last_socket_leaving_unsubscribes_after_the_resume_window(
    bus: InProcessEventBus,
) -> None:
    hub = make_hub(bus, resume_window_seconds=0.05)
    conn = hub.join("c", 0)
    hub.leave(conn)
    await bus.publish(upsert(1))  # still recorded for a client coming back
    assert bus.listener_count("c") == 1
    back = hub.join("c", 1)
    assert hub.missed(back, 0) is not None
    hub.leave(back)
    await asyncio.sleep(0.15)
    assert bus.listener_count("c") == 0 and hub.chart_count == 0

    gone = make_hub(bus, resume_window_seconds=0)
    gone.leave(gone.join("e", 0))
    assert bus.listener_count("e") == 0


async def test_missed_events_come_from_the_bounded_history(bus: InProcessEventBus) -> None:
    hub = make_hub(bus, resume_events=3)
    conn = hub.join("c", 0)
    for version in range(1, 6):
        await bus.publish(upsert(version))
    replay = hub.missed(conn, 2)
    assert replay is not None
    assert [orjson.loads(m["text"])["version"] for m in replay] == [3, 4, 5]
    assert hub.missed(conn, 5) == []
    assert hub.missed(conn, 1) is None  # version 2 is no longer held
    assert hub.missed(conn, 6) is None  # a version the chart never had


async def test_history_is_bounded_in_bytes_too(bus: InProcessEventBus) -> None:
    hub = make_hub(bus, resume_events=100, resume_max_bytes=1_000)
    conn = hub.join("c", 0)
    for version in range(1, 6):
        await bus.publish(upsert(version, pad=300))  # ~400 bytes each: two fit
    assert hub.missed(conn, 3) is not None
    assert hub.missed(conn, 2) is None
    await bus.publish(upsert(6, pad=5_000))  # larger than the whole budget: nothing held
    assert hub.missed(conn, 5) is None
    assert hub.missed(conn, 6) == []


async def test_deleting_the_chart_ends_its_history(bus: InProcessEventBus) -> None:
    hub = make_hub(bus)
    before = hub.join("c", 0)
    await bus.publish(upsert(1))
    await bus.publish(ChartEvent("c", 2, "chart_deleted"))
    await bus.publish(upsert(1))  # the chart was created again
    after = hub.join("c", 1)
    assert hub.missed(before, 1) is None  # that chart is gone: refetch
    replay = hub.missed(after, 0)
    assert replay is not None and [orjson.loads(m["text"])["version"] for m in replay] == [1]
    assert hub.missed(after, 1) == []


async def test_outbox_is_bounded_and_wakes_its_reader() -> None:
    box = Outbox(2)
    message = {"type": "websocket.send", "text": "{}"}
    reader = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    assert box.put(message)
    assert await reader is message
    assert box.put(message) and box.put(message)
    assert not box.put(message)
    assert box.free == 0


async def test_silent_sockets_are_closed_and_others_pinged(bus: InProcessEventBus) -> None:
    hub = make_hub(bus, ping_interval_seconds=0.02, timeout_seconds=0.2)
    await hub.start()
    silent, lively = hub.join("c", 0), hub.join("c", 0)
    for _ in range(20):
        await asyncio.sleep(0.02)
        lively.touch()
    assert silent.close_request is not None and silent.close_request[0] == 1000
    assert lively.close_request is None
    assert any(m["type"] == "ping" for m in drain(lively))
    await hub.close(grace_seconds=0.1)
    assert lively.close_request == (1001, "server shutting down")
    assert hub.closed and bus.listener_count("c") == 0


async def test_events_are_sent_in_version_order_whatever_order_they_arrive_in(
    bus: InProcessEventBus,
) -> None:
    hub = make_hub(bus)
    early, late = hub.join("c", 0), hub.join("c", 0)
    await bus.publish(upsert(1))
    for version in (3, 4, 2, 2, 1):  # ahead, ahead, the missing one, then duplicates
        await bus.publish(upsert(version))
    assert [m["version"] for m in drain(early)] == [1, 2, 3, 4]
    joined = hub.join("c", 6)  # its snapshot already holds versions 5 and 6
    for version in (5, 6, 7):
        await bus.publish(upsert(version))
    assert [m["version"] for m in drain(joined)] == [7]
    assert [m["version"] for m in drain(late)] == [1, 2, 3, 4, 5, 6, 7]
    assert [m["type"] for m in hub.missed(early, 4) or []] == ["websocket.send"] * 3


async def test_a_gap_that_never_fills_asks_every_socket_to_resync(
    bus: InProcessEventBus,
) -> None:
    hub = make_hub(bus, gap_wait_seconds=0.05)
    conn = hub.join("c", 0)
    await bus.publish(upsert(1))
    await bus.publish(upsert(3))
    assert [m["version"] for m in drain(conn)] == [1]
    await asyncio.sleep(0.2)
    assert drain(conn) == [
        {
            "type": "resync_required",
            "chartId": "c",
            "version": 3,
            "reason": "updates were lost between servers; fetch the chart",
        }
    ]
    assert hub.missed(conn, 1) is None  # the history has a hole: refetch
    await bus.publish(upsert(4))
    assert [m["version"] for m in drain(conn)] == [4]


async def test_after_the_bus_was_interrupted_every_socket_resyncs(
    bus: InProcessEventBus,
) -> None:
    hub = make_hub(bus)
    conns = [hub.join("c", 0), hub.join("d", 0)]
    await bus.publish(upsert(1))
    hub.resync_all()
    await bus.publish(upsert(9))  # whatever comes next is taken as it comes
    assert [m["type"] for m in drain(conns[0])] == ["data_update", "resync_required", "data_update"]
    assert [m["type"] for m in drain(conns[1])] == ["resync_required"]


async def test_a_socket_whose_snapshot_is_older_than_the_next_event_is_told_to_resync(
    bus: InProcessEventBus,
) -> None:
    # Redis came back: this worker heard it first and told its sockets to refetch, while
    # another worker, still reconnecting, made versions 2 and 3 without announcing them.
    hub = make_hub(bus)
    conn = hub.join("c", 0)
    await bus.publish(upsert(1))
    hub.resync_all()
    conn.snapshot_sent(1)  # the client refetched the chart at version 1
    await bus.publish(upsert(4))
    assert [(m["type"], m.get("version")) for m in drain(conn)] == [
        ("data_update", 1),
        ("resync_required", None),
        ("resync_required", 4),
    ]
    conn.snapshot_sent(4)
    await bus.publish(upsert(5))
    assert [(m["type"], m.get("version")) for m in drain(conn)] == [("data_update", 5)]


async def test_watched_bars_follow_their_update_in_version_order(bus: InProcessEventBus) -> None:
    """Bars at hand go out right behind their update; when one change's bars must be awaited,
    the later ones wait their turn, so every socket sees them in version order."""
    at_hand: dict[int, bool] = {1: True, 2: False, 3: True}
    release = asyncio.Event()

    def bars_now(
        chart: str, pane: int, series: str, resolution: str, times: list[int]
    ) -> tuple[bytes, int] | None:
        return (orjson.dumps([{"time": times[0], "value": 9}]), 1) if at_hand[times[0]] else None

    async def bars(
        chart: str, pane: int, series: str, resolution: str, times: list[int]
    ) -> tuple[bytes, int]:
        await release.wait()
        return orjson.dumps([{"time": times[0], "value": 7}]), 1

    hub = Hub(bus, HubLimits(), bars=bars, bars_now=bars_now)
    watcher, plain = hub.join("c", 0), hub.join("c", 0)
    hub.watch(watcher, 0, "s", "60")
    await bus.publish(upsert(1))
    assert [(m["version"], m.get("resolution")) for m in drain(watcher)] == [(1, None), (1, "60")]
    for version in (2, 3):
        await bus.publish(upsert(version))
    release.set()
    await asyncio.sleep(0.01)
    got = [(m["version"], m.get("resolution"), m["data"][0]["value"]) for m in drain(watcher)]
    assert got == [(2, None, 1.5), (3, None, 1.5), (2, "60", 7), (3, "60", 7)]
    assert [m.get("resolution") for m in drain(plain)] == [None, None, None]
    hub.unwatch(watcher, 0, "s", "60")
    await bus.publish(upsert(4))
    assert [m.get("resolution") for m in drain(watcher)] == [None]

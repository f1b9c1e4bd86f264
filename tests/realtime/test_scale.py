"""Two replicas (two gunicorn masters, two workers each) sharing PostgreSQL and Redis behave as
one server: every socket hears every change once and in order, reads see writes made anywhere,
``resume`` works on another worker, rate limits are shared, and a Redis outage is survived."""

from __future__ import annotations

import asyncio
import re
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from ..servers import (
    GunicornServer,
    PostgresServer,
    RedisServer,
    gunicorn_server,
    redis_server,
    restart_redis,
    wait_for_window_room,
)
from .conftest import candles, open_socket, receive

pytestmark = pytest.mark.slow

APP = "lightweight_charts_pro_backend.app_production:create_app()"
HISTORY_LIMIT = 20


@dataclass
class Cluster:
    redis: RedisServer
    replicas: tuple[GunicornServer, GunicornServer]

    def ws_url(self, replica: int, chart: str) -> str:
        return f"ws://127.0.0.1:{self.replicas[replica].port}/ws/charts/{chart}"

    def url(self, replica: int) -> str:
        return self.replicas[replica].url


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("scale")
    database_url = postgres.create_database(f"t_{uuid.uuid4().hex[:16]}")
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server(root / "redis"))
        env = {
            "ENVIRONMENT": "development",
            "ENABLE_PERSISTENCE": "true",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis.url,
            "ENABLE_AUTH": "false",
            "ENABLE_RATE_LIMITING": "true",
            "RATE_LIMIT_PER_MINUTE": "100000",
            "RATE_LIMIT_HISTORY_PER_MINUTE": str(HISTORY_LIMIT),
            "LOG_LEVEL": "WARNING",
            "WEBSOCKET_PING_INTERVAL_SECONDS": "30",
        }
        replicas = tuple(
            stack.enter_context(gunicorn_server(APP, root / f"replica-{i}", workers=2, env=env))
            for i in range(2)
        )
        yield Cluster(redis, replicas)  # type: ignore[arg-type]


def new_chart() -> str:
    return f"scale-{uuid.uuid4().hex[:12]}"


async def fresh_get(url: str) -> httpx.Response:
    """A GET on a new connection, so that any worker of the replica may take it."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        return await client.get(url, headers={"Connection": "close"})


async def write(url: str, chart: str, series: str, points: list[Any], *, replace: bool) -> None:
    """One change (one version) of the chart through ``url``."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        if replace:
            body = {"paneId": 0, "seriesType": "candlestick", "data": points}
            resp = await client.post(
                f"{url}/api/charts/{chart}/data/{series}",
                json=body,
                headers={"Connection": "close"},
            )
        else:
            resp = await client.patch(
                f"{url}/api/charts/{chart}/data/{series}",
                json={"data": points},
                headers={"Connection": "close"},
            )
    assert resp.status_code == 200, resp.text


async def updates_until(ws: ClientConnection, version: int, wait: float = 10.0) -> list[int]:
    """The versions of the ``data_update`` frames received up to ``version``."""
    seen: list[int] = []
    while not seen or seen[-1] < version:
        frame = await receive(ws, wait)
        assert frame["type"] == "data_update", frame
        seen.append(frame["version"])
    return seen


async def test_every_socket_on_every_worker_gets_each_update_once_in_order(
    cluster: Cluster,
) -> None:
    chart = new_chart()
    await write(cluster.url(0), chart, "s", candles(0, 5), replace=True)  # version 1
    sockets = []
    for i in range(16):
        ws, hello = await open_socket(cluster.ws_url(i % 2, chart))
        assert hello["version"] == 1
        sockets.append(ws)

    async def producer(replica: int, start: int) -> None:
        for i in range(12):
            await write(cluster.url(replica), chart, "s", candles(start + i * 60, 1), replace=False)

    # Two writers on two replicas at once: versions interleave, and an event can reach Redis
    # before the one with the previous version.
    await asyncio.gather(producer(0, 10_000), producer(1, 20_000))
    last = 1 + 24
    for ws in sockets:
        assert await updates_until(ws, last) == list(range(2, last + 1))
        await ws.send('{"type":"ping","requestId":"probe"}')
        reply = await receive(ws)
        assert (reply["type"], reply["requestId"]) == ("pong", "probe"), reply  # no duplicates
        await ws.close()

    ready = (await fresh_get(cluster.url(1) + "/health/ready")).json()
    assert ready["checks"]["redis"]["status"] == "ok", ready
    subscribers = set(re.findall(r"name=charts-bus-(\d+)", cluster.redis.command("CLIENT", "LIST")))
    workers = {str(pid) for replica in cluster.replicas for pid in replica.worker_pids()}
    assert subscribers == workers and len(workers) == 4, (subscribers, workers)


async def test_a_write_on_one_replica_is_read_back_on_the_other(cluster: Cluster) -> None:
    chart = new_chart()
    await write(cluster.url(0), chart, "s", candles(0, 3), replace=True)
    for replica in (0, 1):  # every worker of both replicas caches the chart
        for _ in range(4):
            assert (
                await fresh_get(f"{cluster.url(replica)}/api/charts/{chart}")
            ).status_code == 200
    for i in range(20):
        writer, reader = i % 2, 1 - i % 2
        point = {"time": 100_000 + i, "open": i, "high": i + 2, "low": i - 1, "close": i + 1}
        await write(cluster.url(writer), chart, "s", [point], replace=False)
        resp = await fresh_get(f"{cluster.url(reader)}/api/charts/{chart}/data/0/s")
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        assert len(data) == 4 + i and data[-1]["time"] == 100_000 + i, (i, data[-3:])
        if i % 4:
            continue
        history = await fresh_get(
            f"{cluster.url(reader)}/api/charts/{chart}/history/0/s?beforeTime=999999&count=2"
        )
        if history.status_code != 429:  # in case the limit's minute was used up elsewhere
            assert history.json()["data"][-1]["time"] == 100_000 + i


async def test_resume_on_another_worker_replays_the_missed_updates(cluster: Cluster) -> None:
    chart = new_chart()
    await write(cluster.url(0), chart, "s", candles(0, 3), replace=True)
    ws, hello = await open_socket(cluster.ws_url(0, chart))
    seen = hello["version"]
    await write(cluster.url(0), chart, "s", candles(1_000, 1), replace=False)
    assert await updates_until(ws, seen + 1) == [seen + 1]
    seen += 1
    await ws.close()

    for i in range(3):  # made while the client is away
        await write(cluster.url(1), chart, "s", candles(2_000 + i * 60, 1), replace=False)

    ws, hello = await open_socket(cluster.ws_url(1, chart))  # another replica: another worker
    assert hello["version"] == seen + 3
    await ws.send(orjson.dumps({"type": "resume", "sinceVersion": seen, "requestId": 7}).decode())
    frames = [await receive(ws) for _ in range(4)]
    assert [f["version"] for f in frames[:3]] == [seen + 1, seen + 2, seen + 3], frames
    assert all(f["type"] == "data_update" for f in frames[:3])
    assert frames[1]["data"][0]["time"] == 2_060
    assert frames[3]["type"] == "resumed" and frames[3]["replayed"] == 3, frames[3]
    await ws.close()


async def test_rate_limits_are_shared_by_the_replicas(cluster: Cluster) -> None:
    await wait_for_window_room(10)
    url = "{}/api/charts/nowhere/history/0/s"
    statuses = [
        (await fresh_get(url.format(cluster.url(i % 2)))).status_code
        for i in range(HISTORY_LIMIT + 10)
    ]
    # Per-worker limits would let all of them through (4 workers x the limit).
    assert statuses.count(429) >= 10, statuses
    assert set(statuses) <= {404, 429}, statuses


async def all_ready(cluster: Cluster, expect: int, rounds: int = 6) -> bool:
    """``rounds`` readiness probes in a row on each replica answer ``expect``."""
    for replica in (0, 1):
        for _ in range(rounds):
            resp = await fresh_get(cluster.url(replica) + "/health/ready")
            if resp.status_code != expect:
                return False
    return True


async def test_redis_killed_and_restarted_mid_stream(cluster: Cluster) -> None:
    chart = new_chart()
    await write(cluster.url(0), chart, "s", candles(0, 3), replace=True)
    version = 1
    sockets = [(await open_socket(cluster.ws_url(i % 2, chart)))[0] for i in range(4)]
    for i in range(3):
        await write(cluster.url(i % 2), chart, "s", candles(500 + i, 1), replace=False)
        version += 1
    for ws in sockets:
        assert (await updates_until(ws, version))[-1] == version

    cluster.redis.process.send_signal(signal.SIGKILL)
    cluster.redis.process.wait(timeout=10)
    restarted = None
    try:
        # REST keeps serving from the database while Redis is gone.
        for i in range(6):
            await write(cluster.url(i % 2), chart, "s", candles(900 + i, 1), replace=False)
            version += 1
            resp = await fresh_get(f"{cluster.url(1 - i % 2)}/api/charts/{chart}/data/0/s")
            assert resp.status_code == 200 and len(resp.json()["data"]) == 4 + 3 + i
        deadline = time.monotonic() + 10
        while not await all_ready(cluster, 503, rounds=2):
            assert time.monotonic() < deadline, "readiness never reported Redis down"
        body = (await fresh_get(cluster.url(0) + "/health/ready")).json()
        assert body["checks"]["redis"]["status"] == "error", body

        restarted = restart_redis(cluster.redis)
        deadline = time.monotonic() + 20
        while not await all_ready(cluster, 200):
            assert time.monotonic() < deadline, "the bus did not come back"
            await asyncio.sleep(0.2)

        for ws in sockets:
            kinds = []
            while "resync_required" not in kinds:
                kinds.append((await receive(ws, 10.0))["type"])
            assert set(kinds) <= {"data_update", "resync_required"}, kinds
        await write(cluster.url(1), chart, "s", candles(5_000, 1), replace=False)
        version += 1
        for ws in sockets:
            frame = await receive(ws, 10.0)
            while frame["type"] != "data_update" or frame["version"] < version:
                frame = await receive(ws, 10.0)
            assert frame["version"] == version
            await ws.close()
        for replica in cluster.replicas:
            assert replica.process.poll() is None
            assert len(replica.worker_pids()) == 2
    finally:
        if restarted is not None:
            restarted.terminate()
            restarted.wait(timeout=10)

"""The deployment the guide recommends, as users run it: two replicas (gunicorn masters reading the
project's ``gunicorn.conf.py``, two workers each) over one PostgreSQL and one Redis.

Reads are served from each worker's cache without asking the database while the event bus is
healthy; these tests check what that must never cost: a read carrying a write's ``min_version``
sees the write wherever it lands, even one the bus never announced; reads stay correct while Redis
is down; the shared history limit lets through no more than its documented overshoot; a spoofed
``X-Forwarded-For`` from loopback does not escape it; a killed worker leaves the rest serving.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from lightweight_charts_pro_backend.app import create_app
from lightweight_charts_pro_backend.config import Settings

from ..servers import (
    GunicornServer,
    PostgresServer,
    RedisServer,
    free_port,
    gunicorn_server,
    redis_server,
    restart_redis,
    wait_for_window_room,
)

pytestmark = pytest.mark.slow

APP = "lightweight_charts_pro_backend.app_production:create_app()"
CONFIG = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
HISTORY_LIMIT = 30
REPLICAS = 2
WORKERS = 2


@dataclass
class Topology:
    redis: RedisServer
    replicas: tuple[GunicornServer, ...]
    database_url: str
    env: dict[str, str]

    def url(self, replica: int) -> str:
        return self.replicas[replica % len(self.replicas)].url


def _env(database_url: str, redis: RedisServer) -> dict[str, str]:
    return {
        "ENVIRONMENT": "development",
        "ENABLE_PERSISTENCE": "true",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis.url,
        "ENABLE_AUTH": "false",
        "ENABLE_RATE_LIMITING": "true",
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "RATE_LIMIT_HISTORY_PER_MINUTE": str(HISTORY_LIMIT),
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture(scope="module")
def topology(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[Topology]:
    root = tmp_path_factory.mktemp("topology")
    database_url = postgres.create_database(f"t_{uuid.uuid4().hex[:16]}")
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server(root / "redis"))
        env = _env(database_url, redis)
        replicas = tuple(
            stack.enter_context(
                gunicorn_server(APP, root / f"replica-{i}", workers=WORKERS, env=env, config=CONFIG)
            )
            for i in range(REPLICAS)
        )
        yield Topology(redis, replicas, database_url, env)


async def fresh(method: str, url: str, **kwargs: object) -> httpx.Response:
    """One request on a connection of its own, so that the workers share the requests."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        headers = {"Connection": "close", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return await client.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]


def new_chart() -> str:
    return f"topo-{uuid.uuid4().hex[:12]}"


async def put_line(url: str, chart: str, points: int) -> int:
    data = [{"time": t, "value": float(t)} for t in range(1, points + 1)]
    resp = await fresh(
        "POST",
        f"{url}/api/charts/{chart}/data/s",
        json={"paneId": 0, "seriesType": "line", "data": data},
    )
    assert resp.status_code == 200, resp.text
    version: int = resp.json()["version"]
    assert resp.headers["x-chart-version"] == str(version)
    return version


async def newest_point(url: str, chart: str, min_version: int | None = None) -> dict[str, object]:
    query = "" if min_version is None else f"?min_version={min_version}"
    resp = await fresh("GET", f"{url}/api/charts/{chart}/data/0/s{query}")
    assert resp.status_code == 200, resp.text
    point: dict[str, object] = resp.json()["data"][-1]
    return point


async def test_the_history_limit_overshoots_by_no_more_than_its_bound(
    topology: Topology,
) -> None:
    # First in the module: the other tests read through /data, which the history limit skips.
    await wait_for_window_room(10)
    statuses = [
        (await fresh("GET", topology.url(i) + "/api/charts/nowhere/history/0/s")).status_code
        for i in range(HISTORY_LIMIT + 20)
    ]
    assert set(statuses) == {404, 429}, statuses
    processes = REPLICAS * WORKERS
    bound = processes * (HISTORY_LIMIT // (4 * processes))
    first_refusal = statuses.index(429) + 1
    assert HISTORY_LIMIT < first_refusal <= 36, statuses
    assert HISTORY_LIMIT <= statuses.count(404) <= HISTORY_LIMIT + bound, statuses


@asynccontextmanager
async def unannounced_writer(topology: Topology) -> AsyncIterator[httpx.AsyncClient]:
    """A process writing the same database whose Redis is unreachable: none of its changes
    reaches the replicas' event bus (as if it died between commit and publish)."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        enable_persistence=True,
        database_url=topology.database_url,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        log_level="WARNING",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://writer") as client:
            yield client


async def test_a_read_with_min_version_sees_a_write_the_bus_never_announced(
    topology: Topology,
) -> None:
    chart = new_chart()
    await put_line(topology.url(0), chart, 50)
    for i in range(12):  # every worker has the chart cached and current
        assert (await newest_point(topology.url(i), chart))["time"] == 50
    async with unannounced_writer(topology) as writer:
        resp = await writer.patch(
            f"/api/charts/{chart}/data/s", json={"paneId": 0, "data": [{"time": 51, "value": 7}]}
        )
        assert resp.status_code == 200, resp.text
        version = resp.json()["version"]
    for i in range(12):
        assert await newest_point(topology.url(i), chart, version) == {"time": 51, "value": 7.0}
    # Without the token a worker may serve its cache until it compares versions with the
    # database (every few seconds): then every worker has the write.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        seen = [(await newest_point(topology.url(i), chart))["time"] for i in range(8)]
        if seen == [51] * 8:
            break
        await asyncio.sleep(0.5)
    assert seen == [51] * 8


async def test_a_write_on_one_replica_is_read_with_its_token_on_the_other(
    topology: Topology,
) -> None:
    chart = new_chart()
    await put_line(topology.url(0), chart, 10)
    for i in range(40):
        writer, reader = topology.url(i), topology.url(i + 1)
        resp = await fresh(
            "PATCH",
            f"{writer}/api/charts/{chart}/data/s",
            json={"paneId": 0, "data": [{"time": 11 + i, "value": i}]},
        )
        assert resp.status_code == 200, resp.text
        point = await newest_point(reader, chart, resp.json()["version"])
        assert point == {"time": 11 + i, "value": float(i)}
    too_new = await fresh("GET", f"{topology.url(1)}/api/charts/{chart}/data/0/s?min_version=-1")
    assert too_new.status_code == 422


async def test_a_killed_worker_leaves_the_others_serving(topology: Topology) -> None:
    chart = new_chart()
    await put_line(topology.url(0), chart, 2000)
    victim = topology.replicas[0].worker_pids()[0]
    statuses = []
    async with httpx.AsyncClient(timeout=10.0) as client:
        for i in range(300):
            if i == 100:
                os.kill(victim, signal.SIGKILL)
            url = f"{topology.url(i)}/api/charts/{chart}/data/0/s"
            try:
                resp = await client.get(url)
            except httpx.TransportError:
                resp = await client.get(url)  # one retry of a dropped keep-alive connection
            statuses.append(resp.status_code)
    assert statuses == [200] * 300
    assert victim not in topology.replicas[0].worker_pids()


async def test_reads_stay_correct_while_redis_is_down(topology: Topology) -> None:
    # Last in the module: it restarts Redis.
    chart = new_chart()
    await put_line(topology.url(0), chart, 20)
    for i in range(8):
        assert (await newest_point(topology.url(i), chart))["time"] == 20
    topology.redis.process.kill()
    topology.redis.process.wait()
    restarted = None
    try:
        await asyncio.sleep(3.0)  # the buses notice; their heartbeats stop coming back
        for i in range(10):
            resp = await fresh(
                "PATCH",
                f"{topology.url(i)}/api/charts/{chart}/data/s",
                json={"paneId": 0, "data": [{"time": 21 + i, "value": i}]},
            )
            assert resp.status_code == 200, resp.text
            # No token: the reader checks its cache against the database while the bus is down.
            point = await newest_point(topology.url(i + 1), chart)
            assert point == {"time": 21 + i, "value": float(i)}
        restarted = restart_redis(topology.redis)
        await asyncio.sleep(3.0)  # the buses reconnect and hear their heartbeats again
        for i in range(10):
            resp = await fresh(
                "PATCH",
                f"{topology.url(i)}/api/charts/{chart}/data/s",
                json={"paneId": 0, "data": [{"time": 31 + i, "value": i}]},
            )
            version = resp.json()["version"]
            point = await newest_point(topology.url(i + 1), chart, version)
            assert point == {"time": 31 + i, "value": float(i)}
    finally:
        if restarted is not None:
            restarted.terminate()
            restarted.wait(timeout=10)


@pytest.mark.parametrize("trusted", [False, True])
def test_a_spoofed_forwarded_for_from_loopback_is_believed_only_when_trusted(
    tmp_path: Path, trusted: bool
) -> None:
    env = {
        "ENVIRONMENT": "development",
        "ENABLE_RATE_LIMITING": "true",
        "RATE_LIMIT_PER_MINUTE": "5",
        "LOG_LEVEL": "WARNING",
        **({"TRUSTED_PROXIES": "127.0.0.1"} if trusted else {}),
    }
    with gunicorn_server(APP, tmp_path, workers=1, env=env, config=CONFIG) as server:
        statuses = [
            httpx.get(
                server.url + "/api/charts",
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
                timeout=10.0,
            ).status_code
            for i in range(10)
        ]
    if trusted:
        assert statuses == [200] * 10  # ten clients, one request each
    else:
        assert statuses.count(429) >= 4, statuses  # one client, whatever it claims


def test_a_worker_told_to_stop_finishes_the_request_in_flight(tmp_path: Path) -> None:
    env = {"ENVIRONMENT": "development", "ENABLE_RATE_LIMITING": "false", "LOG_LEVEL": "WARNING"}
    data = [{"time": t, "value": float(t)} for t in range(1, 100_001)]
    body = orjson.dumps({"paneId": 0, "seriesType": "line", "data": data})
    parts = [body[i : i + 100_000] for i in range(0, len(body), 100_000)]
    started = threading.Event()

    def slowly() -> Iterator[bytes]:
        """The body over about a second: the request is in flight when the signal comes."""
        for number, part in enumerate(parts):
            yield part
            if number == 0:
                started.set()
            time.sleep(1.0 / len(parts))

    with gunicorn_server(APP, tmp_path, workers=1, env=env, config=CONFIG) as server:
        worker = server.worker_pids()[0]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            upload = pool.submit(
                httpx.post,
                server.url + "/api/charts/big/data/s",
                content=slowly(),
                headers={"Content-Type": "application/json"},
                timeout=60.0,
            )
            assert started.wait(10)
            os.kill(worker, signal.SIGTERM)
            answer = upload.result()
    assert answer.status_code == 200, answer.text
    assert answer.json()["count"] == 100_000

"""Crashes and outages: a 2xx survives kill -9 of the database or of the app; while the
database is down writes answer 503 and readiness fails; the service recovers by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.charts.test_persistence import JSON_BODY, serve
from tests.servers import MariaDBServer, PostgresServer, ServerProcess, free_port, uvicorn_command

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CANDLES = [
    {"time": 1_600_000_000 + 60 * i, "open": 10, "high": 11, "low": 9, "close": 10.5}
    for i in range(2000)
]
LIVE_BAR = {"time": 1_600_000_000 + 60 * 2000, "open": 10, "high": 12, "low": 10, "close": 12}


@pytest.fixture(scope="module", params=["postgresql", "mariadb"])
def private_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A server of this module's own, since the tests stop and kill it."""
    server: ServerProcess = PostgresServer() if request.param == "postgresql" else MariaDBServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


def new_database(server: ServerProcess, name: str) -> str:
    if not server.running():
        server.start()
    assert isinstance(server, PostgresServer | MariaDBServer)
    return server.create_database(f"{name}_{os.getpid()}_{time.monotonic_ns() % 10**9}")


async def test_a_write_answered_2xx_survives_kill_9_of_the_database(
    private_server: ServerProcess,
) -> None:
    url = new_database(private_server, "kill")
    async with serve(url) as (client, _):
        replaced = await client.post(
            "/api/charts/k/data/s",
            content=orjson.dumps({"seriesType": "candlestick", "data": CANDLES}),
        )
        assert replaced.status_code == 200
        patched = await client.patch(
            "/api/charts/k/data/s", content=orjson.dumps({"data": [LIVE_BAR]})
        )
        assert patched.status_code == 200
        private_server.kill()  # right after the 2xx
    private_server.start()
    async with serve(url) as (client, _):
        data = (await client.get("/api/charts/k/history/0/s?count=10000")).json()
        assert data["totalCount"] == len(CANDLES) + 1
        assert data["data"][-1] == LIVE_BAR
        assert data["data"][:-1] == CANDLES


@pytest.mark.parametrize("cache_mb", [256, 0], ids=["cached", "uncached"])
async def test_while_the_database_is_down_writes_get_503_and_the_service_recovers(
    private_server: ServerProcess, cache_mb: int
) -> None:
    url = new_database(private_server, "outage")
    async with serve(url, series_cache_mb=cache_mb) as (client, _):
        await client.post(
            "/api/charts/o/data/s",
            content=orjson.dumps({"seriesType": "candlestick", "data": CANDLES[:100]}),
        )
        before = (await client.get("/api/charts/o/data/0/s")).json()
        private_server.stop()

        refused = await client.patch(
            "/api/charts/o/data/s", content=orjson.dumps({"data": [LIVE_BAR]})
        )
        assert refused.status_code == 503
        assert refused.json()["errorCode"] == "DATABASE_UNAVAILABLE"
        assert "database is unavailable" in refused.json()["detail"]
        assert (await client.post("/api/charts/another")).status_code == 503
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"]["status"] == "error"
        series = await client.get("/api/charts/o/data/0/s")
        if cache_mb:  # what is in memory stays readable
            assert series.json() == before
        else:  # a series read from the database is not
            assert series.status_code == 503
            assert series.json()["errorCode"] == "DATABASE_UNAVAILABLE"

        private_server.start()
        for _ in range(100):  # bounded: at most 100 tries, 0.1 s apart
            accepted = await client.patch(
                "/api/charts/o/data/s", content=orjson.dumps({"data": [LIVE_BAR]})
            )
            if accepted.status_code != 503:
                break
            await asyncio.sleep(0.1)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["totalCount"] == 101
        assert (await client.get("/health/ready")).status_code == 200
        assert (await client.post("/api/charts/another")).status_code == 201
        history = await client.get("/api/charts/o/history/0/s?before_time=1600003000&count=3")
        assert history.json()["chunkInfo"]["startIndex"] == 47

        # a restart between two requests: pooled connections are dead, nobody notices
        private_server.stop()
        private_server.start()
        history = await client.get("/api/charts/o/history/0/s?before_time=1600003000&count=3")
        assert history.status_code == 200
        assert history.json()["chunkInfo"]["startIndex"] == 47
        assert (await client.post("/api/charts/third")).status_code == 201
    async with serve(url) as (client, _):
        data = (await client.get("/api/charts/o/data/0/s")).json()
        assert data["totalCount"] == 101
        assert data["data"][-1] == LIVE_BAR


async def test_a_read_with_a_newer_min_version_gets_503_not_older_data_while_it_is_down(
    private_server: ServerProcess,
) -> None:
    url = new_database(private_server, "token")
    # Two processes with no bus between them: the reader's copy stays at the first version.
    async with serve(url) as (writer, _), serve(url) as (reader, _):
        series = {"seriesType": "candlestick", "data": CANDLES[:120], "market": {"symbol": "O"}}
        await writer.post("/api/charts/o/data/s", content=orjson.dumps(series))
        reads = {
            "rest": "/api/charts/o/history/0/s?resolution=60&count=5",
            "udf": "/udf/history?symbol=o~0~s&resolution=60&to=1700000000&countback=5",
        }
        cached = {name: (await reader.get(path)).json() for name, path in reads.items()}
        patched = await writer.patch(
            "/api/charts/o/data/s", content=orjson.dumps({"data": [LIVE_BAR]})
        )
        version = patched.json()["version"]
        private_server.stop()

        for name, path in reads.items():
            refused = await reader.get(f"{path}&min_version={version}")
            assert refused.status_code == 503, (name, refused.text)
            assert refused.json()["errorCode"] == "DATABASE_UNAVAILABLE"
            assert (await reader.get(path)).json() == cached[name]  # no token: its copy
        assert refused.json()["s"] == "error"  # the UDF adapter's refusal

        private_server.start()
        for _ in range(100):  # bounded: at most 100 tries, 0.1 s apart
            answered = await reader.get(f"{reads['udf']}&min_version={version}")
            if answered.status_code != 503:
                break
            await asyncio.sleep(0.1)
        assert answered.status_code == 200, answered.text
        assert answered.json()["t"][-1] == LIVE_BAR["time"] // 3600 * 3600


async def test_a_worker_started_while_the_database_is_down_waits_for_it(
    private_server: ServerProcess,
) -> None:
    # Under gunicorn a worker that exits at startup stops the whole server: one worker
    # restarted during an outage would take every other worker of the replica down with it.
    url = new_database(private_server, "boot")
    private_server.stop()

    async def boot() -> int:
        async with serve(url) as (client, _):
            return (await client.post("/api/charts/booted")).status_code

    booting = asyncio.create_task(boot())
    await asyncio.sleep(1.5)
    assert not booting.done()  # still waiting, not failed
    private_server.start()
    assert await asyncio.wait_for(booting, 30) == 201


def _start_app(url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "ENABLE_PERSISTENCE": "true",
        "DATABASE_URL": url,
        "ENABLE_RATE_LIMITING": "false",
        "PYTHONPATH": str(ROOT),
    }
    log = workdir / f"app-{port}.log"
    with open(log, "wb") as output:
        proc = subprocess.Popen(
            uvicorn_command(port),
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the app did not answer /health within 60 s")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_a_write_answered_2xx_survives_kill_9_of_the_app(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    from tests.conftest import fresh_database_url

    url = fresh_database_url(request, backend, tmp_path)
    proc, port = _start_app(url, tmp_path)
    try:
        base = f"http://127.0.0.1:{port}/api/charts/crash/data"
        replaced = httpx.post(
            f"{base}/s",
            content=orjson.dumps({"seriesType": "candlestick", "data": CANDLES}),
            headers=JSON_BODY,
            timeout=60,
        )
        assert replaced.status_code == 200
        patched = httpx.patch(
            f"{base}/s", content=orjson.dumps({"data": [LIVE_BAR]}), headers=JSON_BODY, timeout=60
        )
        assert patched.status_code == 200
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # right after the 2xx, no shutdown of any kind
        proc.wait(timeout=30)
    proc, port = _start_app(url, tmp_path)
    try:
        history = httpx.get(
            f"http://127.0.0.1:{port}/api/charts/crash/history/0/s?count=10000", timeout=60
        ).json()
        assert history["totalCount"] == len(CANDLES) + 1
        assert history["data"] == [*CANDLES, LIVE_BAR]
    finally:
        proc.terminate()
        proc.wait(timeout=30)

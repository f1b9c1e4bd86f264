"""The database restarting, crashing or dropping its connections under load, against a real
uvicorn process: every answer, REST or WebSocket, is a success or a retryable refusal (503 with
``Retry-After`` and ``DATABASE_UNAVAILABLE``; over a socket an error frame with that code, or a
close with 1013), never a 500 or an ``INTERNAL_ERROR``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .realtime.conftest import ServerProcess, start_server
from .servers import MariaDBServer, PostgresServer

pytestmark = pytest.mark.slow

CHARTS = ("o1", "o2")
FIRST_TIME = 1_700_000_000
#: How long the load runs before the first fault and after the last one.
WARMUP_SECONDS = 1.5
SETTLE_SECONDS = 3.0


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A server of this module's own: the test restarts and kills it."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def mariadb_server() -> Iterator[MariaDBServer]:
    server = MariaDBServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@dataclass
class Answers:
    """Everything the server answered while the faults went on."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: What should not have been answered, by kind of answer, with the first example.
    wrong: dict[str, str] = field(default_factory=dict)
    frames: Counter[tuple[str, str]] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    #: The status of each kind of request last answered.
    last: dict[str, int] = field(default_factory=dict)

    def http(self, kind: str, resp: httpx.Response) -> None:
        self.statuses[(kind, resp.status_code)] += 1
        self.last[kind] = resp.status_code
        if 200 <= resp.status_code < 300:
            return
        body = resp.text[:300]
        if resp.status_code != 503:
            self.note(f"{kind}: {resp.status_code}", body)
        elif resp.json().get("errorCode") != "DATABASE_UNAVAILABLE":
            self.note(f"{kind}: 503 with another error code", body)
        elif not resp.headers.get("retry-after", "").isdigit():
            self.note(f"{kind}: 503 without Retry-After", body)

    def note(self, what: str, example: str) -> None:
        self.wrong.setdefault(what, example)

    def frame(self, sent: str, message: dict[str, Any]) -> None:
        code = message.get("errorCode")
        kind = str(message.get("type"))
        self.frames[(kind, str(code))] += 1
        self.last["socket " + sent] = 503 if code is not None else 200
        if code is not None and code != "DATABASE_UNAVAILABLE":
            self.note(f"socket {kind} {code}", f"{message!r:.300}")
        if code == "DATABASE_UNAVAILABLE" and not isinstance(message.get("retryAfter"), int):
            self.note(f"socket {kind} without retryAfter", f"{message!r:.300}")

    def close(self, code: int | None, reason: str | None) -> None:
        self.closes[code or 1006] += 1
        if code != 1013:
            self.note(f"socket closed with {code}", f"{reason!r}")


def candle(i: int) -> dict[str, Any]:
    return {"time": FIRST_TIME + 60 * i, "open": 10, "high": 12, "low": 9, "close": 11}


async def load(server: ServerProcess, answers: Answers, stop: asyncio.Event) -> None:
    """Writes, reads and socket frames over every kind of route, until ``stop``."""
    times = itertools.count(100)

    async def repeat(kind: str, request: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> None:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30.0) as client:
            while not stop.is_set():
                answers.http(kind, await request(client))
                await asyncio.sleep(0.01)

    def upsert(chart: str) -> Callable[[httpx.AsyncClient], Awaitable[Any]]:
        def send(client: httpx.AsyncClient) -> Awaitable[Any]:
            body = {"data": [candle(next(times))]}
            return client.patch(f"/api/charts/{chart}/data/s", json=body)

        return send

    async def replace(client: httpx.AsyncClient) -> httpx.Response:
        body = {"seriesType": "candlestick", "data": [candle(i) for i in range(50)]}
        return await client.post(f"/api/charts/{CHARTS[1]}/data/r", json=body)

    async def annotate(client: httpx.AsyncClient) -> httpx.Response:
        body = {"kind": "vertical_line", "points": [{"time": FIRST_TIME}], "style": {}}
        return await client.post(f"/api/charts/{CHARTS[0]}/annotations", json=body)

    async def save_layout(client: httpx.AsyncClient) -> httpx.Response:
        form = {"name": "l", "content": "{}", "symbol": "s", "resolution": "1"}
        return await client.post("/saveload/1.1/charts?client=c&user=u", data=form)

    def get(path: str) -> Callable[[httpx.AsyncClient], Awaitable[Any]]:
        return lambda client: client.get(path)

    chart = CHARTS[0]
    tasks = [
        repeat("upsert", upsert(CHARTS[0])),
        repeat("upsert", upsert(CHARTS[1])),
        repeat("replace", replace),
        repeat("create", lambda client: client.post(f"/api/charts/{chart}", json={"a": 1})),
        repeat("annotate", annotate),
        repeat("save layout", save_layout),
        repeat("history", get(f"/api/charts/{chart}/history/0/s?count=20")),
        repeat("history before", get(f"/api/charts/{chart}/history/0/s?before_time=1700006000")),
        repeat("chart", get(f"/api/charts/{chart}")),
        repeat("series", get(f"/api/charts/{CHARTS[1]}/data/0/r")),
        repeat("charts", get("/api/charts")),
        repeat("annotations", get(f"/api/charts/{chart}/annotations")),
        repeat("layouts", get("/saveload/1.1/charts?client=c&user=u")),
        socket_frames(server, answers, stop),
    ]
    await asyncio.gather(*tasks)


async def socket_frames(server: ServerProcess, answers: Answers, stop: asyncio.Event) -> None:
    """One socket asking for snapshots and history in turn, reconnecting when closed."""
    frames = itertools.cycle(
        [
            {"type": "get_initial_data"},
            {"type": "get_initial_data", "paneId": 0, "seriesId": "s"},
            {"type": "request_history", "paneId": 0, "seriesId": "s", "count": 20},
            {"type": "request_history", "seriesId": "s", "beforeTime": FIRST_TIME + 6000},
        ]
    )
    ids = itertools.count()
    while not stop.is_set():
        try:
            async with connect(server.ws_url(CHARTS[0]), open_timeout=30) as ws:
                while not stop.is_set():
                    request_id = next(ids)
                    frame = next(frames)
                    await ws.send(orjson.dumps({**frame, "requestId": request_id}).decode())
                    other: list[str] = []
                    try:
                        while True:
                            async with asyncio.timeout(20):
                                message = orjson.loads(await ws.recv())
                            if message.get("requestId") == request_id:
                                answers.frame(str(frame["type"]), message)
                                break
                            other.append(str(message)[:200])
                    except TimeoutError:
                        answers.note("no answer to a socket frame", f"got {other[-5:]}")
                        break
                    await asyncio.sleep(0.01)
        except ConnectionClosed as closed:
            close = closed.rcvd
            answers.close(close.code if close else None, close.reason if close else None)
        except InvalidStatus as refused:
            answers.note(f"socket handshake answered {refused.response.status_code}", "")
        await asyncio.sleep(0.05)


def terminate_connections(database: PostgresServer | MariaDBServer, name: str) -> None:
    """Drop every connection of the service, as a failover or an administrator does."""
    if isinstance(database, PostgresServer):
        database.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        return
    ids = database.sql(f"SELECT id FROM information_schema.processlist WHERE db = '{name}'")
    for line in ids.split():
        with contextlib.suppress(Exception):
            database.sql(f"KILL {int(line)}")


@pytest.mark.parametrize(
    ("driver", "cache_mb"),
    [
        ("postgresql+asyncpg", 0),
        ("postgresql+asyncpg", 64),
        ("mysql+aiomysql", 0),
        ("mysql+asyncmy", 64),
    ],
    ids=["asyncpg-uncached", "asyncpg-cached", "aiomysql-uncached", "asyncmy-cached"],
)
async def test_a_database_restart_under_load_is_answered_503_never_500(
    request: pytest.FixtureRequest, tmp_path: Path, driver: str, cache_mb: int
) -> None:
    database: PostgresServer | MariaDBServer = request.getfixturevalue(
        "postgres_server" if driver.startswith("postgresql") else "mariadb_server"
    )
    if not database.running():
        database.start()
    name = f"outage_{cache_mb}_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    if isinstance(database, PostgresServer):
        database.psql(f'CREATE DATABASE "{name}"')
    else:
        database.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    url = database.url(name, driver)
    server = start_server(
        tmp_path / "server",
        enable_persistence="true",
        database_url=url,
        series_cache_mb=cache_mb,
        database_connect_timeout_seconds=2,
        database_pool_timeout_seconds=2,
    )
    try:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30.0) as client:
            for chart, series in ((CHARTS[0], "s"), (CHARTS[1], "s"), (CHARTS[1], "r")):
                body = {"seriesType": "candlestick", "data": [candle(i) for i in range(100)]}
                resp = await client.post(f"/api/charts/{chart}/data/{series}", json=body)
                assert resp.status_code == 200, resp.text
        answers = Answers()
        stop = asyncio.Event()
        running = asyncio.create_task(load(server, answers, stop))
        faults = [
            lambda: (database.stop(), database.start()),
            lambda: (database.kill(), database.start()),
            lambda: terminate_connections(database, name),
        ]
        for fault in faults:
            await asyncio.sleep(WARMUP_SECONDS)
            await asyncio.to_thread(fault)
        await asyncio.sleep(SETTLE_SECONDS)
        stop.set()
        async with asyncio.timeout(60):
            await running
    finally:
        server.stop()
    report = f"{dict(answers.statuses)}\n{dict(answers.frames)}\n{dict(answers.closes)}"
    wrong = "\n".join(f"{what}: {example}" for what, example in answers.wrong.items())
    assert not answers.wrong, wrong + "\n" + report + "\n" + server.log()
    # The faults were felt, and the service came back for every kind of request.
    assert any(status == 503 for _, status in answers.statuses), report
    assert all(status < 300 for status in answers.last.values()), str(answers.last)
    assert len(answers.last) == 14, str(answers.last)
    assert "Unhandled" not in server.log(), server.log()

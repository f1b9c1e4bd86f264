"""A socket's snapshot (``get_initial_data``) reports the version its data was read at, while
writes land on the chart: it holds every write up to that version and none after, so a client
that follows it with the live updates (or passes it as ``minVersion`` or to ``resume``) neither
misses an update nor applies one twice.

Series read from the database (``SERIES_CACHE_MB=0``) make the snapshot wait between its reads,
which is when writes land in between.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ..conftest import fresh_database_url
from ..servers import redis_server
from .conftest import ServerProcess, open_socket, receive

pytestmark = pytest.mark.slow

CHART = "snap"
SERIES = ("a", "b", "c")
#: A minute's start: bars at resolution "1" have the times of the points.
FIRST_TIME = 1_699_999_980


@dataclass
class Snapshot:
    kind: str
    version: int
    times: dict[str, set[int]]


@pytest.fixture(params=["sqlite", "postgresql", "postgresql-two-servers"])
def servers(
    request: pytest.FixtureRequest, make_server: Any, tmp_path: Path
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """The server written to and the server read from: the same one, or (``-two-servers``) two
    sharing the database and a Redis event bus, so that the reader's database holds writes it
    has not heard of yet."""
    backend = str(request.param)
    settings: dict[str, object] = {
        "enable_persistence": "true",
        "database_url": fresh_database_url(request, backend.removesuffix("-two-servers"), tmp_path),
        "series_cache_mb": 0,
        "chunk_size_threshold": 10_000,
    }
    if not backend.endswith("-two-servers"):
        server = make_server(**settings)
        yield server, server
        return
    with redis_server(tmp_path / "redis") as redis:
        writer = make_server(**settings, redis_url=redis.url)
        yield writer, make_server(**settings, redis_url=redis.url)
        writer.stop()


async def test_a_snapshot_holds_exactly_the_writes_up_to_its_version(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    server, reading = servers
    written: dict[int, tuple[str, int]] = {}  # version -> the series and time it wrote
    times = itertools.count(FIRST_TIME + 60, 60)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30.0) as http:
        for series in SERIES:
            body = {"seriesType": "line", "data": [{"time": FIRST_TIME, "value": 0}]}
            resp = await http.post(f"/api/charts/{CHART}/data/{series}", json=body)
            assert resp.status_code == 200, resp.text
        baseline = resp.json()["version"]
        done = asyncio.Event()

        async def writer(series: str) -> None:
            while not done.is_set():
                time = next(times)
                body = {"data": [{"time": time, "value": 1}]}
                resp = await http.patch(f"/api/charts/{CHART}/data/{series}", json=body)
                assert resp.status_code == 200, resp.text
                written[resp.json()["version"]] = (series, time)

        snapshots: list[Snapshot] = []

        async def reader() -> None:
            ws, _ = await open_socket(reading.ws_url(CHART))
            frames = itertools.cycle(
                [{"type": "get_initial_data"}]
                + [{"type": "get_initial_data", "seriesId": s} for s in SERIES]
                + [{"type": "get_initial_data", "seriesId": "a", "resolution": "1"}]
            )
            for request_id in range(60):
                frame = next(frames)
                await ws.send(orjson.dumps({**frame, "requestId": request_id}).decode())
                while (answer := await receive(ws, 30.0)).get("requestId") != request_id:
                    pass
                assert answer["type"] == "initial_data_response", answer
                if "seriesId" in frame:
                    got = {answer["seriesId"]: {p["time"] for p in answer["data"]}}
                else:
                    panes = answer["panes"]["0"]
                    got = {s: {p["time"] for p in panes[s]["data"]} for s in SERIES}
                kind = f"{frame.get('seriesId', 'chart')} {frame.get('resolution', '')}"
                snapshots.append(Snapshot(kind, answer["version"], got))
            await ws.close()
            done.set()

        await asyncio.gather(reader(), *(writer(s) for s in SERIES))

    assert len(written) > 20
    assert sorted(written) == list(range(baseline + 1, baseline + 1 + len(written)))
    wrong = []
    for snapshot in snapshots:
        for series, got in snapshot.times.items():
            expected = {FIRST_TIME} | {
                time
                for version, (writer_series, time) in written.items()
                if writer_series == series and version <= snapshot.version
            }
            if got != expected:
                version_of = {time: v for v, (s, time) in written.items() if s == series}
                late = sorted(version_of.get(t, -1) for t in got - expected)
                lacking = sorted(version_of.get(t, 0) for t in expected - got)
                wrong.append(
                    f"{snapshot.kind} snapshot at version {snapshot.version}: series {series} "
                    f"holds versions {late} after it, lacks versions {lacking} (0: the first point)"
                )
    assert not wrong, "\n".join(wrong[:10]) + f"\n({len(wrong)} of {len(snapshots)} snapshots)"

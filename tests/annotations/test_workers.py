"""Two gunicorn workers sharing a database and Redis: every socket, on either worker, receives
each annotation change it may see once, in the same order, whichever worker made it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from ..conftest import BACKENDS, fresh_database_url
from ..realtime.conftest import open_socket, receive
from ..servers import GunicornServer, gunicorn_server, redis_server
from .conftest import SECRET, auth, marker, trend_line

pytestmark = pytest.mark.slow

APP = "lightweight_charts_pro_backend.app:create_app()"
ALICE, BOB = auth("alice"), auth("bob")


@pytest.fixture(params=BACKENDS)
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GunicornServer]:
    url = fresh_database_url(request, str(request.param), tmp_path)
    with redis_server(tmp_path / "redis") as redis:
        env = {
            "ENABLE_PERSISTENCE": "true",
            "DATABASE_URL": url,
            "REDIS_URL": redis.url,
            "ENABLE_AUTH": "true",
            "SECRET_KEY": SECRET,
            "LOG_LEVEL": "WARNING",
        }
        with gunicorn_server(APP, tmp_path / "gunicorn", workers=2, env=env) as server:
            yield server


async def call(server: GunicornServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """On a new connection, so that either worker may take it."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as client:
        return await client.request(method, path, headers={**kwargs.pop("headers")}, **kwargs)


async def test_annotation_changes_reach_every_allowed_socket_once_in_order(
    workers: GunicornServer,
) -> None:
    assert (await call(workers, "POST", "/api/charts/w", headers=ALICE)).status_code == 201
    ws_url = f"ws://127.0.0.1:{workers.port}/ws/charts/w?token="
    sockets: list[tuple[str, ClientConnection]] = []
    for i in range(10):
        who, headers = ("alice", ALICE) if i % 2 == 0 else ("bob", BOB)
        ws, _ = await open_socket(ws_url + headers["Authorization"].split()[1])
        sockets.append((who, ws))

    async def draw(headers: dict[str, str], bodies: list[dict[str, Any]]) -> list[str]:
        ids = []
        for body in bodies:
            response = await call(
                workers, "POST", "/api/charts/w/annotations", json=body, headers=headers
            )
            assert response.status_code == 201, response.text
            ids.append(response.json()["annotationId"])
        return ids

    # Both users draw at once, through both workers; then each changes what it drew.
    markers = [marker(60 * i, visibility="private" if i % 3 == 0 else "chart") for i in range(9)]
    alice_ids, bob_ids = await asyncio.gather(
        draw(ALICE, markers), draw(BOB, [trend_line(100 * i, 100 * i + 50) for i in range(6)])
    )

    async def edit(headers: dict[str, str], ids: list[str]) -> None:
        for annotation_id in ids:
            response = await call(
                workers, "PATCH", f"/api/charts/w/annotations/{annotation_id}",
                json={"version": 1, "text": "edited"}, headers=headers,
            )  # fmt: skip
            assert response.status_code == 200, response.text

    await asyncio.gather(edit(ALICE, alice_ids), edit(BOB, bob_ids))
    private = {alice_ids[i] for i in range(0, 9, 3)}
    total = 2 * (9 + 6)
    received: dict[str, list[list[tuple[str, str, int]]]] = {"alice": [], "bob": []}
    for who, ws in sockets:
        expected = total if who == "alice" else total - 2 * len(private)
        frames = [await receive(ws, 10.0) for _ in range(expected)]
        assert all(f["type"] == "annotation_update" for f in frames), frames
        received[who].append([(f["op"], f["annotationId"], f["version"]) for f in frames])
        await ws.send('{"type":"ping","requestId":"end"}')
        assert (await receive(ws))["type"] == "pong"  # nothing more: no duplicates
        await ws.close()

    # One order for everyone: the order of the commits.
    for lists in received.values():
        assert all(frames == lists[0] for frames in lists)
    alice, bob = received["alice"][0], received["bob"][0]
    assert bob == [frame for frame in alice if frame[1] not in private]
    for annotation_id in alice_ids + bob_ids:
        versions = [v for _, a, v in alice if a == annotation_id]
        assert versions == [1, 2]

    # Listings on either worker (answered from its copy once loaded) show the same: every
    # change the caller may see, whichever worker made it.
    expected = {
        "alice": sorted(alice_ids + bob_ids),
        "bob": sorted(bob_ids + [i for i in alice_ids if i not in private]),
    }
    for who, headers in (("alice", ALICE), ("bob", BOB)):
        for _ in range(6):
            response = await call(workers, "GET", "/api/charts/w/annotations", headers=headers)
            listed = response.json()["annotations"]
            assert sorted(a["annotationId"] for a in listed) == expected[who]
            assert {(a["version"], a["text"]) for a in listed} == {(2, "edited")}
            await asyncio.sleep(0.1)
    last = alice_ids[1]
    response = await call(workers, "DELETE", f"/api/charts/w/annotations/{last}", headers=ALICE)
    assert response.status_code == 204
    await asyncio.sleep(0.5)  # the bus carries the change to the other worker
    for _ in range(6):
        response = await call(workers, "GET", "/api/charts/w/annotations", headers=BOB)
        assert last not in {a["annotationId"] for a in response.json()["annotations"]}

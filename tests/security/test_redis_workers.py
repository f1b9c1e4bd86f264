"""Four gunicorn workers share their rate limits through a real Redis server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..servers import (
    GunicornServer,
    RedisServer,
    gunicorn_server,
    redis_server,
    wait_for_window_room,
)

pytestmark = pytest.mark.slow

APP = "lightweight_charts_pro_backend.app_production:create_app()"
WORKERS = 4


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def workers(tmp_path: Path, redis: RedisServer) -> Iterator[GunicornServer]:
    env = {
        "REDIS_URL": redis.url,
        "ENABLE_RATE_LIMITING": "true",
        "RATE_LIMIT_PER_MINUTE": "50",
        "RATE_LIMIT_HISTORY_PER_MINUTE": "20",
        "ENABLE_AUTH": "false",
    }
    with gunicorn_server(APP, tmp_path / "gunicorn", workers=WORKERS, env=env) as server:
        yield server


async def _fire(url: str, count: int, concurrency: int = 8) -> list[httpx.Response]:
    """``count`` GETs, each on a new connection so the workers' accept loops share them."""
    responses: list[httpx.Response] = []
    for start in range(0, count, concurrency):
        batch = min(concurrency, count - start)

        async def one() -> httpx.Response:
            async with httpx.AsyncClient(timeout=10.0) as client:
                return await client.get(url, headers={"Connection": "close"})

        responses.extend(await asyncio.gather(*(one() for _ in range(batch))))
    return responses


def overshoot(limit: int, processes: int) -> int:
    """The most requests the documented bound lets through beyond ``limit``."""
    return processes * (limit // (4 * processes))


def _limiter_pids(redis: RedisServer) -> set[str]:
    return set(re.findall(r"name=charts-ratelimit-(\d+)", redis.command("CLIENT", "LIST")))


async def test_limits_are_shared_by_all_workers(
    workers: GunicornServer, redis: RedisServer
) -> None:
    assert len(workers.worker_pids()) == WORKERS

    await wait_for_window_room(20)
    history = await _fire(workers.url + "/api/charts/x/history/0/s", 40)
    statuses = [r.status_code for r in history]
    assert set(statuses) == {404, 429}
    assert 20 <= statuses.count(404) <= 20 + overshoot(20, WORKERS), statuses
    refused = next(r for r in history if r.status_code == 429)
    assert "20 history requests per minute" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1

    # Every history request counted against the API limit too: 10 of 50 are left.
    listing = await _fire(workers.url + "/api/charts", 30)
    statuses = [r.status_code for r in listing]
    assert set(statuses) == {200, 429}
    assert 10 <= statuses.count(200) <= 10 + overshoot(50, WORKERS), statuses
    assert (await _fire(workers.url + "/health", 5))[0].status_code == 200

    served_by = _limiter_pids(redis)
    print("limiter connections from workers:", sorted(served_by))
    assert served_by <= {str(pid) for pid in workers.worker_pids()}
    assert len(served_by) >= 2, f"all requests went to one worker ({served_by}); cannot tell"

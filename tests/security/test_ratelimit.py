"""Rate limits in one process: who counts as a client, which paths count, what a refusal says."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from lightweight_charts_pro_backend.ratelimit import (
    ClientAddress,
    LocalWindows,
    RateLimiter,
    RateLimitGate,
    SharedWindows,
    is_history_path,
)

from ..servers import free_port, redis_server
from .conftest import ClientFactory, make_settings

PROXY = "127.0.0.10"


def limited(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {"enable_auth": False, "rate_limit_per_minute": 3}
    values.update(overrides)
    return values


PROXY_CASES = [
    # name, trusted proxies, peer, X-Forwarded-For of each request, statuses expected
    (
        "spoofed X-Forwarded-For from an untrusted peer is still limited",
        [],
        "127.0.0.1",
        ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5"],
        [200, 200, 200, 429, 429],
    ),
    (
        "spoofing through a trusted proxy: the proxy-written hop counts",
        [PROXY],
        PROXY,
        [f"198.51.100.{n}, 203.0.113.7" for n in range(5)],
        [200, 200, 200, 429, 429],
    ),
    (
        "trusted proxy: each real client has its own budget",
        [PROXY],
        PROXY,
        ["203.0.113.7"] * 3 + ["203.0.113.8"] * 3 + ["203.0.113.7", "203.0.113.8"],
        [200] * 6 + [429, 429],
    ),
    (
        "chain of trusted proxies is walked right to left",
        [PROXY, "192.0.2.0/24"],
        PROXY,
        ["203.0.113.9, 192.0.2.5"] * 3 + ["203.0.113.10, 192.0.2.5"],
        [200, 200, 200, 200],
    ),
    (
        "trusted peer without X-Forwarded-For is the client",
        [PROXY],
        PROXY,
        ["", "", "", ""],
        [200, 200, 200, 429],
    ),
]


@pytest.mark.parametrize(
    ("name", "trusted", "peer", "forwarded", "statuses"),
    PROXY_CASES,
    ids=[case[0] for case in PROXY_CASES],
)
async def test_client_address_for_limits(
    name: str,
    trusted: list[str],
    peer: str,
    forwarded: list[str],
    statuses: list[int],
    app_client: ClientFactory,
) -> None:
    settings = make_settings(**limited(trusted_proxies=trusted))
    async with app_client(settings, production=True, client=(peer, 40000)) as client:
        got = []
        for value in forwarded:
            headers = {"X-Forwarded-For": value} if value else {}
            got.append((await client.get("/api/charts", headers=headers)).status_code)
        assert got == statuses


async def test_refusal_carries_retry_after_and_limit_headers(app_client: ClientFactory) -> None:
    async with app_client(make_settings(**limited()), production=True) as client:
        first = await client.get("/api/charts")
        assert first.status_code == 200
        assert not [name for name in first.headers if name.startswith("x-ratelimit")], (
            "allowed requests carry no limit headers unless RATE_LIMIT_HEADERS"
        )
        for _ in range(2):
            await client.get("/api/charts")
        refused = await client.get("/api/charts/x", headers={"X-Request-ID": "probe-1"})
        assert refused.status_code == 429
        assert refused.json() == {
            "detail": refused.json()["detail"],
            "errorCode": "RATE_LIMITED",
            "requestId": "probe-1",
        }
        assert refused.json()["detail"].startswith("Rate limit exceeded: 3 requests per minute")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-ratelimit-limit"] == "3"
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert time.time() < int(refused.headers["x-ratelimit-reset"]) <= time.time() + 61


async def test_history_has_its_own_tighter_limit(app_client: ClientFactory) -> None:
    settings = make_settings(**limited(rate_limit_per_minute=10, rate_limit_history_per_minute=2))
    async with app_client(settings, production=True) as client:
        series = {"seriesType": "line", "data": [{"time": 1, "value": 1}]}
        assert (await client.post("/api/charts/a/data/s", json=series)).status_code == 200
        assert (await client.get("/api/charts/a/history/0/s")).status_code == 200
        body = {"seriesId": "s"}
        assert (await client.post("/api/charts/a/history", json=body)).status_code == 200
        refused = await client.get("/api/charts/a/history/0/s")
        assert refused.status_code == 429
        assert "2 history requests per minute" in refused.json()["detail"]
        assert refused.headers["x-ratelimit-limit"] == "2"
        assert (await client.get("/api/charts/a")).status_code == 200
        # A chart called "history" is not the history route.
        assert (await client.post("/api/charts/history")).status_code == 201


async def test_health_is_never_limited(app_client: ClientFactory) -> None:
    settings = make_settings(**limited(rate_limit_headers=True))
    async with app_client(settings, production=True) as client:
        for _ in range(10):
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/health/ready")).status_code == 200
            assert (await client.get("/metrics")).status_code != 429
        assert (await client.get("/api/charts")).headers["x-ratelimit-remaining"] == "2"


async def test_metrics_path_under_api_is_not_limited(app_client: ClientFactory) -> None:
    settings = make_settings(**limited(metrics_path="/api/metrics"))
    async with app_client(settings, production=True) as client:
        statuses = {(await client.get("/api/metrics")).status_code for _ in range(6)}
        assert 429 not in statuses


async def test_disabled_and_development_app_do_not_limit(app_client: ClientFactory) -> None:
    off = make_settings(**limited(enable_rate_limiting=False))
    async with app_client(off, production=True) as client:
        responses = [await client.get("/api/charts") for _ in range(5)]
        assert {r.status_code for r in responses} == {200}
        assert "x-ratelimit-limit" not in responses[0].headers
    async with app_client(make_settings(**limited())) as client:
        assert {(await client.get("/api/charts")).status_code for _ in range(5)} == {200}


async def test_unreachable_redis_leaves_each_process_limiting_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit_per_minute=5
    )
    limiter = RateLimiter(settings)
    await limiter.start()
    try:
        decisions = [await limiter.hit("203.0.113.1") for _ in range(6)]
    finally:
        await limiter.close()
    assert [decision.allowed for decision in decisions] == [True] * 5 + [False]
    warnings = [r for r in caplog.records if "Rate limit store unavailable" in r.message]
    assert len(warnings) == 1


ADDRESSES = [
    ("203.0.113.5", "203.0.113.5"),
    ("203.0.113.5:443", "203.0.113.5"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("2001:db8::1", "2001:db8::1"),
    # What is not an address names no client: the request counts against the proxy.
    ("unknown", PROXY),
    ("x" * 8192, PROXY),
    ("203.0.113.5" + "0" * 100, PROXY),
]


@pytest.mark.parametrize(("hop", "client"), ADDRESSES)
def test_forwarded_hop_forms(hop: str, client: str) -> None:
    address = ClientAddress([PROXY])
    scope = {"client": (PROXY, 1), "headers": [(b"x-forwarded-for", hop.encode())]}
    assert address(scope) == client


def test_client_records_are_bounded_by_count() -> None:
    windows = LocalWindows(60.0, max_records=1000)
    for number in range(5000):
        windows.hit(f"198.51.{number // 256}.{number % 256}", LocalWindows.API)
        assert len(windows) <= 1000
    # The newest clients keep their counts.
    assert windows.hit("198.51.19.135", LocalWindows.API)[0] == 2


@pytest.mark.parametrize(
    ("path", "history"),
    [
        ("/api/charts/a/history/0/s", True),
        ("/api/charts/a/history", True),
        ("/api/charts/history", False),
        ("/api/charts/history/data/0/s", False),
        ("/api/charts/a/data/0/history", False),
        ("/api/charts/a/historyX", False),
        ("/api/charts/a/history\n", False),
    ],
)
def test_history_paths(path: str, history: bool) -> None:
    assert is_history_path(path) is history


async def test_with_rate_limit_headers_allowed_requests_carry_their_limit(
    app_client: ClientFactory,
) -> None:
    settings = make_settings(
        **limited(
            rate_limit_per_minute=10, rate_limit_history_per_minute=4, rate_limit_headers=True
        )
    )
    async with app_client(settings, production=True) as client:
        series = {"seriesType": "line", "data": [{"time": 1, "value": 1}]}
        stored = await client.post("/api/charts/a/data/s", json=series)
        history = await client.get("/api/charts/a/history/0/s")
        again = await client.get("/api/charts/a/history/0/s")
    now = time.time()
    assert (stored.headers["x-ratelimit-limit"], stored.headers["x-ratelimit-remaining"]) == (
        "10",
        "9",
    )
    assert (history.headers["x-ratelimit-limit"], history.headers["x-ratelimit-remaining"]) == (
        "4",
        "3",
    )
    assert again.headers["x-ratelimit-remaining"] == "2"
    for reply in (stored, history, again):
        assert now < int(reply.headers["x-ratelimit-reset"]) <= now + 61


def test_the_gate_remembers_only_short_api_paths() -> None:
    gate = RateLimitGate(RateLimiter(make_settings(**limited())), frozenset({"/api/metrics"}))
    scope = {"type": "http", "client": ("203.0.113.9", 1), "headers": []}
    for path in ("/health", "/api/metrics", "/api/charts/" + "x" * 300, "/api/charts/a"):
        assert gate.admit_now({**scope, "path": path}, [])
    assert list(gate._kinds) == ["/api/charts/a"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


API, HISTORY = LocalWindows.API, LocalWindows.HISTORY


def test_local_window_opens_at_the_first_hit_and_lasts_its_length() -> None:
    clock = FakeClock()
    windows = LocalWindows(60, clock)
    assert windows.hit("a", API) == (1, 1_060.0)
    clock.now = 1_030.0
    assert windows.hit("a", API) == (2, 1_060.0)
    assert windows.hit("a", HISTORY) == (1, 1_090.0), "history has a window of its own"
    assert windows.hit("b", API) == (1, 1_090.0), "each client has windows of its own"
    clock.now = 1_060.0
    assert windows.hit("a", API) == (1, 1_120.0), "the ended window's hits no longer count"
    assert windows.hit("a", HISTORY) == (2, 1_090.0)
    assert windows.hit("b", API) == (2, 1_090.0)


def test_local_windows_forget_clients_whose_windows_ended() -> None:
    clock = FakeClock()
    windows = LocalWindows(60, clock)
    for n in range(1_000):
        windows.hit(f"client-{n}", API)
    clock.now = 1_030.0
    windows.hit("reader", HISTORY)
    assert len(windows) == 1_001
    clock.now = 1_000.0 + LocalWindows.SWEEP_SECONDS + 1
    windows.hit("late", API)
    assert sorted(windows.records) == ["late", "reader"], "a live history window is kept"


async def test_history_counts_against_both_limits_in_memory() -> None:
    limiter = RateLimiter(make_settings(rate_limit_per_minute=4, rate_limit_history_per_minute=2))
    try:
        history = [await limiter.hit("203.0.113.1", history=True) for _ in range(3)]
        assert [d.allowed for d in history] == [True, True, False]
        assert (history[-1].limit, history[-1].remaining) == (2, 0)
        api = await limiter.hit("203.0.113.1")
        assert (api.allowed, api.remaining) == (True, 0), "four of four API requests"
        refused = await limiter.hit("203.0.113.1", history=True)
        assert (refused.allowed, refused.limit) == (False, 4), "the API limit is the tighter now"
        assert (await limiter.hit_history("203.0.113.2")).remaining == 1
    finally:
        await limiter.close()


async def test_a_browser_can_read_a_refusal(app_client: ClientFactory) -> None:
    origin = "http://localhost:3000"
    settings = make_settings(**limited(rate_limit_per_minute=1, cors_origins=[origin]))
    async with app_client(settings, production=True) as client:
        headers = {"Origin": origin, "X-Request-ID": "refused-1"}
        assert (await client.get("/api/charts", headers=headers)).status_code == 200
        refused = await client.get("/api/charts", headers=headers)
    assert refused.status_code == 429
    assert refused.headers["access-control-allow-origin"] == origin
    exposed = refused.headers["access-control-expose-headers"].lower()
    assert "retry-after" in exposed and "x-request-id" in exposed
    assert refused.headers["x-request-id"] == "refused-1"
    assert refused.json()["requestId"] == "refused-1"


async def test_a_hit_is_decided_by_its_own_place_when_answers_cross(tmp_path: Path) -> None:
    """Exchanges of one process in flight together may be answered out of order; each hit is
    judged by the total Redis gave it, not by a higher total another exchange brought first."""
    with redis_server(tmp_path / "redis") as redis:
        shared = SharedWindows(redis.url, {SharedWindows.API: 100, SharedWindows.HISTORY: 2})
        real = shared.redis.pipeline
        calls = 0

        def pipeline(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            pipe = real(*args, **kwargs)
            if calls == 1:  # the first hit's answer comes back last
                execute = pipe.execute

                async def late() -> Any:
                    answer = await execute()
                    await asyncio.sleep(0.2)
                    return answer

                pipe.execute = late
            return pipe

        shared.redis.pipeline = pipeline  # type: ignore[method-assign]
        try:
            first = asyncio.create_task(shared.hit_remote("c", (SharedWindows.HISTORY,)))
            await asyncio.sleep(0.05)  # counted in Redis, answer held back
            second = await shared.hit_remote("c", (SharedWindows.HISTORY,))
            third = await shared.hit_remote("c", (SharedWindows.HISTORY,))
            counts = [(await first)[1], second[1], third[1]]
        finally:
            await shared.close()
    assert counts == [1, 2, 3]

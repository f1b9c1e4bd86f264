"""The attack table: each row is something a hostile or careless client does, and what it gets.

Every row runs against a fresh production app with ``ENABLE_AUTH=true`` holding two charts, and
afterwards checks that the stored data is exactly as before.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest

from lightweight_charts_pro_backend.apikeys import ApiKey
from lightweight_charts_pro_backend.config import Settings

from .conftest import SECRET, ClientFactory, bearer, key_settings, make_settings, token

Keys = dict[str, tuple[str, ApiKey]]
Credentials = Callable[[Settings, Keys], dict[str, str]]

JSON_BODY = {"Content-Type": "application/json"}
SERIES = {"seriesType": "line", "data": [{"time": 1_700_000_000 + i, "value": i} for i in range(5)]}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned_token(settings: Settings) -> str:
    claims = {"sub": "mallory", "exp": 4_102_444_800}
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def none_as(name: str) -> Credentials:
    return lambda settings, keys: {}


def jwt_for(**claims: Any) -> Credentials:
    return lambda settings, keys: bearer(token(settings, **claims))


def key(role: str) -> Credentials:
    return lambda settings, keys: {"X-API-Key": keys[role][0]}


def raw(header: dict[str, str]) -> Credentials:
    return lambda settings, keys: header


def forged(settings: Settings, keys: Keys) -> dict[str, str]:
    other = settings.model_copy(update={"secret_key": "another-" + SECRET})
    return bearer(token(other))


def expired(settings: Settings, keys: Keys) -> dict[str, str]:
    return bearer(token(settings, minutes=-1))


def alg_none(settings: Settings, keys: Keys) -> dict[str, str]:
    return bearer(unsigned_token(settings))


def wrong_algorithm(settings: Settings, keys: Keys) -> dict[str, str]:
    claims = {"sub": "mallory", "exp": 4_102_444_800}
    return bearer(jwt.encode(claims, settings.secret_key, algorithm="HS512"))


def without_exp(settings: Settings, keys: Keys) -> dict[str, str]:
    return bearer(jwt.encode({"sub": "mallory"}, settings.secret_key, algorithm="HS256"))


def without_sub(settings: Settings, keys: Keys) -> dict[str, str]:
    return bearer(jwt.encode({"exp": 4_102_444_800}, settings.secret_key, algorithm="HS256"))


def bad_chart_claim(settings: Settings, keys: Keys) -> dict[str, str]:
    claims = {"sub": "mallory", "exp": 4_102_444_800, "chart_ids": "a"}
    return bearer(jwt.encode(claims, settings.secret_key, algorithm="HS256"))


def signed(**claims: Any) -> Credentials:
    """A token signed with the server's own secret, carrying ``claims`` over valid ones."""
    values = {"sub": "mallory", "exp": 4_102_444_800, **claims}
    return lambda settings, keys: bearer(jwt.encode(values, settings.secret_key, "HS256"))


#: Claims of a wrong type or out of range, each in a correctly signed token.
BAD_CLAIMS = [
    ("exp = 2**1100", {"exp": 2**1100}),
    ("exp past the year 9999", {"exp": 10**12}),
    ("exp as a string", {"exp": "4102444800"}),
    ("iat = 2**1100", {"iat": 2**1100}),
    ("nbf as a string", {"nbf": "0"}),
    ("sub a number", {"sub": 7}),
    ("sub empty", {"sub": ""}),
    ("key_id a number", {"key_id": 7}),
    ("scope a number", {"scope": 7}),
    ("chart_ids of numbers", {"chart_ids": [1]}),
]


@dataclass(frozen=True)
class Attack:
    name: str
    method: str
    path: str
    credentials: Credentials
    status: int
    error_code: str
    body: Any = field(default=None)


HISTORY_B = "/api/charts/b/history/0/s"
ATTACKS = [
    Attack("no credentials", "GET", "/api/charts/a", none_as(""), 401, "NOT_AUTHENTICATED"),
    Attack("no credentials, listing", "GET", "/api/charts", none_as(""), 401, "NOT_AUTHENTICATED"),
    Attack(
        "no credentials, history",
        "GET",
        "/api/charts/a/history/0/s",
        none_as(""),
        401,
        "NOT_AUTHENTICATED",
    ),
    Attack(
        "no credentials, write",
        "POST",
        "/api/charts/a/data/s",
        none_as(""),
        401,
        "NOT_AUTHENTICATED",
        SERIES,
    ),
    Attack("forged signature", "GET", "/api/charts/a", forged, 401, "INVALID_TOKEN"),
    Attack("expired token", "GET", "/api/charts/a", expired, 401, "TOKEN_EXPIRED"),
    Attack("alg none", "GET", "/api/charts/a", alg_none, 401, "INVALID_TOKEN"),
    Attack("alg none, write", "DELETE", "/api/charts/a", alg_none, 401, "INVALID_TOKEN"),
    Attack("wrong algorithm", "GET", "/api/charts/a", wrong_algorithm, 401, "INVALID_TOKEN"),
    Attack("token without exp", "GET", "/api/charts/a", without_exp, 401, "INVALID_TOKEN"),
    Attack("token without sub", "GET", "/api/charts/a", without_sub, 401, "INVALID_TOKEN"),
    Attack("chart_ids not a list", "GET", "/api/charts/a", bad_chart_claim, 401, "INVALID_TOKEN"),
    *[
        Attack(name, "GET", "/api/charts/a", signed(**claims), 401, "INVALID_TOKEN")
        for name, claims in BAD_CLAIMS
    ],
    Attack(
        "exp = 2**1100, history",
        "GET",
        "/api/charts/a/history/0/s",
        signed(exp=2**1100),
        401,
        "INVALID_TOKEN",
    ),
    Attack(
        "exp = 2**1100, write",
        "POST",
        "/api/charts/a/data/s",
        signed(exp=2**1100),
        401,
        "INVALID_TOKEN",
        SERIES,
    ),
    Attack(
        "garbage token", "GET", "/api/charts/a", raw(bearer("not.a.token")), 401, "INVALID_TOKEN"
    ),
    Attack(
        "basic auth",
        "GET",
        "/api/charts/a",
        raw({"Authorization": "Basic YTpi"}),
        401,
        "INVALID_TOKEN",
    ),
    Attack(
        "token for another chart, read",
        "GET",
        "/api/charts/b",
        jwt_for(chart_ids=["a"]),
        403,
        "FORBIDDEN",
    ),
    Attack(
        "token for another chart, series",
        "GET",
        "/api/charts/b/data/0/s",
        jwt_for(chart_ids=["a"]),
        403,
        "FORBIDDEN",
    ),
    Attack(
        "token for another chart, history",
        "GET",
        HISTORY_B,
        jwt_for(chart_ids=["a"]),
        403,
        "FORBIDDEN",
    ),
    Attack(
        "token for another chart, history by body",
        "POST",
        "/api/charts/b/history",
        jwt_for(chart_ids=["a"]),
        403,
        "FORBIDDEN",
        {"seriesId": "s"},
    ),
    Attack(
        "token for another chart, write",
        "POST",
        "/api/charts/b/data/s",
        jwt_for(chart_ids=["a"]),
        403,
        "FORBIDDEN",
        SERIES,
    ),
    Attack(
        "token for another chart, upsert",
        "PATCH",
        "/api/charts/b/data/s",
        jwt_for(chart_ids=["a"]),
        403,
        "FORBIDDEN",
        {"data": [{"time": 1, "value": 1}]},
    ),
    Attack(
        "token for another chart, delete",
        "DELETE",
        "/api/charts/b",
        jwt_for(chart_ids=["a"]),
        403,
        "FORBIDDEN",
    ),
    Attack(
        "token for no chart, create",
        "POST",
        "/api/charts/c",
        jwt_for(chart_ids=[]),
        403,
        "FORBIDDEN",
    ),
    Attack(
        "read-only token writing",
        "POST",
        "/api/charts/a/data/s",
        jwt_for(scope="charts:read"),
        403,
        "FORBIDDEN",
        SERIES,
    ),
    Attack(
        "read-only token upserting",
        "PATCH",
        "/api/charts/a/data/s",
        jwt_for(scope="charts:read"),
        403,
        "FORBIDDEN",
        {"data": [{"time": 1, "value": 1}]},
    ),
    Attack(
        "read-only token deleting a series",
        "DELETE",
        "/api/charts/a/data/0/s",
        jwt_for(scope="charts:read"),
        403,
        "FORBIDDEN",
    ),
    Attack(
        "read-only token creating",
        "POST",
        "/api/charts/c",
        jwt_for(scope="charts:read"),
        403,
        "FORBIDDEN",
    ),
    Attack("read-only key writing", "DELETE", "/api/charts/a", key("reader"), 403, "FORBIDDEN"),
    Attack("write-only key reading", "GET", "/api/charts/a", key("writer_a"), 403, "FORBIDDEN"),
    Attack("key for another chart", "GET", "/api/charts/b", key("chart_a"), 403, "FORBIDDEN"),
    Attack("revoked API key", "GET", "/api/charts/a", key("revoked"), 401, "API_KEY_REVOKED"),
    Attack(
        "revoked API key as bearer",
        "DELETE",
        "/api/charts/a",
        lambda settings, keys: bearer(keys["revoked"][0]),
        401,
        "API_KEY_REVOKED",
    ),
    Attack(
        "unknown API key",
        "GET",
        "/api/charts/a",
        raw({"X-API-Key": "lcp_" + "x" * 43}),
        401,
        "INVALID_API_KEY",
    ),
    Attack(
        "API key in the wrong format",
        "GET",
        "/api/charts/a",
        raw({"X-API-Key": "password"}),
        401,
        "INVALID_API_KEY",
    ),
    Attack(
        "path traversal chart id",
        "GET",
        "/api/charts/%2E%2E",
        jwt_for(),
        422,
        "VALIDATION_ERROR",
    ),
    Attack(
        "path traversal chart id, write",
        "POST",
        "/api/charts/..secret..",
        jwt_for(),
        422,
        "VALIDATION_ERROR",
    ),
    Attack(
        "dot chart id, write",
        "POST",
        "/api/charts/%2E",
        jwt_for(),
        422,
        "VALIDATION_ERROR",
    ),
    Attack(
        "dots series id",
        "POST",
        "/api/charts/a/data/%2E%2E%2E",
        jwt_for(),
        422,
        "VALIDATION_ERROR",
        SERIES,
    ),
    Attack(
        "path traversal series id",
        "POST",
        "/api/charts/a/data/%2E%2E",
        jwt_for(),
        422,
        "VALIDATION_ERROR",
        SERIES,
    ),
    Attack(
        "path traversal history",
        "GET",
        "/api/charts/%2E%2E/history/0/s",
        jwt_for(),
        422,
        "VALIDATION_ERROR",
    ),
    Attack(
        "encoded slash in chart id",
        "DELETE",
        "/api/charts/a%2F..%2Fb",
        jwt_for(),
        404,
        "NOT_FOUND",
    ),
]


async def _snapshot(client: httpx.AsyncClient, headers: dict[str, str]) -> list[Any]:
    listing = (await client.get("/api/charts", headers=headers)).json()
    for chart in listing["charts"]:
        chart.pop("updatedAt")
    charts = [(await client.get(f"/api/charts/{c}", headers=headers)).json() for c in "ab"]
    return [listing, charts]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
async def test_attack_is_refused_and_changes_nothing(
    attack: Attack, app_client: ClientFactory, keys: Keys
) -> None:
    settings = make_settings(api_keys=key_settings(keys), enable_rate_limiting=False)
    admin = bearer(token(settings))
    async with app_client(settings, production=True) as client:
        for chart in "ab":
            response = await client.post(f"/api/charts/{chart}/data/s", json=SERIES, headers=admin)
            assert response.status_code == 200
        before = await _snapshot(client, admin)

        response = await client.request(
            attack.method,
            attack.path,
            headers=attack.credentials(settings, keys),
            json=attack.body,
        )

        assert response.status_code == attack.status, response.text
        body = response.json()
        assert body["errorCode"] == attack.error_code
        assert body["detail"].endswith("."), body["detail"]
        assert body["requestId"] == response.headers["x-request-id"]
        if attack.status == 401:
            assert response.headers["www-authenticate"].startswith('Bearer realm="charts"')
        assert await _snapshot(client, admin) == before


async def test_listing_shows_only_the_tokens_charts(app_client: ClientFactory) -> None:
    settings = make_settings()
    admin = bearer(token(settings))
    async with app_client(settings) as client:
        for chart in ("a", "b", "c"):
            assert (await client.post(f"/api/charts/{chart}", headers=admin)).status_code == 201
        limited = bearer(token(settings, chart_ids=["a", "c", "zzz"]))
        listing = (await client.get("/api/charts", headers=limited)).json()
        assert sorted(c["chartId"] for c in listing["charts"]) == ["a", "c"]
        everything = (await client.get("/api/charts", headers=admin)).json()
        assert sorted(c["chartId"] for c in everything["charts"]) == ["a", "b", "c"]


async def test_scoped_credentials_do_what_they_grant(app_client: ClientFactory, keys: Keys) -> None:
    settings = make_settings(api_keys=key_settings(keys))
    async with app_client(settings) as client:
        writer = {"X-API-Key": keys["writer_a"][0]}
        assert (await client.post("/api/charts/a/data/s", json=SERIES, headers=writer)).is_success
        reader = bearer(token(settings, chart_ids=["a"], scope="charts:read"))
        history = await client.get("/api/charts/a/history/0/s?count=2", headers=reader)
        assert history.status_code == 200
        assert [p["value"] for p in history.json()["data"]] == [3, 4]
        body = {"seriesId": "s", "count": 1}
        by_body = await client.post("/api/charts/a/history", json=body, headers=reader)
        assert by_body.json()["data"] == [{"time": 1_700_000_004, "value": 4}]
        as_bearer = bearer(keys["chart_a"][0])
        assert (await client.get("/api/charts/a", headers=as_bearer)).status_code == 200


async def test_guide_example_token_reads_and_writes_its_charts(app_client: ClientFactory) -> None:
    from lightweight_charts_pro_backend.auth import create_access_token

    settings = make_settings()
    guide_token = create_access_token(
        {"sub": "user123", "chart_ids": ["chart1", "chart2"]}, settings
    )
    async with app_client(settings) as client:
        headers = bearer(guide_token)
        assert (
            await client.post("/api/charts/chart1/data/s", json=SERIES, headers=headers)
        ).is_success
        assert (await client.get("/api/charts/chart1", headers=headers)).status_code == 200
        assert (await client.get("/api/charts/chart3", headers=headers)).status_code == 403


async def test_auth_off_needs_no_credentials_and_ignores_bad_ones(
    app_client: ClientFactory,
) -> None:
    settings = make_settings(enable_auth=False)
    async with app_client(settings) as client:
        assert (await client.post("/api/charts/a/data/s", json=SERIES)).status_code == 200
        junk = bearer("junk")
        assert (await client.get("/api/charts/a/history/0/s", headers=junk)).status_code == 200


BODY_ATTACKS = [
    ("oversized body by Content-Length", 413, "PAYLOAD_TOO_LARGE"),
    ("oversized chunked body", 413, "PAYLOAD_TOO_LARGE"),
    ("deep nesting", 422, "VALIDATION_ERROR"),
    ("deep nesting hidden after a string", 422, "VALIDATION_ERROR"),
    ("deep nesting in one of many flat points", 422, "VALIDATION_ERROR"),
    ("nesting past the parser's own limit", 422, "VALIDATION_ERROR"),
    ("too many points", 413, "PAYLOAD_TOO_LARGE"),
]


def _body_for(name: str) -> Any:
    points = [{"time": i, "value": 1} for i in range(1, 40)]
    if name == "oversized body by Content-Length":
        return json.dumps({"seriesType": "line", "data": points * 100}).encode()
    if name == "oversized chunked body":

        async def chunks() -> Any:
            for _ in range(200):
                yield b" " * 1024
            yield json.dumps({"seriesType": "line", "data": points}).encode()

        return chunks()
    if name == "deep nesting":
        nested: Any = 1
        for _ in range(40):
            nested = {"v": nested}
        return json.dumps({"seriesType": "line", "data": [{"time": 1, "value": 1, "x": nested}]})
    if name == "deep nesting in one of many flat points":
        deep = "[" * 33 + "1" + "]" * 33
        flat = ",".join(f'{{"time":{i},"value":1}}' for i in range(1, 90))
        return '{"seriesType":"line","data":[' + flat + ',{"time":95,"value":1,"b":' + deep + "}]}"
    if name == "nesting past the parser's own limit":
        return '{"seriesType":"line","data":[{"time":1,"value":' + "[" * 2000 + "]" * 2000 + "}]}"
    if name == "deep nesting hidden after a string":
        trick = '"\\"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"'
        deep = "[" * 40 + "1" + "]" * 40
        return (
            '{"seriesType":"line","data":[{"time":1,"value":1,"a":' + trick + ',"b":' + deep + "}]}"
        )
    return json.dumps(
        {"seriesType": "line", "data": [{"time": i, "value": 1} for i in range(1, 102)]}
    )


@pytest.mark.parametrize(("name", "status", "code"), BODY_ATTACKS, ids=[a[0] for a in BODY_ATTACKS])
async def test_request_limits(name: str, status: int, code: str, app_client: ClientFactory) -> None:
    settings = make_settings(
        enable_auth=False,
        max_request_body_bytes=64 * 1024,
        max_json_depth=32,
        max_points_per_request=100,
    )
    async with app_client(settings) as client:
        response = await client.post(
            "/api/charts/a/data/s", content=_body_for(name), headers=JSON_BODY
        )
        assert response.status_code == status, response.text
        assert response.json()["errorCode"] == code
        assert "MAX_" in response.json()["detail"]
        assert (await client.get("/api/charts")).json() == {"charts": []}
        fine = {"seriesType": "line", "data": [{"time": i, "value": 1} for i in range(1, 101)]}
        assert (await client.post("/api/charts/a/data/s", json=fine)).status_code == 200

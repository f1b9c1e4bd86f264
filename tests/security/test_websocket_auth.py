"""WebSocket admission over real sockets: credentials in each place a browser or a service can
put them, refusals closed with 1008 and a reason, expiry ending a socket, origin checks, and the
history rate limit answered in the history_response.

The chart socket itself belongs to the realtime package; these tests mount a minimal endpoint
that calls the auth and rate-limit functions exactly as the real handler must (see
``chart_socket`` below), on the app the factories build, served by uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import orjson
import pytest
from starlette.datastructures import Headers, QueryParams
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from lightweight_charts_pro_backend import app_production
from lightweight_charts_pro_backend.apikeys import ApiKey
from lightweight_charts_pro_backend.auth import (
    create_access_token,
    websocket_credentials,
)
from lightweight_charts_pro_backend.config import Settings
from lightweight_charts_pro_backend.errors import DatabaseUnavailable, InvalidToken

from ..servers import uvicorn_thread
from .conftest import SECRET, bearer, key_settings, make_settings, token

TIMEOUT = 10.0
Keys = dict[str, tuple[str, ApiKey]]


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[str]:
    with uvicorn_thread(app_production.create_app(settings)) as address:
        yield f"ws://{address}/ws/charts"


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), TIMEOUT)
    value: dict[str, Any] = orjson.loads(message)
    return value


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    frame = closed.value.rcvd
    return (frame.code, frame.reason) if frame else (None, None)


@pytest.fixture
def settings(keys: Keys) -> Settings:
    return make_settings(api_keys=key_settings(keys), rate_limit_history_per_minute=3)


REFUSALS = [
    ("no credentials", {}, "Authentication required"),
    ("token for another chart", {"protocol": {"chart_ids": ["b"]}}, "does not grant access"),
    ("expired token in query", {"query": {"minutes": -1}}, "expired"),
    ("forged token in header", {"forged": True}, "signature does not verify"),
    ("revoked API key", {"key": "revoked"}, "revoked"),
    ("write-only key", {"key": "writer_a"}, "may not read"),
    ("key for another chart", {"key": "chart_a", "chart": "b"}, "does not grant access"),
    ("bearer without token", {"bare_bearer": True}, "carries no token"),
    ("API key as ?token=", {"query_key": "reader"}, "not an API key"),
    ("exp = 2**1100", {"claims": {"exp": 2**1100}}, "claims are invalid"),
    ("exp as a string in query", {"claims": {"exp": "4102444800"}, "in_query": True}, "invalid"),
]


def _handshake(case: dict[str, Any], settings: Settings, keys: Keys) -> dict[str, Any]:
    if "protocol" in case:
        return {"subprotocols": ["bearer", token(settings, **case["protocol"])]}
    if "query" in case:
        return {"query": "?token=" + token(settings, **case["query"])}
    if case.get("forged"):
        other = settings.model_copy(update={"secret_key": "other-" + SECRET})
        return {"additional_headers": {"Authorization": f"Bearer {token(other)}"}}
    if "query_key" in case:
        return {"query": f"?token={keys[case['query_key']][0]}"}
    if "key" in case:
        return {"additional_headers": {"X-API-Key": keys[case["key"]][0]}}
    if "claims" in case:
        signed = jwt.encode({"sub": "x", "exp": 4_102_444_800, **case["claims"]}, SECRET)
        return (
            {"query": f"?token={signed}"}
            if case.get("in_query")
            else {"subprotocols": ["bearer", signed]}
        )
    if case.get("bare_bearer"):
        return {"subprotocols": ["bearer"]}
    return {}


async def test_refusals_close_with_policy_violation_and_reason(
    settings: Settings, keys: Keys
) -> None:
    with serve(settings) as base:
        for name, case, reason in REFUSALS:
            options = _handshake(case, settings, keys)
            query = options.pop("query", "")
            url = f"{base}/{case.get('chart', 'a')}{query}"
            async with connect(url, open_timeout=TIMEOUT, **options) as ws:
                code, text = await closed_with(ws)
            assert code == 1008, name
            assert text is not None and reason in text, (name, text)


async def test_each_credential_place_admits(settings: Settings, keys: Keys) -> None:
    readable = token(settings, chart_ids=["a"], scope="charts:read")
    places: list[tuple[str, dict[str, Any], str | None]] = [
        ("subprotocol", {"subprotocols": ["bearer", readable]}, "bearer"),
        ("query", {"query": f"?token={readable}"}, None),
        ("authorization", {"additional_headers": {"Authorization": f"Bearer {readable}"}}, None),
        ("api key header", {"additional_headers": {"X-API-Key": keys["chart_a"][0]}}, None),
    ]
    with serve(settings) as base:
        for name, options, subprotocol in places:
            query = options.pop("query", "")
            async with connect(f"{base}/a{query}", open_timeout=TIMEOUT, **options) as ws:
                assert ws.subprotocol == subprotocol, name
                assert (await receive(ws))["type"] == "connected", name


async def test_auth_off_admits_anything_and_echoes_bearer() -> None:
    with serve(make_settings(enable_auth=False)) as base:
        async with connect(
            f"{base}/a", subprotocols=["bearer", "whatever"], open_timeout=TIMEOUT
        ) as ws:
            assert ws.subprotocol == "bearer"
            assert (await receive(ws))["type"] == "connected"
        async with connect(
            f"{base}/a",
            subprotocols=["bearer"],
            additional_headers={"Authorization": "Token junk"},
            open_timeout=TIMEOUT,
        ) as ws:
            assert ws.subprotocol == "bearer"
            assert (await receive(ws))["type"] == "connected"


async def test_token_expiring_ends_the_socket(settings: Settings) -> None:
    short = create_access_token({"sub": "brief"}, settings, timedelta(seconds=2))
    with serve(settings) as base:
        async with connect(f"{base}/a", subprotocols=["bearer", short]) as ws:
            assert (await receive(ws))["type"] == "connected"
            await ws.send('{"type":"ping"}')
            assert (await receive(ws))["type"] == "pong"
            assert await closed_with(ws) == (1008, "The token has expired.")


async def _line_series(base: str, settings: Settings) -> None:
    """Chart ``a`` with a one-point line series ``s``, written over REST."""
    http = base.replace("ws://", "http://").removesuffix("/ws/charts")
    async with httpx.AsyncClient(base_url=http, headers=bearer(token(settings))) as client:
        body = {"paneId": 0, "seriesType": "line", "data": [{"time": 1, "value": 1.0}]}
        created = await client.post("/api/charts/a/data/s", json=body)
        assert created.status_code == 200, created.text


async def test_history_rate_limit_is_answered_in_the_history_response(settings: Settings) -> None:
    with serve(settings) as base:
        await _line_series(base, settings)
        async with connect(f"{base}/a", subprotocols=["bearer", token(settings)]) as ws:
            await receive(ws)
            answers = []
            for number in range(5):
                frame = {
                    "type": "request_history",
                    "requestId": str(number),
                    "paneId": 0,
                    "seriesId": "s",
                    "count": 10,
                }
                await ws.send(orjson.dumps(frame).decode())
                answers.append(await receive(ws))
            assert [a["type"] for a in answers] == ["history_response"] * 5
            assert ["error" in a for a in answers] == [False] * 3 + [True] * 2
            assert answers[3]["errorCode"] == "RATE_LIMITED"
            assert (answers[3]["requestId"], answers[3]["paneId"], answers[3]["seriesId"]) == (
                "3",
                0,
                "s",
            )
            assert "3 history requests per minute" in answers[3]["error"]
            await ws.send('{"type":"ping"}')
            assert (await receive(ws))["type"] == "pong"


async def test_initial_data_frames_count_against_the_history_limit(settings: Settings) -> None:
    with serve(settings) as base:
        await _line_series(base, settings)
        async with connect(f"{base}/a", subprotocols=["bearer", token(settings)]) as ws:
            await receive(ws)
            answers = []
            for number in range(2):
                frame = {"type": "request_history", "requestId": str(number), "seriesId": "s"}
                await ws.send(orjson.dumps(frame).decode())
                answers.append(await receive(ws))
            for number in range(2, 5):
                frame = {"type": "get_initial_data", "requestId": str(number)}
                await ws.send(orjson.dumps(frame).decode())
                answers.append(await receive(ws))
            assert [a.get("errorCode") for a in answers] == [None] * 3 + ["RATE_LIMITED"] * 2
            assert answers[2]["type"] == "initial_data_response"
            assert answers[3]["type"] == "error" and answers[3]["requestId"] == "3"


async def test_handshakes_count_against_the_api_limit(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit_per_minute": 2})
    with serve(limited) as base:
        for _ in range(2):
            async with connect(f"{base}/a", subprotocols=["bearer", token(settings)]) as ws:
                await receive(ws)
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{base}/a", subprotocols=["bearer", token(settings)])
        assert refused.value.response.status_code == 429
        assert int(refused.value.response.headers["Retry-After"]) >= 1


ORIGINS = [
    ("listed origin", "http://localhost:3000", True),
    ("other site", "https://evil.example", False),
    ("listed host, other scheme", "https://localhost:3000", False),
    ("no origin", None, True),
    ("same origin as the server", "SELF", True),
]


async def test_websocket_origin_follows_cors_origins() -> None:
    settings = make_settings(enable_auth=False)
    with serve(settings) as base:
        for name, origin, allowed in ORIGINS:
            value = base.replace("ws://", "http://").removesuffix("/ws/charts")
            options: dict[str, Any] = {}
            if origin is not None:
                options["origin"] = value if origin == "SELF" else origin
            if allowed:
                async with connect(f"{base}/a", open_timeout=TIMEOUT, **options) as ws:
                    assert (await receive(ws))["type"] == "connected", name
            else:
                with pytest.raises(InvalidStatus) as refused:
                    await connect(f"{base}/a", open_timeout=TIMEOUT, **options)
                assert refused.value.response.status_code == 403, name


async def test_a_key_that_cannot_be_looked_up_is_told_to_try_again_later(
    settings: Settings, keys: Keys
) -> None:
    """The database holding the keys is away: not a refusal of the key (1008) but 1013."""
    app = app_production.create_app(settings)

    async def away(key_hash: str) -> None:
        raise DatabaseUnavailable("The database is unavailable, so nothing was changed.")

    with uvicorn_thread(app) as address:
        app.state.keystore.find = away
        headers = {"X-API-Key": keys["all"][0]}
        async with connect(f"ws://{address}/ws/charts/a", additional_headers=headers) as ws:
            code, reason = await closed_with(ws)
    assert code == 1013
    assert reason is not None and reason.startswith("The database is unavailable")


CREDENTIAL_CASES = [
    ({"authorization": "Bearer abc"}, {}, ("abc", None, None)),
    ({"x-api-key": "lcp_k"}, {}, (None, "lcp_k", None)),
    ({"sec-websocket-protocol": "bearer, tok"}, {}, ("tok", None, "bearer")),
    ({"sec-websocket-protocol": "chat, bearer,tok"}, {}, ("tok", None, "bearer")),
    ({}, {"token": "q"}, ("q", None, None)),
    (
        {"authorization": "Bearer h", "sec-websocket-protocol": "bearer, p"},
        {},
        ("h", None, "bearer"),
    ),
    ({"sec-websocket-protocol": "bearer, p"}, {"token": "q"}, ("p", None, "bearer")),
    ({}, {}, (None, None, None)),
]


@pytest.mark.parametrize(("headers", "query", "expected"), CREDENTIAL_CASES)
def test_websocket_credentials(
    headers: dict[str, str], query: dict[str, str], expected: tuple[Any, ...]
) -> None:
    found = websocket_credentials(Headers(headers), QueryParams(query), "X-API-Key")
    assert (found.token, found.api_key, found.subprotocol) == expected


def test_malformed_authorization_is_refused_not_ignored() -> None:
    with pytest.raises(InvalidToken):
        websocket_credentials(Headers({"authorization": "Token abc"}), QueryParams(), "X-API-Key")

"""`POST /api/auth/token`: an API key buys a short-lived, read-only token for some of its charts."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from lightweight_charts_pro_backend.apikeys import ApiKey
from lightweight_charts_pro_backend.app import create_app
from lightweight_charts_pro_backend.auth import decode_access_token

from .conftest import ClientFactory, bearer, key_settings, make_settings, token

Keys = dict[str, tuple[str, ApiKey]]
SERIES = {"seriesType": "line", "data": [{"time": 1, "value": 1}]}


async def test_exchange_gives_a_read_only_token_for_the_asked_charts(
    app_client: ClientFactory, keys: Keys
) -> None:
    settings = make_settings(api_keys=key_settings(keys), access_token_expire_minutes=30)
    async with app_client(settings) as client:
        admin = {"X-API-Key": keys["all"][0]}
        for chart in "ab":
            assert await client.post(f"/api/charts/{chart}/data/s", json=SERIES, headers=admin)
        issued = await client.post(
            "/api/auth/token", json={"chartIds": ["a"], "minutes": 5}, headers=admin
        )
        assert issued.status_code == 200, issued.text
        body = issued.json()
        assert body["tokenType"] == "bearer"
        assert body["scope"] == "charts:read"
        assert body["chartIds"] == ["a"]
        assert body["expiresIn"] == 300
        principal = decode_access_token(body["accessToken"], settings)
        assert principal.sub == "apikey:all"
        assert principal.key_id == keys["all"][1].id
        assert principal.expires_at is not None
        assert 290 <= principal.expires_at - time.time() <= 301

        browser = bearer(body["accessToken"])
        assert (await client.get("/api/charts/a/history/0/s", headers=browser)).status_code == 200
        assert (await client.get("/api/charts/b", headers=browser)).status_code == 403
        write = await client.post("/api/charts/a/data/s", json=SERIES, headers=browser)
        assert write.status_code == 403
        again = await client.post("/api/auth/token", headers=browser)
        assert again.status_code == 403


async def test_lifetime_is_capped_and_charts_default_to_the_keys(
    app_client: ClientFactory, keys: Keys
) -> None:
    settings = make_settings(api_keys=key_settings(keys), access_token_expire_minutes=10)
    async with app_client(settings) as client:
        issued = await client.post(
            "/api/auth/token", json={"minutes": 600}, headers={"X-API-Key": keys["chart_a"][0]}
        )
        assert issued.json()["expiresIn"] == 600
        assert issued.json()["chartIds"] == ["a"]
        empty_body = await client.post(
            "/api/auth/token", headers={"Authorization": f"Bearer {keys['all'][0]}"}
        )
        assert empty_body.status_code == 200
        assert empty_body.json()["chartIds"] is None


@pytest.mark.parametrize(
    ("role", "body", "status", "code"),
    [
        (None, {}, 401, "NOT_AUTHENTICATED"),
        ("revoked", {}, 401, "API_KEY_REVOKED"),
        ("chart_a", {"chartIds": ["a", "b"]}, 403, "FORBIDDEN"),
        ("writer_a", {}, 403, "FORBIDDEN"),
        ("all", {"chartIds": ["../etc"]}, 422, "VALIDATION_ERROR"),
        ("all", {"chartIds": ["."]}, 422, "VALIDATION_ERROR"),
        ("all", {"minutes": 0}, 422, "VALIDATION_ERROR"),
        ("all", {"chartIds": "a"}, 422, "VALIDATION_ERROR"),
        ("all", {"unknown": 1}, 422, "VALIDATION_ERROR"),
    ],
)
async def test_refused_exchanges(
    role: str | None,
    body: dict[str, object],
    status: int,
    code: str,
    app_client: ClientFactory,
    keys: Keys,
) -> None:
    settings = make_settings(api_keys=key_settings(keys))
    headers = {"X-API-Key": keys[role][0]} if role else {}
    async with app_client(settings) as client:
        response = await client.post("/api/auth/token", json=body, headers=headers)
        assert response.status_code == status, response.text
        assert response.json()["errorCode"] == code


async def test_a_jwt_cannot_mint_tokens(app_client: ClientFactory) -> None:
    settings = make_settings()
    async with app_client(settings) as client:
        response = await client.post("/api/auth/token", headers=bearer(token(settings)))
        assert response.status_code == 403


async def test_a_token_issued_for_a_key_is_refused_once_the_key_is_revoked_or_gone(
    app_client: ClientFactory, keys: Keys
) -> None:
    settings = make_settings(api_keys=key_settings(keys))
    app = create_app(settings)
    async with app_client(settings, app=app) as client:
        issued = await client.post("/api/auth/token", headers={"X-API-Key": keys["chart_a"][0]})
        headers = bearer(issued.json()["accessToken"])
        assert (await client.get("/api/charts/a", headers=headers)).status_code == 404
        others = await client.post("/api/auth/token", headers={"X-API-Key": keys["all"][0]})
        kept = bearer(others.json()["accessToken"])
        await app.state.keystore.revoke(keys["chart_a"][1].id, datetime.now(UTC))
        refused = await client.get("/api/charts/a", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["errorCode"] == "API_KEY_REVOKED"
        assert (await client.get("/api/charts/a", headers=kept)).status_code == 404
    without_the_key = make_settings(api_keys=key_settings({"all": keys["all"]}))
    async with app_client(without_the_key) as client:
        gone = await client.get("/api/charts/a", headers=kept)
        assert gone.status_code == 404, "the other key still exists"
        orphan = await client.get("/api/charts/a", headers=headers)
        assert orphan.status_code == 401 and orphan.json()["errorCode"] == "INVALID_TOKEN"

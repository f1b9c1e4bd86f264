"""The UDF datafeed behind the service's credentials, chart scopes, rate limits and CORS."""

from __future__ import annotations

from typing import Any

import httpx

from lightweight_charts_pro_backend.apikeys import new_api_key

from ..security.conftest import ClientFactory, bearer, make_settings, token
from .test_datafeed import T0, minutes

HISTORY = "/udf/history?symbol={}&resolution=60&to=" + str(T0 + 10**5) + "&countback=5"


async def seed(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for chart, symbol, exchange in (("a", "AAA", "X1"), ("b", "BBB", "X2")):
        body: dict[str, Any] = {
            "paneId": 0,
            "seriesType": "candlestick",
            "data": minutes(120),
            "market": {"symbol": symbol, "exchange": exchange},
        }
        response = await client.post(f"/api/charts/{chart}/data/px", json=body, headers=headers)
        assert response.status_code == 200, response.text


async def test_credentials_are_required_and_refusals_speak_udf(app_client: ClientFactory) -> None:
    settings = make_settings()
    async with app_client(settings) as client:
        await seed(client, bearer(token(settings)))
        for path in (
            "/symbols?symbol=AAA",
            "/search?query=A",
            "/time",
            HISTORY.format("a~0~px")[4:],
        ):
            response = await client.get("/udf" + path)
            assert response.status_code == 401, path
            body = response.json()
            # The adapter reads "s" (a resolve with any "s" fails as unknown_symbol) and "errmsg".
            assert body["s"] == "error" and "Authentication required" in body["errmsg"]
            assert body["errorCode"] == "NOT_AUTHENTICATED" and body["requestId"]
        # The adapter asks for /config from its constructor, before a page can set a header:
        # answered anyway, with what the datafeed supports and nothing about the charts.
        config = await client.get("/udf/config")
        assert config.status_code == 200 and config.json()["supports_search"] is True
        assert config.json()["exchanges"] == [{"value": "", "name": "All Exchanges", "desc": ""}]
        bad = await client.get("/udf/config", headers=bearer("not-a-token"))
        assert bad.status_code == 401 and bad.json()["s"] == "error"
        ok = await client.get("/udf/config", headers=bearer(token(settings)))
        assert [e["value"] for e in ok.json()["exchanges"]] == ["", "X1", "X2"]


async def test_a_token_limited_to_some_charts_sees_only_their_symbols(
    app_client: ClientFactory,
) -> None:
    settings = make_settings()
    async with app_client(settings) as client:
        await seed(client, bearer(token(settings)))
        only_a = bearer(token(settings, chart_ids=["a"], scope="charts:read"))

        config = (await client.get("/udf/config", headers=only_a)).json()
        assert [e["value"] for e in config["exchanges"]] == ["", "X1"]
        found = (await client.get("/udf/search?query=", headers=only_a)).json()
        assert [item["ticker"] for item in found] == ["a~0~px"]

        assert (await client.get("/udf/symbols?symbol=AAA", headers=only_a)).json()["name"] == "AAA"
        for hidden in ("BBB", "b~0~px", "X2:BBB"):
            body = (await client.get(f"/udf/symbols?symbol={hidden}", headers=only_a)).json()
            assert body["s"] == "error" and "unknown_symbol" in body["errmsg"], hidden
        assert (await client.get(HISTORY.format("a~0~px"), headers=only_a)).json()["s"] == "ok"
        hidden = (await client.get(HISTORY.format("b~0~px"), headers=only_a)).json()
        assert hidden["s"] == "error" and "unknown_symbol" in hidden["errmsg"]
        # A writer without charts:read may not read through the datafeed either.
        writer = bearer(token(settings, scope="charts:write"))
        refused = await client.get(HISTORY.format("a~0~px"), headers=writer)
        assert refused.status_code == 403 and refused.json()["s"] == "error"


async def test_api_keys_open_the_datafeed_too(app_client: ClientFactory) -> None:
    secret, record = new_api_key("feed", ["b"], ["charts:read"])
    settings = make_settings(api_keys=[record.to_setting()])
    async with app_client(settings) as client:
        await seed(client, bearer(token(settings)))
        headers = {"X-API-Key": secret}
        found = (await client.get("/udf/search?query=", headers=headers)).json()
        assert [item["symbol"] for item in found] == ["BBB"]
        got = (await client.get(HISTORY.format("BBB"), headers=headers)).json()
        assert got["s"] == "ok" and len(got["t"]) == 2


async def test_history_counts_against_the_history_limit(app_client: ClientFactory) -> None:
    settings = make_settings(
        enable_auth=False, rate_limit_per_minute=8, rate_limit_history_per_minute=2
    )
    async with app_client(settings, production=True) as client:
        await seed(client, {})  # 2 API requests
        path = HISTORY.format("a~0~px")
        statuses = [(await client.get(path)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        refused = await client.get(path, headers={"Origin": "http://localhost:3000"})
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        body = refused.json()
        assert body["s"] == "error" and "history requests" in body["errmsg"]
        assert body["errorCode"] == "RATE_LIMITED"
        assert refused.headers["access-control-allow-origin"] == "http://localhost:3000"
        # The rest of the datafeed counts against the API limit: 2 + 4 so far, 8 allowed.
        statuses = [(await client.get("/udf/config")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert "s" not in (await client.get("/api/charts")).json()  # /api refusals as before


async def test_a_charting_library_page_on_another_origin_may_send_its_token(
    app_client: ClientFactory,
) -> None:
    settings = make_settings(cors_origins=["https://app.example.com"])
    async with app_client(settings) as client:
        preflight = await client.options(
            "/udf/history",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()


async def test_marks_show_the_callers_own_private_markers_only(app_client: ClientFactory) -> None:
    settings = make_settings()
    async with app_client(settings) as client:
        await seed(client, bearer(token(settings)))
        style = {"position": "belowBar", "shape": "circle", "color": "#000"}
        for user, visibility in (("ann", "private"), ("bob", "private"), ("ann", "chart")):
            body = {
                "kind": "marker",
                "paneId": 0,
                "seriesId": "px",
                "points": [{"time": T0 + 60}],
                "style": style,
                "text": f"{user} {visibility}",
                "visibility": visibility,
            }
            headers = bearer(token(settings, sub=user))
            response = await client.post("/api/charts/a/annotations", json=body, headers=headers)
            assert response.status_code == 201, response.text
        marks = f"/udf/marks?symbol=a~0~px&from={T0}&to={T0 + 3600}"
        seen = (await client.get(marks, headers=bearer(token(settings, sub="ann")))).json()
        assert sorted(m["text"] for m in seen) == ["ann chart", "ann private"]
        seen = (await client.get(marks, headers=bearer(token(settings, sub="eve")))).json()
        assert [m["text"] for m in seen] == ["ann chart"]

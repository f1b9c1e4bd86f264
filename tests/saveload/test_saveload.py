"""The TradingView save/load API on every store, as the Charting Library calls it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from lightweight_charts_pro_backend.app import create_app
from lightweight_charts_pro_backend.saveload.store import Owner

from ..annotations.conftest import Serve, auth, settings_for

pytestmark = pytest.mark.slow

BASE = "/saveload/1.1"
WHO = {"client": "tv", "user": "alice"}
ALICE = auth("alice")


async def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok", body
    return body.get("data", body)


async def test_chart_layouts_are_saved_listed_loaded_updated_and_deleted(serve: Serve) -> None:
    async with serve() as client:
        assert await ok(await client.get(f"{BASE}/charts", params=WHO)) == []
        form = {
            "name": "BTC 1h",
            "content": '{"panes": []}',
            "symbol": "BTCUSD",
            "resolution": "60",
        }
        saved = await ok(await client.post(f"{BASE}/charts", params=WHO, data=form))
        chart_id = saved["id"]
        assert isinstance(chart_id, int)
        listed = await ok(await client.get(f"{BASE}/charts", params=WHO))
        assert listed == [
            {"id": chart_id, "name": "BTC 1h", "timestamp": listed[0]["timestamp"],
             "symbol": "BTCUSD", "resolution": "60"},
        ]  # fmt: skip
        assert listed[0]["timestamp"] > 1_700_000_000
        one = {**WHO, "chart": str(chart_id)}
        loaded = await ok(await client.get(f"{BASE}/charts", params=one))
        assert (loaded["id"], loaded["name"], loaded["content"]) == (
            chart_id,
            "BTC 1h",
            '{"panes": []}',
        )

        # The library sends multipart forms too; with chart= the layout is overwritten.
        update = {"name": "BTC 4h", "content": "{}", "symbol": "BTCUSD", "resolution": "240"}
        files = {k: (None, v) for k, v in update.items()}
        assert await ok(await client.post(f"{BASE}/charts", params=one, files=files)) == {
            "status": "ok"
        }
        assert (await ok(await client.get(f"{BASE}/charts", params=one)))["content"] == "{}"
        assert [
            c["resolution"] for c in await ok(await client.get(f"{BASE}/charts", params=WHO))
        ] == ["240"]

        # Another user of the same client (auth off: taken as given) sees nothing of it.
        other = {"client": "tv", "user": "bob"}
        assert await ok(await client.get(f"{BASE}/charts", params=other)) == []
        missing = await client.get(f"{BASE}/charts", params={**other, "chart": str(chart_id)})
        assert missing.status_code == 404
        assert (
            missing.json()["status"] == "error"
            and missing.json()["errorCode"] == "LAYOUT_NOT_FOUND"
        )

        assert await ok(await client.delete(f"{BASE}/charts", params=one)) == {"status": "ok"}
        assert (await client.delete(f"{BASE}/charts", params=one)).status_code == 404
        assert await ok(await client.get(f"{BASE}/charts", params=WHO)) == []


async def test_study_and_drawing_templates(serve: Serve) -> None:
    async with serve() as client:
        url = f"{BASE}/study_templates"
        for content in ("{v1}", "{v2}"):  # the same name again replaces it
            await ok(await client.post(url, params=WHO, data={"name": "RSI", "content": content}))
        await ok(await client.post(url, params=WHO, data={"name": "MACD", "content": "{m}"}))
        assert await ok(await client.get(url, params=WHO)) == [{"name": "RSI"}, {"name": "MACD"}]
        rsi = await ok(await client.get(url, params={**WHO, "template": "RSI"}))
        assert rsi == {"name": "RSI", "content": "{v2}"}
        await ok(await client.delete(url, params={**WHO, "template": "RSI"}))
        assert (await client.get(url, params={**WHO, "template": "RSI"})).status_code == 404

        url = f"{BASE}/drawing_templates"
        line = {**WHO, "tool": "LineToolTrendLine"}
        await ok(await client.post(url, params={**line, "name": "red"}, data={"content": "{r}"}))
        await ok(await client.post(url, params={**line, "name": "blue"}, data={"content": "{b}"}))
        other_tool = {**WHO, "tool": "LineToolRay", "name": "red"}
        await ok(await client.post(url, params=other_tool, data={"content": "{ray}"}))
        assert await ok(await client.get(url, params=line)) == ["red", "blue"]
        red = await ok(await client.get(url, params={**line, "name": "red"}))
        assert red == {"name": "red", "content": "{r}"}
        await ok(await client.delete(url, params={**line, "name": "red"}))
        assert await ok(await client.get(url, params=line)) == ["blue"]
        assert await ok(await client.get(url, params={**WHO, "tool": "LineToolRay"})) == ["red"]


async def test_with_auth_the_user_is_the_caller(serve: Serve) -> None:
    async with serve(enable_auth=True) as client:
        url = f"{BASE}/charts"
        form = {"name": "n", "content": "{}", "symbol": "S", "resolution": "D"}
        assert (await client.get(url, params=WHO)).status_code == 401
        saved = await ok(await client.post(url, params=WHO, data=form, headers=ALICE))
        refused = await client.get(url, params={**WHO, "user": "bob"}, headers=ALICE)
        assert (refused.status_code, refused.json()["status"]) == (403, "error")
        assert "your own identity" in refused.json()["message"]
        bob = auth("bob")
        stolen = await client.get(url, params={**WHO, "chart": str(saved["id"])}, headers=bob)
        assert stolen.status_code == 403
        mine = await client.get(url, params={"client": "tv", "user": "bob"}, headers=bob)
        assert await ok(mine) == []


async def test_bad_requests_are_refused_and_store_nothing(serve: Serve) -> None:
    async with serve(max_layout_bytes=2048) as client:
        url = f"{BASE}/charts"
        form = {"name": "n", "content": "x" * 2049, "symbol": "S", "resolution": "D"}
        big = await client.post(url, params=WHO, data=form)
        assert (big.status_code, big.json()["errorCode"]) == (413, "LAYOUT_TOO_LARGE")
        urlencoded = {"Content-Type": "application/x-www-form-urlencoded"}
        body = b"content=" + b"x" * 80_000
        huge = await client.post(url, params=WHO, content=body, headers=urlencoded)
        assert huge.status_code == 413
        for params, data in (
            ({"user": "alice"}, {"name": "n", "content": "{}"}),
            ({"client": "tv"}, {"name": "n", "content": "{}"}),
            (WHO, {"content": "{}"}),
            (WHO, {"name": "n"}),
            (WHO, {"name": "n" * 200, "content": "{}"}),
            ({**WHO, "chart": "abc"}, {"name": "n", "content": "{}"}),
            # Digits to str.isdigit, not to int(): superscripts, and other scripts' digits.
            ({**WHO, "chart": "\u00b9"}, {"name": "n", "content": "{}"}),
            ({**WHO, "chart": "\u0663"}, {"name": "n", "content": "{}"}),
            ({**WHO, "chart": "12345"}, {"name": "n", "content": "{}"}),
        ):
            response = await client.post(url, params=params, data=data)
            assert response.status_code in (404, 422), (params, data, response.text)
            assert response.json()["status"] == "error" and response.json()["message"]
        wrong_type = await client.post(url, params=WHO, json={"name": "n", "content": "{}"})
        assert wrong_type.status_code == 415 and "form" in wrong_type.json()["message"]
        assert wrong_type.json()["errorCode"] == "UNSUPPORTED_MEDIA_TYPE"
        assert (await client.delete(url, params=WHO)).status_code == 422
        assert (await client.get(f"{BASE}/drawing_templates", params=WHO)).status_code == 422
        assert await ok(await client.get(url, params=WHO)) == []


async def test_saves_of_one_new_template_name_that_race_leave_one_template(
    database_url: str | None,
) -> None:
    app = create_app(settings_for(database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            url = f"{BASE}/study_templates"
            drawing = {**WHO, "tool": "LineToolTrendLine", "name": "red"}
            sent = [f"{{v{i}}}" for i in range(12)]
            answers = await asyncio.gather(
                *(client.post(url, params=WHO, data={"name": "RSI", "content": c}) for c in sent),
                *(
                    client.post(f"{BASE}/drawing_templates", params=drawing, data={"content": c})
                    for c in sent
                ),
            )
            for answer in answers:
                await ok(answer)
            store = app.state.saveload._store
            owner = Owner("tv", "alice")
            studies = await store.listing(owner, "study_template")
            drawings = await store.listing(owner, "drawing_template", "LineToolTrendLine")
            assert [t.name for t in studies] == ["RSI"] and [t.name for t in drawings] == ["red"]
            rsi = await ok(await client.get(url, params={**WHO, "template": "RSI"}))
            assert rsi["content"] in sent
            # Saving again replaces it in place; chart layouts may still share a name.
            await ok(await client.post(url, params=WHO, data={"name": "RSI", "content": "{new}"}))
            assert [t.id for t in await store.listing(owner, "study_template")] == [studies[0].id]
            for _ in range(2):
                form = {"name": "BTC", "content": "{}", "symbol": "BTC", "resolution": "60"}
                await ok(await client.post(f"{BASE}/charts", params=WHO, data=form))
            assert len(await store.listing(owner, "chart")) == 2

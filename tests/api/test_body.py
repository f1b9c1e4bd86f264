"""Request bodies: the media types a route takes, gzip uploads and their inflated size."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request, Response

from lightweight_charts_pro_backend.api.body import read_body
from lightweight_charts_pro_backend.api.errors import install_error_handlers

JSON = {"Content-Type": "application/json"}
GZIP_JSON = {**JSON, "Content-Encoding": "gzip"}
POINTS = [{"time": 1_700_000_000 + 60 * i, "value": float(i)} for i in range(2000)]
SERIES = {"paneId": 0, "seriesType": "line", "data": POINTS}

Factory = Callable[..., Any]

#: Every route that reads a JSON body, with a body it accepts.
JSON_ROUTES = [
    ("POST", "/api/charts/c2", {"title": "x"}),
    ("POST", "/api/charts/c1/data/s2", SERIES),
    ("PATCH", "/api/charts/c1/data/s1", {"data": [{"time": 1_800_000_000, "value": 1}]}),
    ("POST", "/api/charts/c1/history", {"seriesId": "s1", "count": 5}),
    ("POST", "/api/charts/c1/annotations", {"kind": "vertical_line", "points": [{"time": 1}]}),
]

NOT_JSON = [
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonp",
    "text/json",
]


async def _chart(client: httpx.AsyncClient) -> bytes:
    created = await client.post("/api/charts/c1/data/s1", json=SERIES)
    assert created.status_code == 200, created.text
    return (await client.get("/api/charts")).content + (await client.get("/api/charts/c1")).content


async def _state(client: httpx.AsyncClient) -> bytes:
    return (await client.get("/api/charts")).content + (await client.get("/api/charts/c1")).content


def _refused(response: httpx.Response, code: str = "UNSUPPORTED_MEDIA_TYPE") -> None:
    assert response.status_code == 415, response.text
    envelope = response.json()
    assert envelope["errorCode"] == code
    assert envelope["requestId"] == response.headers["x-request-id"]
    assert isinstance(envelope["detail"], str) and len(envelope["detail"]) > 10


@pytest.mark.parametrize("content_type", [*NOT_JSON, None])
@pytest.mark.parametrize(("method", "path", "body"), JSON_ROUTES)
async def test_json_routes_take_only_application_json(
    client: httpx.AsyncClient, method: str, path: str, body: object, content_type: str | None
) -> None:
    before = await _chart(client)
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await client.request(method, path, content=orjson.dumps(body), headers=headers)
    _refused(response)
    assert "application/json" in response.json()["detail"]
    assert await _state(client) == before
    accepted = await client.request(method, path, content=orjson.dumps(body), headers=JSON)
    assert accepted.status_code in (200, 201), accepted.text


async def test_a_cross_site_text_plain_post_writes_nothing(client: httpx.AsyncClient) -> None:
    # What a page on another site can send without a preflight, auth off.
    body = b'{"seriesType":"line","data":[{"time":1,"value":1}]}'
    headers = {"Content-Type": "text/plain", "Origin": "https://evil.example"}
    response = await client.post("/api/charts/victim/data/s", content=body, headers=headers)
    _refused(response)
    assert (await client.get("/api/charts")).json() == {"charts": []}


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", " application/json"]
)
async def test_parameters_and_case_of_the_media_type_do_not_matter(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await client.post(
        "/api/charts/c1/data/s1",
        content=orjson.dumps(SERIES),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 200, response.text


async def test_an_empty_body_needs_no_content_type(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/charts/c1")).status_code == 201
    assert (await client.post("/api/charts/c1", headers={"Content-Length": "0"})).status_code == 200


async def test_a_chunked_body_without_content_type_is_refused(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield orjson.dumps(SERIES)

    response = await client.post("/api/charts/c1/data/s1", content=chunks())
    _refused(response)
    assert (await client.get("/api/charts")).json() == {"charts": []}


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP"])
async def test_a_gzipped_upload_is_stored_as_sent(client: httpx.AsyncClient, encoding: str) -> None:
    headers = {**JSON, "Content-Encoding": encoding}
    response = await client.post(
        "/api/charts/c1/data/s1", content=gzip.compress(orjson.dumps(SERIES)), headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["count"] == len(POINTS)
    stored = (await client.get("/api/charts/c1/history/0/s1?count=10000")).json()
    assert stored["data"] == POINTS


async def test_gzip_members_in_a_row_are_one_body(client: httpx.AsyncClient) -> None:
    raw = orjson.dumps(SERIES)
    half = len(raw) // 2
    body = gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    response = await client.post("/api/charts/c1/data/s1", content=body, headers=GZIP_JSON)
    assert response.status_code == 200, response.text
    assert response.json()["count"] == len(POINTS)


@pytest.mark.parametrize("encoding", ["br", "deflate", "compress", "zstd", "gzip, gzip"])
async def test_other_content_encodings_are_refused(
    client: httpx.AsyncClient, encoding: str
) -> None:
    headers = {**JSON, "Content-Encoding": encoding}
    response = await client.post(
        "/api/charts/c1/data/s1", content=zlib.compress(orjson.dumps(SERIES)), headers=headers
    )
    _refused(response, "UNSUPPORTED_CONTENT_ENCODING")
    assert response.headers["accept-encoding"] == "gzip"
    assert (await client.get("/api/charts")).json() == {"charts": []}


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("not gzip", orjson.dumps(SERIES)),
        ("truncated", gzip.compress(orjson.dumps(SERIES))[:-20]),
        ("garbage after a member", gzip.compress(orjson.dumps(SERIES)) + b"junk"),
    ],
)
async def test_a_broken_gzip_body_is_a_422(
    client: httpx.AsyncClient, name: str, body: bytes
) -> None:
    response = await client.post("/api/charts/c1/data/s1", content=body, headers=GZIP_JSON)
    assert response.status_code == 422, (name, response.text)
    assert "not valid gzip" in response.json()["detail"]
    assert (await client.get("/api/charts")).json() == {"charts": []}


def gzip_bomb(inflated_mib: int) -> bytes:
    """A valid single-member gzip of ``inflated_mib`` MiB of zeros, about 1 KB per MiB: one
    compressed MiB repeated (a full flush makes each block independent of the previous)."""
    zeros = bytes(1 << 20)
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    block = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    last_block = deflater.flush()[:-8]  # the trailer is written below, for the whole body
    crc = 0
    for _ in range(inflated_mib):
        crc = zlib.crc32(zeros, crc)
    trailer = struct.pack("<II", crc, (inflated_mib << 20) & 0xFFFFFFFF)
    return first + block * (inflated_mib - 1) + last_block + trailer


async def test_a_gzip_bomb_is_refused_without_being_inflated(make_client: Factory) -> None:
    bomb = gzip_bomb(1024)  # 1 GiB of zeros in about 1 MB
    limit = 4 << 20
    assert len(bomb) < limit
    async with make_client(max_request_body_bytes=limit) as client:
        tracemalloc.start()
        try:
            response = await client.post("/api/charts/c1/data/s1", content=bomb, headers=GZIP_JSON)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert response.status_code == 413, response.text
        assert response.json()["errorCode"] == "PAYLOAD_TOO_LARGE"
        assert "inflates to at least" in response.json()["detail"]
        assert peak < 64 << 20, f"{peak / 2**20:.0f} MiB allocated for a 4 MiB limit"
        assert (await client.get("/api/charts")).json() == {"charts": []}


async def test_the_limit_counts_inflated_bytes(make_client: Factory) -> None:
    raw = orjson.dumps(SERIES)
    async with make_client(max_request_body_bytes=len(raw)) as client:
        exact = await client.post(
            "/api/charts/c1/data/s1", content=gzip.compress(raw), headers=GZIP_JSON
        )
        assert exact.status_code == 200, exact.text
        over = orjson.dumps({**SERIES, "options": {}})
        refused = await client.post(
            "/api/charts/c1/data/s1", content=gzip.compress(over), headers=GZIP_JSON
        )
        assert refused.status_code == 413


FORM = frozenset({"application/x-www-form-urlencoded"})


async def test_a_route_can_declare_the_media_types_it_takes() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/form")
    async def form(request: Request) -> Response:
        return Response(await read_body(request, 1024, FORM))

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        sent = await client.post("/form", data={"name": "layout"})
        assert sent.status_code == 200 and sent.content == b"name=layout"
        refused = await client.post("/form", json={"name": "layout"})
        assert refused.status_code == 415
        assert refused.json()["errorCode"] == "UNSUPPORTED_MEDIA_TYPE"
        assert "application/x-www-form-urlencoded" in refused.json()["detail"]

"""The throughput ceiling: a bare ASGI app answering every request with prebuilt bytes.

``CEILING_BODY_FILE`` names the file whose bytes are the response body (read once at import).
``CEILING_BODY_MAP`` optionally names a JSON file ``{"<raw query string>": "<body file>"}`` so
that each query of the benchmark's URL set gets exactly the bytes the product returned for it;
any other request gets the default body. Request bodies (POST/PATCH) are drained and ignored,
which makes this app also a floor for "how long does shipping N MB over loopback take".

Run: ``CEILING_BODY_FILE=/tmp/x.json uvicorn bench.ceiling_app:app``
"""

from __future__ import annotations

import json
import os
from typing import Any


def _load() -> tuple[bytes, dict[bytes, bytes]]:
    path = os.environ.get("CEILING_BODY_FILE")
    default = b'{"status":"healthy","version":"0.1.0"}'
    if path:
        with open(path, "rb") as fh:
            default = fh.read()
    by_query: dict[bytes, bytes] = {}
    map_path = os.environ.get("CEILING_BODY_MAP")
    if map_path:
        with open(map_path, encoding="utf-8") as fh:
            for query, body_path in json.load(fh).items():
                with open(body_path, "rb") as body_fh:
                    by_query[query.encode("latin-1")] = body_fh.read()
    return default, by_query


def _messages(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


_DEFAULT_BODY, _BY_QUERY_BODY = _load()
_DEFAULT = _messages(_DEFAULT_BODY)
_BY_QUERY = {q: _messages(b) for q, b in _BY_QUERY_BODY.items()}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "http":
        if scope["method"] != "GET":
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                more = message.get("more_body", False)
        start, body = _BY_QUERY.get(scope["query_string"], _DEFAULT) if _BY_QUERY else _DEFAULT
        await send(start)
        await send(body)
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

"""Reading request bodies within the request limits.

A route declares the media types it takes (JSON routes: ``application/json`` only); a body
declared as anything else, or sent without a ``Content-Type``, is refused with 415 before it is
read, so that a cross-site ``text/plain`` or form post, which a browser sends without asking,
cannot write. ``Content-Encoding: gzip`` is accepted (and identity); other encodings get 415.

``MAX_REQUEST_BODY_BYTES`` is enforced from ``Content-Length`` before anything is read and again
while the body streams in (chunked uploads carry no length); for a gzipped body it bounds the
inflated size, which is checked while inflating, so a small bomb stops at the limit.
``MAX_JSON_DEPTH`` is checked on the raw bytes before parsing: a deeply nested value would
otherwise parse, be stored, and then fail to encode when read back. Bodies are parsed with
orjson; a large one with the cycle collector paused, which otherwise rescans the heap again and
again while a million point objects are created (none of them cyclic).
"""

from __future__ import annotations

import gc
import re
import zlib
from typing import Any, Final

import numpy as np
import orjson
from fastapi import Request

from ..config import Settings
from ..errors import (
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedContentEncoding,
    UnsupportedMediaType,
)

JSON_TYPES: Final = frozenset({"application/json"})
_GZIP: Final = frozenset({"gzip", "x-gzip"})
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS  # a gzip header and trailer around deflate data
_INFLATE_STEP: Final = 1 << 20
_PAUSE_GC_ABOVE: Final = 1 << 20
# What JSON counts as whitespace; bytes.strip() would also drop form feeds and vertical tabs.
_JSON_WHITESPACE: Final = b" \t\r\n"
_ESCAPE: Final = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURAL: Final = bytes(b for b in range(256) if b not in b'"[]{}')
_STEP: Final = np.zeros(256, dtype=np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


async def read_body(
    request: Request, limit: int, media_types: frozenset[str] = JSON_TYPES
) -> bytes:
    """The whole body, decompressed, refused with 413 as soon as it is known to exceed
    ``limit`` bytes, and with 415 unless its ``Content-Type`` is one of ``media_types`` (an
    empty body may come without one) and its ``Content-Encoding`` is gzip or none."""
    headers = request.headers
    length = headers.get("content-length")
    declared = headers.get("content-type")
    if declared is None:
        if length is not None and length != "0":
            raise _undeclared(media_types)
    elif declared.partition(";")[0].strip().lower() not in media_types:
        raise UnsupportedMediaType(
            f"The request body is declared as {declared[:100]!r}; this route takes "
            f"{_listing(media_types)}."
        )
    if length is not None and length.isascii() and length.isdigit() and int(length) > limit:
        raise _too_large(int(length), limit)
    encoding = (headers.get("content-encoding") or "identity").strip().lower()
    if encoding == "identity":
        body = await _read(request, limit)
    elif encoding in _GZIP:
        body = await _inflate(request, limit)
    else:
        raise UnsupportedContentEncoding(
            f"Content-Encoding {encoding[:40]!r} is not accepted; send gzip or no encoding."
        )
    if body and declared is None:
        raise _undeclared(media_types)
    return body


async def _read(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit, at_least=True)
        chunks.append(chunk)
    return b"".join(chunks)


async def _inflate(request: Request, limit: int) -> bytes:
    """The gzip body, inflated at most ``_INFLATE_STEP`` bytes at a time and ``limit`` bytes in
    all: whatever a bomb holds beyond the limit is never produced. Several gzip members in a
    row are one body, as ``cat a.gz b.gz`` makes."""
    inflater = zlib.decompressobj(_GZIP_WBITS)
    inside = False  # a member has begun and not ended
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            data = chunk
            while data or inside:
                inside = True
                step = min(_INFLATE_STEP, limit - size + 1)
                part = inflater.decompress(data, step)
                size += len(part)
                if size > limit:
                    raise _too_large(size, limit, at_least=True, inflated=True)
                parts.append(part)
                if inflater.eof:
                    data = inflater.unused_data
                    inflater = zlib.decompressobj(_GZIP_WBITS)
                    inside = False
                else:
                    data = inflater.unconsumed_tail
                    if not data and len(part) < step:
                        break  # all input taken and all output drained: the next chunk
    except zlib.error as exc:
        raise InvalidRequest(f"The request body is not valid gzip: {exc}.") from None
    if inside:
        raise InvalidRequest("The request body is not valid gzip: it ends inside a member.")
    return b"".join(parts)


def _too_large(
    size: int, limit: int, *, at_least: bool = False, inflated: bool = False
) -> PayloadTooLarge:
    amount = f"at least {size}" if at_least else str(size)
    what = "inflates to" if inflated else "is"
    return PayloadTooLarge(
        f"The request body {what} {amount} bytes; the limit is {limit} (MAX_REQUEST_BODY_BYTES)."
    )


def _undeclared(media_types: frozenset[str]) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"The request body has no Content-Type; this route takes {_listing(media_types)}."
    )


def _listing(media_types: frozenset[str]) -> str:
    return " or ".join(sorted(media_types))


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text ``body`` (0 for a scalar).

    Works on the bytes, vectorized: strings are masked out (after dropping escape sequences,
    so an escaped quote does not end one) and the brackets outside them are summed.
    """
    if b"\\" in body:
        body = _ESCAPE.sub(b"", body)
    skeleton = np.frombuffer(body.translate(None, _NOT_STRUCTURAL), dtype=np.uint8)
    if skeleton.size == 0:
        return 0
    outside = (np.cumsum(skeleton == ord('"'), dtype=np.int32) & 1) == 0
    steps = _STEP[skeleton] * outside
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def check_depth(body: bytes, limit: int, siblings: int = 0) -> None:
    """Refuse ``body`` when it nests deeper than ``limit``.

    ``siblings``: how many elements of one array of the body are arrays or objects. No place in
    the body lies inside two of them, so at most one of their brackets encloses any place.
    """
    # Fewer opening brackets (not counting all but one sibling) than the limit cannot nest
    # deeper than it: most bodies, and arrays of a million flat points, stop here.
    if body.count(b"[") + body.count(b"{") - max(siblings - 1, 0) <= limit:
        return
    depth = json_depth(body)
    if depth > limit:
        raise InvalidRequest(
            f"The request body nests {depth} levels deep; the limit is {limit} (MAX_JSON_DEPTH)."
        )


async def read_json_object(request: Request, *, optional: bool = False) -> dict[str, Any] | None:
    """The body as a JSON object; ``None`` for an empty body when ``optional``.

    Refuses with 413 (too large), 415 (not ``application/json``, or encoded other than gzip),
    422 (empty, not JSON, not an object, nested too deeply). A body of only whitespace is not an
    empty body: it is refused as not JSON, optional or not.
    """
    settings: Settings = request.app.state.settings
    body = await read_body(request, settings.max_request_body_bytes, JSON_TYPES)
    if not body:
        if optional:
            return None
        raise InvalidRequest("The request body is empty; send a JSON object.")
    if not body.strip(_JSON_WHITESPACE):
        raise InvalidRequest("The request body is only whitespace, not JSON; send a JSON object.")
    # Parsed first (the parser has its own, higher, nesting limit), so that the depth check can
    # count the elements of the body's largest array as siblings.
    try:
        value = _loads(body)
    except orjson.JSONDecodeError as exc:
        check_depth(body, settings.max_json_depth)
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from None
    check_depth(body, settings.max_json_depth, _siblings(value))
    if not isinstance(value, dict):
        raise InvalidRequest(f"The request body must be a JSON object, not {type(value).__name__}.")
    return value


def _siblings(value: object) -> int:
    """The arrays and objects in the longest array among the top-level object's values."""
    if type(value) is not dict:
        return 0
    longest = max((v for v in value.values() if type(v) is list), key=len, default=[])
    if set(map(type, longest)) <= _CONTAINERS:
        return len(longest)
    return sum(type(item) in _CONTAINERS for item in longest)


_CONTAINERS: Final = frozenset({dict, list})


def check_point_count(data: object, settings: Settings) -> None:
    if isinstance(data, list) and len(data) > settings.max_points_per_request:
        raise PayloadTooLarge(
            f"The request carries {len(data)} points; the limit is "
            f"{settings.max_points_per_request} per request (MAX_POINTS_PER_REQUEST). "
            "Send them in several requests."
        )


def _loads(body: bytes) -> Any:
    if len(body) < _PAUSE_GC_ABOVE or not gc.isenabled():
        return orjson.loads(body)
    gc.disable()
    try:
        return orjson.loads(body)
    finally:
        gc.enable()

"""``GET /client/<name>.js``: the browser client's ES modules, so that a page can
``import { ChartsClient, bindSeries } from "/client/charts-client.js"`` without a bundler.

The files are read once; each answer carries a strong ``ETag`` and asks caches to revalidate
(``no-cache``), so an upgraded server is picked up at once and an unchanged module costs a 304.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

from fastapi import APIRouter, Request, Response

from ..errors import ChartsError

MODULE_DIR: Final = Path(__file__).resolve().parent / "module"
#: The module a page imports; the others are its own imports.
ENTRY: Final = "charts-client.js"
MEDIA_TYPE: Final = "application/javascript; charset=utf-8"
CACHE_CONTROL: Final = "public, no-cache"

router = APIRouter(include_in_schema=False)


class ModuleNotFound(ChartsError):
    status_code = 404
    error_code = "NOT_FOUND"


@dataclass(frozen=True, slots=True)
class Module:
    content: bytes
    etag: str


@lru_cache(maxsize=1)
def modules() -> dict[str, Module]:
    """The shipped modules by file name."""
    found: dict[str, Module] = {}
    for path in sorted(MODULE_DIR.glob("*.js")):
        content = path.read_bytes()
        found[path.name] = Module(content, f'"{hashlib.sha256(content).hexdigest()[:32]}"')
    return found


@router.get("/client/{name}")
async def client_module(name: str, request: Request) -> Response:
    module = modules().get(name)
    if module is None:
        raise ModuleNotFound(f"No client module {name[:64]!r}; pages import /client/{ENTRY}.")
    headers = {"ETag": module.etag, "Cache-Control": CACHE_CONTROL}
    matches = _etags(request.headers.get("if-none-match", ""))
    if module.etag in matches or "*" in matches:
        return Response(status_code=304, headers=headers)
    return Response(module.content, media_type=MEDIA_TYPE, headers=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}

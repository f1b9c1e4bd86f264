"""``/demo``: a static page and its modules; the chart library comes from a local npm install
when there is one (``make demo-assets``), else from a public CDN at the pinned version."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from ..config import Settings

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
#: The library's ES module build, bundled with its one dependency.
LIBRARY_FILE = "dist/lightweight-charts.standalone.production.mjs"
LOCAL_LIBRARY = HERE / "node_modules" / "lightweight-charts" / LIBRARY_FILE
STATIC_FILES = {"demo.js": "text/javascript", "demo.css": "text/css"}

router = APIRouter(include_in_schema=False)


def demo_enabled(settings: Settings) -> bool:
    """On, except in production unless ``ENABLE_DEMO`` asks for it."""
    return not settings.is_production or settings.enable_demo


@lru_cache(maxsize=1)
def library_version() -> str:
    """The version pinned in ``demo/package.json``, the one place it is written."""
    manifest = json.loads((HERE / "package.json").read_text())
    version: str = manifest["dependencies"]["lightweight-charts"]
    return version


def library_url() -> str:
    if LOCAL_LIBRARY.is_file():
        return "/demo/lib/lightweight-charts.mjs"
    return f"https://unpkg.com/lightweight-charts@{library_version()}/{LIBRARY_FILE}"


@router.get("/demo")
async def page() -> HTMLResponse:
    html = (STATIC / "index.html").read_text()
    html = html.replace("{{LIBRARY_URL}}", library_url()).replace(
        "{{LIBRARY_VERSION}}", library_version()
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get("/demo/")
async def page_slash() -> RedirectResponse:
    return RedirectResponse("/demo")


@router.get("/demo/static/{name}")
async def static_file(name: str) -> FileResponse:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise HTTPException(404)
    return FileResponse(STATIC / name, media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/demo/lib/lightweight-charts.mjs")
async def library() -> FileResponse:
    if not LOCAL_LIBRARY.is_file():
        raise HTTPException(404)
    return FileResponse(LOCAL_LIBRARY, media_type="text/javascript")

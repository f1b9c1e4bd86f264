"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from .. import __version__

router = APIRouter(tags=["health"])

ReadinessCheck = Callable[[], Awaitable[dict[str, Any] | None]]
CHECK_TIMEOUT_SECONDS = 3.0


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers. No I/O."""
    return {"status": "healthy", "version": __version__}


@router.get("/health/ready")
async def ready(request: Request) -> Response:
    """Readiness: every registered check passes (200) or the service is degraded (503)."""
    checks: dict[str, ReadinessCheck] = request.app.state.readiness_checks
    results = await asyncio.gather(*(_run(check) for check in checks.values()))
    detail = dict(zip(checks, results, strict=True))
    ok = all(result["status"] == "ok" for result in results)
    body = {"status": "ready" if ok else "degraded", "version": __version__, "checks": detail}
    return Response(
        orjson.dumps(body), status_code=200 if ok else 503, media_type="application/json"
    )


async def _run(check: ReadinessCheck) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        extra = await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        result: dict[str, Any] = {"status": "ok", **(extra or {})}
    except TimeoutError:
        result = {"status": "error", "error": f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"}
    except Exception as exc:
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    result["durationMs"] = round((time.perf_counter() - started) * 1000, 2)
    return result

"""The Prometheus scrape endpoint (at ``METRICS_PATH``, only when ``ENABLE_METRICS``)."""

from __future__ import annotations

import asyncio

from fastapi import Request, Response

from ..metrics import CONTENT_TYPE, Metrics, multiprocess_dir


async def scrape(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    metrics.refresh_gauges()
    if multiprocess_dir() is None:
        body = metrics.render()
    else:
        # Reading every worker's files is file I/O; keep it off the event loop.
        body = await asyncio.to_thread(metrics.render)
    return Response(body, media_type=CONTENT_TYPE)

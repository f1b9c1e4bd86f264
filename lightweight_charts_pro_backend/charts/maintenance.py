"""The background task that records read times and removes idle charts (TTL)."""

from __future__ import annotations

import asyncio
import logging
import time

from .service import ChartsService

logger = logging.getLogger(__name__)

#: Read times reach the database at least this often, far below any sensible TTL, so that a
#: cleanup in another process never removes a chart that was read here.
FLUSH_SECONDS = 60.0


async def run_maintenance(
    service: ChartsService,
    *,
    ttl_seconds: float,
    interval_seconds: float,
    flush_seconds: float = FLUSH_SECONDS,
) -> None:
    """Run until cancelled: flush read times every ``min(flush_seconds, interval_seconds)``,
    and every ``interval_seconds`` remove the charts idle for ``ttl_seconds`` (0: never).

    A failing pass (database down) is logged and retried at the next tick.
    """
    tick = min(flush_seconds, interval_seconds)
    next_cleanup = time.monotonic() + interval_seconds
    while True:
        await asyncio.sleep(max(0.0, min(tick, next_cleanup - time.monotonic())))
        try:
            if time.monotonic() >= next_cleanup:
                next_cleanup = time.monotonic() + interval_seconds
                if ttl_seconds > 0:
                    await service.expire_idle(ttl_seconds)
                    continue
            await service.flush_access()
        except Exception as exc:
            logger.warning("chart maintenance failed, retrying later: %s", exc)

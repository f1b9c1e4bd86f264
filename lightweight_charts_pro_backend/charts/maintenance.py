"""The background task that records read times and removes idle charts (TTL)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

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
    claim: Callable[[float], Awaitable[bool]] | None = None,
) -> None:
    """Run until cancelled: flush read times every ``min(flush_seconds, interval_seconds)``,
    and every ``interval_seconds`` remove the charts idle for ``ttl_seconds`` (0: never).

    ``claim(seconds)``, when given, is asked before each removal pass and True means this
    process won the pass for that long (a lock shared by the workers), so that N workers do not
    all repeat it; the losers only flush.

    A failing pass (database down) is logged and retried at the next tick.
    """
    tick = min(flush_seconds, interval_seconds)
    next_cleanup = time.monotonic() + interval_seconds
    while True:
        await asyncio.sleep(max(0.0, min(tick, next_cleanup - time.monotonic())))
        try:
            if time.monotonic() >= next_cleanup:
                next_cleanup = time.monotonic() + interval_seconds
                if ttl_seconds > 0 and (claim is None or await claim(interval_seconds * 0.9)):
                    await service.expire_idle(ttl_seconds)
                    continue
            await service.flush_access()
        except Exception as exc:
            logger.warning("chart maintenance failed, retrying later: %s", exc)

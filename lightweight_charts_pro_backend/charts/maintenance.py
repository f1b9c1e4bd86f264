"""The background task that records read times and removes idle charts (TTL)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..database import Database
from .service import ChartsService

logger = logging.getLogger(__name__)

#: Read times reach the database at least this often, far below any sensible TTL, so that a
#: cleanup in another process never removes a chart that was read here.
FLUSH_SECONDS = 60.0
#: The advisory lock of the TTL pass: PostgreSQL's are per database and take a bigint;
#: MySQL/MariaDB's are per server and take a name, prefixed with the database's.
LOCK_KEY: Final = 0x6C77635F74746C  # "lwc_ttl"
LOCK_NAME: Final = ":lwc-ttl-cleanup"


class DatabaseClaim:
    """Who runs the TTL pass when there is no Redis: the worker holding a session-level database
    lock (PostgreSQL ``pg_try_advisory_lock``, MySQL/MariaDB ``GET_LOCK``) on a connection it
    keeps for that purpose. The lock passes to another worker when its holder exits or loses
    the connection. With SQLite every process claims (one file is rarely shared by workers, and
    the pass is safe to repeat: a chart is deleted only if still idle).
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._conn: AsyncConnection | None = None

    async def __call__(self, seconds: float) -> bool:
        dialect = self._database.dialect
        if dialect not in ("postgresql", "mysql"):
            return True
        if self._conn is not None:
            try:
                await self._conn.execute(text("SELECT 1"))
                await self._conn.commit()
                return True
            except Exception as exc:
                logger.warning("lost the connection holding the cleanup lock: %s", exc)
                await self._drop()
        statement = (
            text("SELECT pg_try_advisory_lock(:key)").bindparams(key=LOCK_KEY)
            if dialect == "postgresql"
            else text("SELECT GET_LOCK(CONCAT(DATABASE(), :name), 0)").bindparams(name=LOCK_NAME)
        )
        conn = None
        try:
            conn = await self._database.engine.connect()
            taken = bool((await conn.execute(statement)).scalar())
            await conn.commit()
        except Exception as exc:
            logger.warning("could not ask for the cleanup lock: %s", exc)
            taken = False
        if taken:
            self._conn = conn
        elif conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
        return taken

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        """Give the lock back (closing its connection would too, but it returns to the pool)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        release = (
            text("SELECT pg_advisory_unlock(:key)").bindparams(key=LOCK_KEY)
            if self._database.dialect == "postgresql"
            else text("SELECT RELEASE_LOCK(CONCAT(DATABASE(), :name))").bindparams(name=LOCK_NAME)
        )
        with contextlib.suppress(Exception):
            await conn.execute(release)
            await conn.commit()
        with contextlib.suppress(Exception):
            await conn.close()


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

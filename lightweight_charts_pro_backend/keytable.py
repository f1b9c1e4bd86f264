"""API keys in the database's ``api_keys`` table: the key store when persistence is on.

A key the command line creates or revokes reaches every worker without a restart, within the
few seconds each process caches what it looked up. ``apikeys`` has the key records, the store
protocol and the settings-backed store; this module adds the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from .apikeys import KEY_CACHE_SECONDS, ApiKey
from .config import ApiKeySetting
from .database import Database, api_keys_table
from .errors import DatabaseUnavailable

# Cache entries found by id are keyed apart from those found by hash ("sha256:...").
_BY_ID: Final = "id:"


class DatabaseKeyStore:
    """Keys in the ``api_keys`` table: the store when persistence is on.

    :meth:`find` runs on every request authenticated by a key (and :meth:`find_by_id` on every
    request with a token issued for one), so they answer from a per-process cache whose entries
    live ``cache_seconds``: a key created or revoked by another process (the CLI, another
    worker) takes effect here within that time, and at once when revoked through this same
    store. Unknown hashes are cached too, so a client repeating a wrong key costs one
    query per ``cache_seconds``.

    Example::

        store = DatabaseKeyStore(database)
        await store.seed(settings.api_keys)   # keys given in API_KEYS join the table
        record = await store.find(hash_key(secret))
    """

    MAX_CACHED: Final = 4096
    CACHE_SECONDS: Final = KEY_CACHE_SECONDS

    def __init__(
        self,
        database: Database,
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        # Bumped by every change made through this store: a lookup that was under way when
        # a change landed does not cache what it read before it.
        self._changes = 0

    async def find(self, key_hash: str) -> ApiKey | None:
        return await self._find(key_hash, api_keys_table.c.key_hash == key_hash)

    async def find_by_id(self, key_id: str) -> ApiKey | None:
        return await self._find(_BY_ID + key_id, api_keys_table.c.id == key_id)

    async def _find(self, cache_key: str, where: ColumnElement[bool]) -> ApiKey | None:
        """The row matching ``where``, from the cache entry ``cache_key`` while it lasts."""
        now = self.clock()
        cached = self._cache.get(cache_key)
        if cached is not None and cached[0] > now:
            return cached[1]
        changes = self._changes

        async def lookup(conn: AsyncConnection) -> Row[Any] | None:
            return (await conn.execute(select(api_keys_table).where(where))).first()

        try:
            row = await self.database.read(lookup)
        except DatabaseUnavailable:
            # While the database is away, a key seen recently stays as it was seen.
            if cached is not None and cached[1] is not None:
                return cached[1]
            raise
        record = _from_row(row) if row is not None else None
        if changes == self._changes:
            self._cache.pop(cache_key, None)
            if len(self._cache) >= self.MAX_CACHED:
                del self._cache[next(iter(self._cache))]  # the longest cached
            self._cache[cache_key] = (now + self.cache_seconds, record)
        return record

    async def add(self, key: ApiKey) -> None:
        try:
            async with self.database.transaction(write=True) as conn:
                await conn.execute(insert(api_keys_table).values(**_to_row(key)))
        finally:
            self._forget(key.key_hash, key.id)

    async def all(self) -> list[ApiKey]:
        async def every(conn: AsyncConnection) -> list[Row[Any]]:
            return list((await conn.execute(select(api_keys_table))).all())

        records = [_from_row(row) for row in await self.database.read(every)]
        # Oldest first; keys without a creation time (from API_KEYS) first of all.
        return sorted(records, key=lambda r: (r.created_at is not None, r.created_at, r.id))

    async def revoke(self, key_id: str, at: datetime) -> ApiKey:
        table = api_keys_table
        try:
            async with self.database.transaction(write=True) as conn:
                # Only a key not revoked yet: the first revocation time stands, even when two
                # revocations race.
                await conn.execute(
                    update(table)
                    .where(table.c.id == key_id, table.c.revoked_at.is_(None))
                    .values(revoked_at=at.timestamp())
                )
                row = (await conn.execute(select(table).where(table.c.id == key_id))).first()
        finally:
            self._changes += 1
        if row is None:
            raise LookupError(f"No API key has id {key_id!r}.")
        record = _from_row(row)
        self._forget(record.key_hash, record.id)
        return record

    async def seed(self, entries: Iterable[ApiKeySetting]) -> int:
        """Add the keys of the ``API_KEYS`` setting that the table lacks (a deployment turning
        persistence on keeps its keys), and revoke in the table those the setting marks
        revoked; returns how many keys were added. A revocation in the table stands: taking a
        key out of the setting, or its ``revokedAt``, does not bring it back."""
        added = 0
        for entry in entries:
            record = ApiKey.from_setting(entry)
            stored = await self._stored(record.key_hash)
            if stored is None:
                try:
                    await self.add(record)
                except sa_exc.DBAPIError:
                    # Another worker seeding at the same time got there first (a duplicate,
                    # or a deadlock on its row); anything else is still an error.
                    if await self._stored(record.key_hash) is None:
                        raise
                else:
                    added += 1
                    continue
            if record.revoked_at is not None and (stored is None or stored.revoked_at is None):
                await self.revoke(record.id, record.revoked_at)
        return added

    async def _stored(self, key_hash: str) -> ApiKey | None:
        self._forget(key_hash)
        return await self.find(key_hash)

    def _forget(self, key_hash: str, key_id: str | None = None) -> None:
        self._changes += 1
        self._cache.pop(key_hash, None)
        if key_id is not None:
            self._cache.pop(_BY_ID + key_id, None)


def _to_row(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "key_hash": key.key_hash,
        "chart_ids": None if key.chart_ids is None else sorted(key.chart_ids),
        "scopes": key.scope,
        "created_at": None if key.created_at is None else key.created_at.timestamp(),
        "revoked_at": None if key.revoked_at is None else key.revoked_at.timestamp(),
    }


def _from_row(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        key_hash=row.key_hash,
        chart_ids=None if row.chart_ids is None else frozenset(row.chart_ids),
        scopes=frozenset(row.scopes.split()),
        created_at=_time(row.created_at),
        revoked_at=_time(row.revoked_at),
    )


def _time(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)

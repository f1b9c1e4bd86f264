"""API keys: random secrets shown once, kept only as SHA-256 hashes, each with its own charts
and scopes.

A key reads ``lcp_`` followed by 43 URL-safe characters (256 random bits). With that much
entropy a plain SHA-256 is a sound way to store it (a slow password hash buys nothing against
guessing 2^256 values) and lets a key be found by its hash in one lookup. A key's ``id`` is the
first 12 hex digits of its hash: safe to show, used to list and revoke.

Where keys live is a :class:`KeyStore`. :class:`SettingsKeyStore` serves the ``API_KEYS`` setting
(persistence off); :class:`DatabaseKeyStore` keeps them in the database's ``api_keys`` table
(persistence on), where a key the CLI creates or revokes reaches every worker without a restart.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import orjson
from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from .config import ApiKeySetting, Settings
from .database import Database, api_keys_table
from .errors import DatabaseUnavailable

API_KEY_PREFIX: Final = "lcp_"
_SCOPES: Final = ("charts:read", "charts:write")
_KEY_SHAPE: Final = re.compile(API_KEY_PREFIX + r"[A-Za-z0-9_-]{43}")


def generate_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def is_key_shaped(key: str) -> bool:
    """Whether ``key`` looks like a key :func:`generate_key` makes (``lcp_`` and 43 URL-safe
    characters)."""
    return _KEY_SHAPE.fullmatch(key) is not None


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def key_id(key_hash: str) -> str:
    return key_hash.removeprefix("sha256:")[:12]


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: everything but the secret itself."""

    id: str
    name: str
    key_hash: str
    chart_ids: frozenset[str] | None
    scopes: frozenset[str]
    created_at: datetime | None
    revoked_at: datetime | None = None

    @property
    def scope(self) -> str:
        return " ".join(scope for scope in _SCOPES if scope in self.scopes)

    def to_setting(self) -> dict[str, object]:
        """The ``API_KEYS`` entry for this key."""
        entry: dict[str, object] = {"id": self.id, "name": self.name, "hash": self.key_hash}
        if self.chart_ids is not None:
            entry["charts"] = sorted(self.chart_ids)
        entry["scope"] = self.scope
        if self.created_at is not None:
            entry["createdAt"] = self.created_at.isoformat(timespec="seconds")
        if self.revoked_at is not None:
            entry["revokedAt"] = self.revoked_at.isoformat(timespec="seconds")
        return entry

    @classmethod
    def from_setting(cls, entry: ApiKeySetting) -> ApiKey:
        return cls(
            id=entry.id,
            name=entry.name,
            key_hash=entry.hash,
            chart_ids=None if entry.charts is None else frozenset(entry.charts),
            scopes=frozenset(entry.scope.split()),
            created_at=entry.created_at,
            revoked_at=entry.revoked_at,
        )


def new_api_key(
    name: str,
    chart_ids: Iterable[str] | None = None,
    scopes: Iterable[str] = _SCOPES,
    *,
    now: datetime | None = None,
) -> tuple[str, ApiKey]:
    """A fresh secret and the record to store for it. Show the secret once; store the record.

    Example::

        secret, record = new_api_key("ingest", ["chart1"], ["charts:write"])
        await keystore.add(record)
    """
    secret = generate_key()
    digest = hash_key(secret)
    record = ApiKey(
        id=key_id(digest),
        name=name,
        key_hash=digest,
        chart_ids=None if chart_ids is None else frozenset(chart_ids),
        scopes=frozenset(scopes),
        created_at=(now or datetime.now(UTC)).replace(microsecond=0),
    )
    return secret, record


class KeyStore(Protocol):
    """Where API keys are kept. :meth:`find` runs on every request authenticated by a key, so a
    store backed by a database should answer it from a short-lived cache, and must drop a key
    from that cache when it is revoked through this same store."""

    async def find(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked ones included (the caller tells them apart)."""
        ...

    async def add(self, key: ApiKey) -> None: ...

    async def all(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        ...

    async def revoke(self, key_id: str, at: datetime) -> ApiKey:
        """Mark the key revoked at ``at`` and return it; ``LookupError`` for an unknown id.
        Revoking a revoked key keeps its first revocation time."""
        ...


class SettingsKeyStore:
    """Keys from the ``API_KEYS`` setting, held in memory.

    ``add`` and ``revoke`` change only this process's copy; :meth:`setting_line` renders the
    setting to write back, which is how the CLI manages keys while persistence is off.
    """

    def __init__(self, entries: Iterable[ApiKeySetting]) -> None:
        self._keys: dict[str, ApiKey] = {}
        for entry in entries:
            record = ApiKey.from_setting(entry)
            self._keys[record.key_hash] = record

    async def find(self, key_hash: str) -> ApiKey | None:
        return self._keys.get(key_hash)

    async def add(self, key: ApiKey) -> None:
        self._keys[key.key_hash] = key

    async def all(self) -> list[ApiKey]:
        return list(self._keys.values())

    async def revoke(self, key_id: str, at: datetime) -> ApiKey:
        for key_hash, record in self._keys.items():
            if record.id == key_id:
                if record.revoked_at is None:
                    record = self._keys[key_hash] = replace(record, revoked_at=at)
                return record
        raise LookupError(f"No API key has id {key_id!r}.")

    def setting_line(self) -> str:
        entries = [record.to_setting() for record in self._keys.values()]
        return "API_KEYS='" + orjson.dumps(entries).decode() + "'"


class DatabaseKeyStore:
    """Keys in the ``api_keys`` table: the store when persistence is on.

    :meth:`find` runs on every request authenticated by a key, so it answers from a per-process
    cache whose entries live ``cache_seconds``: a key created or revoked by another process (the
    CLI, another worker) takes effect here within that time, and at once when revoked through
    this same store. Unknown hashes are cached too, so a client repeating a wrong key costs one
    query per ``cache_seconds``.

    Example::

        store = DatabaseKeyStore(database)
        await store.seed(settings.api_keys)   # keys given in API_KEYS join the table
        record = await store.find(hash_key(secret))
    """

    MAX_CACHED: Final = 4096
    CACHE_SECONDS: Final = 5.0

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
        now = self.clock()
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
        changes = self._changes

        async def lookup(conn: AsyncConnection) -> Row[Any] | None:
            query = select(api_keys_table).where(api_keys_table.c.key_hash == key_hash)
            return (await conn.execute(query)).first()

        try:
            row = await self.database.read(lookup)
        except DatabaseUnavailable:
            # While the database is away, a key seen recently stays as it was seen.
            if cached is not None and cached[1] is not None:
                return cached[1]
            raise
        record = _from_row(row) if row is not None else None
        if changes == self._changes:
            self._cache.pop(key_hash, None)
            if len(self._cache) >= self.MAX_CACHED:
                del self._cache[next(iter(self._cache))]  # the longest cached
            self._cache[key_hash] = (now + self.cache_seconds, record)
        return record

    async def add(self, key: ApiKey) -> None:
        try:
            async with self.database.transaction(write=True) as conn:
                await conn.execute(insert(api_keys_table).values(**_to_row(key)))
        finally:
            self._forget(key.key_hash)

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
        self._forget(record.key_hash)
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

    def _forget(self, key_hash: str) -> None:
        self._changes += 1
        self._cache.pop(key_hash, None)


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


@asynccontextmanager
async def open_keystore(settings: Settings) -> AsyncIterator[KeyStore]:
    """The key store the CLI manages and the app reads: the ``api_keys`` table when persistence
    is on (made if missing, with the ``API_KEYS`` setting's keys added), else the ``API_KEYS``
    setting."""
    if not settings.enable_persistence:
        yield SettingsKeyStore(settings.api_keys)
        return
    database = Database.from_settings(settings)
    try:
        # The command adds the table to a database made by an older version, but makes no
        # database of its own: a DATABASE_URL pointing at the wrong place is an error here.
        if not await database.has_tables():
            raise NoKeyTable(
                f"The database at {database.url} has no tables: start the server once, or run "
                "`alembic upgrade head`, with the same DATABASE_URL."
            )
        await database.create_tables()
        store = DatabaseKeyStore(database)
        await store.seed(settings.api_keys)
        yield store
    finally:
        await database.close()


class NoKeyTable(LookupError):
    """Persistence is on but the database has no tables (so no ``api_keys``) yet."""

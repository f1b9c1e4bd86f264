"""API keys: random secrets shown once, kept only as SHA-256 hashes, each with its own charts
and scopes.

A key reads ``lcp_`` followed by 43 URL-safe characters (256 random bits). With that much
entropy a plain SHA-256 is a sound way to store it (a slow password hash buys nothing against
guessing 2^256 values) and lets a key be found by its hash in one lookup. A key's ``id`` is the
first 12 hex digits of its hash: safe to show, used to list and revoke.

Where keys live is a :class:`KeyStore`. :class:`SettingsKeyStore` serves the ``API_KEYS`` setting
(persistence off); ``keytable.DatabaseKeyStore`` keeps them in the database's ``api_keys`` table
(persistence on), where a key the CLI creates or revokes reaches every worker without a restart.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final, Protocol

import orjson

from .config import ApiKeySetting, Settings

API_KEY_PREFIX: Final = "lcp_"
_SCOPES: Final = ("charts:read", "charts:write")
_KEY_SHAPE: Final = re.compile(API_KEY_PREFIX + r"[A-Za-z0-9_-]{43}")
#: How long a server may answer from its cache of keys read from the database.
KEY_CACHE_SECONDS: Final = 5.0


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

    async def find_by_id(self, key_id: str) -> ApiKey | None:
        """The key with this id, revoked ones included; a token issued for a key names it by
        id, and runs this on every request, so it is cached as :meth:`find` is."""
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
        self._hashes: dict[str, str] = {}
        for entry in entries:
            record = ApiKey.from_setting(entry)
            self._keys[record.key_hash] = record
            self._hashes[record.id] = record.key_hash

    async def find(self, key_hash: str) -> ApiKey | None:
        return self._keys.get(key_hash)

    async def find_by_id(self, key_id: str) -> ApiKey | None:
        key_hash = self._hashes.get(key_id)
        return None if key_hash is None else self._keys.get(key_hash)

    async def add(self, key: ApiKey) -> None:
        self._keys[key.key_hash] = key
        self._hashes[key.id] = key.key_hash

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


@asynccontextmanager
async def open_keystore(settings: Settings) -> AsyncIterator[KeyStore]:
    """The key store the CLI manages and the app reads: the ``api_keys`` table when persistence
    is on (made if missing, with the ``API_KEYS`` setting's keys added), else the ``API_KEYS``
    setting."""
    if not settings.enable_persistence:
        yield SettingsKeyStore(settings.api_keys)
        return
    # Imported here: ``keytable`` builds on this module.
    from .database import Database
    from .keytable import DatabaseKeyStore

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

"""API keys in the database (persistence on): the store on every backend, its cache, the
command line and a running app sharing one table."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from lightweight_charts_pro_backend import app_production
from lightweight_charts_pro_backend.apikeys import (
    ApiKey,
    SettingsKeyStore,
    hash_key,
    new_api_key,
)
from lightweight_charts_pro_backend.auth import Authenticator, decode_access_token
from lightweight_charts_pro_backend.config import ApiKeySetting
from lightweight_charts_pro_backend.database import Database
from lightweight_charts_pro_backend.errors import DatabaseUnavailable, InvalidApiKey
from lightweight_charts_pro_backend.keytable import DatabaseKeyStore

from .conftest import SECRET, ClientFactory, make_settings
from .test_cli import run

pytestmark = pytest.mark.slow

CREATED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def open_database(url: str) -> Database:
    database = Database.from_settings(make_settings(database_url=url))
    await database.create_tables()
    return database


async def test_keys_round_trip_through_the_table(database_url: str) -> None:
    database = await open_database(database_url)
    try:
        store = DatabaseKeyStore(database)
        secret, record = new_api_key("ingest", ["a", "b"], ["charts:write"], now=CREATED)
        _, everything = new_api_key("all", now=CREATED.replace(hour=13))
        await store.add(record)
        await store.add(everything)
        assert await store.find(hash_key(secret)) == record
        assert await store.find(hash_key("lcp_not-a-key")) is None
        assert await store.all() == [record, everything]

        revoked_at = CREATED.replace(day=2)
        revoked = await store.revoke(record.id, revoked_at)
        assert revoked.revoked_at == revoked_at
        again = await store.revoke(record.id, revoked_at.replace(day=3))
        assert again.revoked_at == revoked_at, "the first revocation time stands"
        assert (await store.find(record.key_hash)) == revoked
        with pytest.raises(LookupError, match="No API key has id"):
            await store.revoke("0" * 12, revoked_at)
        async with database.transaction() as conn:
            stored = (await conn.execute(text("SELECT key_hash FROM api_keys"))).scalars().all()
        assert sorted(stored) == sorted([record.key_hash, everything.key_hash])
        assert secret not in stored
    finally:
        await database.close()


async def test_other_processes_see_a_revocation_within_the_cache_time(tmp_path: Path) -> None:
    database = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    try:
        clock = FakeClock()
        cli = DatabaseKeyStore(database)
        worker = DatabaseKeyStore(database, cache_seconds=5, clock=clock)
        secret, record = new_api_key("ingest", now=CREATED)
        assert await worker.find(hash_key(secret)) is None  # not there yet, and cached so
        await cli.add(record)
        assert await worker.find(hash_key(secret)) is None
        clock.now += 5
        assert await worker.find(hash_key(secret)) == record
        await cli.revoke(record.id, CREATED.replace(day=2))
        assert (await worker.find(hash_key(secret))).revoked_at is None  # type: ignore[union-attr]
        clock.now += 5
        assert (await worker.find(hash_key(secret))).revoked_at is not None  # type: ignore[union-attr]
        await worker.revoke(record.id, CREATED.replace(day=3))
        assert (await worker.find(hash_key(secret))).revoked_at == CREATED.replace(day=2)  # type: ignore[union-attr]
    finally:
        await database.close()


async def test_keys_of_the_setting_join_the_table_once(tmp_path: Path) -> None:
    database = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    try:
        _, record = new_api_key("from-env", ["a"], now=CREATED)
        setting = ApiKeySetting.model_validate(record.to_setting())
        store = DatabaseKeyStore(database)
        assert await store.seed([setting]) == 1
        assert await store.seed([setting]) == 0
        await store.revoke(record.id, CREATED.replace(day=2))
        assert await DatabaseKeyStore(database).seed([setting]) == 0
        (stored,) = await store.all()
        assert stored.revoked_at is not None, "a revocation in the table outlives the setting"

        _, other = new_api_key("revoked-in-env", now=CREATED)
        await store.seed([ApiKeySetting.model_validate(other.to_setting())])
        revoked_at = CREATED.replace(day=5)
        revoked = ApiKeySetting.model_validate({**other.to_setting(), "revokedAt": revoked_at})
        assert await DatabaseKeyStore(database).seed([revoked]) == 0
        assert (await store.find(other.key_hash)).revoked_at == revoked_at  # type: ignore[union-attr]
    finally:
        await database.close()


async def test_the_command_line_and_a_running_app_share_the_keys(
    tmp_path: Path, app_client: ClientFactory
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'charts.db'}"
    env = f"SECRET_KEY={SECRET}\nENABLE_PERSISTENCE=true\nDATABASE_URL={database_url}\n"
    (tmp_path / ".env").write_text(env)
    refused = run(tmp_path, "apikey", "create", "--name", "ingest", ok=False).stderr
    assert "has no tables" in refused and "alembic upgrade head" in refused
    run(tmp_path, "db", "upgrade")
    created = run(tmp_path, "apikey", "create", "--name", "ingest", "--charts", "a").stdout
    secret = created.splitlines()[1]
    assert secret.startswith("lcp_") and "Stored in the database" in created
    assert "API_KEYS" not in created and secret not in (tmp_path / ".env").read_text()
    listing = run(tmp_path, "apikey", "list").stdout.splitlines()
    key_id = listing[1].split()[0]
    assert listing[1].split()[1:3] == ["ingest", "a"]

    settings = make_settings(enable_persistence=True, database_url=database_url)
    app = app_production.create_app(settings)
    headers = {"X-API-Key": secret}
    clock = FakeClock()
    async with app_client(settings, app=app) as client:
        app.state.keystore.clock = clock
        assert (await client.post("/api/charts/a", headers=headers)).status_code == 201
        assert (await client.post("/api/charts/b", headers=headers)).status_code == 403
        run(tmp_path, "apikey", "revoke", key_id)
        assert (await client.get("/api/charts/a", headers=headers)).status_code == 200  # cached
        clock.now += DatabaseKeyStore.CACHE_SECONDS
        refused = await client.get("/api/charts/a", headers=headers)
    assert refused.status_code == 401 and refused.json()["errorCode"] == "API_KEY_REVOKED"


async def test_a_token_issued_for_a_key_dies_with_the_key(
    tmp_path: Path, app_client: ClientFactory
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'charts.db'}"
    database = await open_database(database_url)
    try:
        command_line = DatabaseKeyStore(database)  # another process: the CLI
        secret, record = new_api_key("browser", ["a"], now=CREATED)
        await command_line.add(record)
        settings = make_settings(enable_persistence=True, database_url=database_url)
        app = app_production.create_app(settings)
        clock = FakeClock()
        async with app_client(settings, app=app) as client:
            app.state.keystore.clock = clock
            issued = await client.post("/api/auth/token", headers={"X-API-Key": secret})
            token = issued.json()["accessToken"]
            assert decode_access_token(token, settings).key_id == record.id
            headers = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/api/charts/a", headers=headers)).status_code == 404
            await command_line.revoke(record.id, CREATED.replace(day=2))
            clock.now += DatabaseKeyStore.CACHE_SECONDS
            for path in ("/api/charts/a", "/api/charts/a/history/0/s"):
                refused = await client.get(path, headers=headers)
                assert refused.status_code == 401, path
                assert refused.json()["errorCode"] == "API_KEY_REVOKED"
                assert "issued for has been revoked" in refused.json()["detail"]
    finally:
        await database.close()


async def test_a_key_seen_recently_survives_a_database_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    try:
        clock = FakeClock()
        store = DatabaseKeyStore(database, clock=clock)
        secret, record = new_api_key("ingest", now=CREATED)
        await store.add(record)
        assert await store.find(hash_key(secret)) == record
        clock.now += 60

        async def away(work: object) -> None:
            raise DatabaseUnavailable("The database is unavailable.")

        monkeypatch.setattr(database, "read", away)
        assert await store.find(hash_key(secret)) == record, "the last answer stands"
        with pytest.raises(DatabaseUnavailable):
            await store.find(hash_key("lcp_" + "b" * 43))
    finally:
        await database.close()


async def test_a_string_that_is_no_key_is_not_looked_up() -> None:
    class Counting(SettingsKeyStore):
        lookups = 0

        async def find(self, key_hash: str) -> ApiKey | None:
            Counting.lookups += 1
            return await super().find(key_hash)

    authenticator = Authenticator(make_settings(), Counting([]))
    for junk in ("lcp_", "lcp_short", "lcp_" + "a" * 44, "lcp_" + "!" * 43):
        with pytest.raises(InvalidApiKey):
            await authenticator.api_key_principal(junk)
    assert Counting.lookups == 0
    with pytest.raises(InvalidApiKey):
        await authenticator.api_key_principal("lcp_" + "a" * 43)
    assert Counting.lookups == 1

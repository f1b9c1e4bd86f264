"""Open sockets lose their credentials: an API key revoked with the command line (another
process, as an operator does it) closes the sockets opened with it, and those opened with a token
issued for it, with 1008 and the reason, whether they send frames or only listen; sockets of
other keys stay open and keep receiving. A token's expiry closes its socket at ``exp``.

A real uvicorn process with persistence on (keys in the database's ``api_keys`` table)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from lightweight_charts_pro_backend.apikeys import ApiKey, new_api_key
from lightweight_charts_pro_backend.auth import create_access_token
from lightweight_charts_pro_backend.config import Settings
from lightweight_charts_pro_backend.database import Database
from lightweight_charts_pro_backend.keytable import DatabaseKeyStore

from .conftest import ServerProcess, open_socket, receive

pytestmark = pytest.mark.slow

SECRET = "credentials-test-" + "0123456789abcdef" * 3
#: A key revoked elsewhere is seen within the key cache's 5 s, and sockets are checked every 5 s.
CLOSE_WITHIN_SECONDS = 15.0


@pytest.fixture
def keyed_server(
    make_server: Any, tmp_path: Path
) -> Iterator[tuple[ServerProcess, dict[str, tuple[str, ApiKey]], dict[str, str]]]:
    """A server with auth and persistence, two API keys in its table (``revoked``, to be revoked,
    and ``kept``), and the settings the command line needs to reach the same database."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    keys = {"revoked": new_api_key("doomed"), "kept": new_api_key("kept")}

    async def add_keys() -> None:
        settings = Settings(_env_file=None, database_url=url, enable_persistence=True)  # type: ignore[call-arg]
        database = Database.from_settings(settings)
        try:
            await database.create_tables()
            store = DatabaseKeyStore(database)
            for _, record in keys.values():
                await store.add(record)
        finally:
            await database.close()

    asyncio.run(add_keys())
    env = {
        "ENABLE_AUTH": "true",
        "ENABLE_PERSISTENCE": "true",
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET,
    }
    server = make_server(**{name.lower(): value for name, value in env.items()})
    yield server, keys, env


def revoke_with_the_command_line(key_id: str, env: dict[str, str], workdir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lightweight_charts_pro_backend.cli", "apikey", "revoke", key_id],
        cwd=workdir,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def closed_with(ws: ClientConnection, within: float) -> tuple[int | None, str | None, float]:
    """Read until the server closes the socket: its code, its reason and when (monotonic);
    data frames are allowed until then."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    frame = closed.value.rcvd
    return (frame.code, frame.reason, time.monotonic()) if frame else (None, None, 0.0)


async def test_revoking_an_api_key_closes_its_sockets_and_those_of_its_tokens(
    keyed_server: tuple[ServerProcess, dict[str, tuple[str, ApiKey]], dict[str, str]],
    tmp_path: Path,
) -> None:
    server, keys, env = keyed_server
    revoked_key, revoked = keys["revoked"]
    kept_key, _ = keys["kept"]
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10.0) as http:
        issued = await http.post("/api/auth/token", headers={"X-API-Key": revoked_key})
        assert issued.status_code == 200, issued.text
        token = issued.json()["accessToken"]
        body = {"seriesType": "line", "data": [{"time": 1, "value": 1.0}]}
        created = await http.post(
            "/api/charts/c/data/s", json=body, headers={"X-API-Key": kept_key}
        )
        assert created.status_code == 200, created.text

        listening, _ = await open_socket(
            server.ws_url("c"), additional_headers={"X-API-Key": revoked_key}
        )
        chatty, _ = await open_socket(
            server.ws_url("c"), additional_headers={"X-API-Key": revoked_key}
        )
        by_token, _ = await open_socket(server.ws_url("c"), subprotocols=["bearer", token])
        other, _ = await open_socket(server.ws_url("c"), additional_headers={"X-API-Key": kept_key})

        async def upsert(at: int) -> None:
            patch = {"data": [{"time": at, "value": 2.0}]}
            resp = await http.patch(
                "/api/charts/c/data/s", json=patch, headers={"X-API-Key": kept_key}
            )
            assert resp.status_code == 200, resp.text

        await upsert(2)
        for ws in (listening, chatty, by_token, other):
            assert (await receive(ws))["type"] == "data_update"

        await asyncio.to_thread(revoke_with_the_command_line, revoked.id, env, tmp_path)
        revoked_at = time.monotonic()

        async def chat() -> None:
            """Frames every half second: each is checked before it is answered."""
            for _ in range(int(CLOSE_WITHIN_SECONDS * 2)):
                await chatty.send('{"type":"ping"}')
                await asyncio.sleep(0.5)

        chatter = asyncio.create_task(chat())
        closes = await asyncio.gather(
            closed_with(listening, CLOSE_WITHIN_SECONDS),
            closed_with(chatty, CLOSE_WITHIN_SECONDS),
            closed_with(by_token, CLOSE_WITHIN_SECONDS),
        )
        chatter.cancel()
        reasons = [(code, reason) for code, reason, _ in closes]
        assert reasons == [
            (1008, "The API key has been revoked."),
            (1008, "The API key has been revoked."),
            (1008, "The API key this token was issued for has been revoked."),
        ]
        assert all(at - revoked_at < CLOSE_WITHIN_SECONDS for _, _, at in closes)

        # The other key's socket is still open and still receives.
        await upsert(3)
        update = await receive(other)
        assert (update["type"], update["data"]) == ("data_update", [{"time": 3, "value": 2.0}])
        await other.send('{"type":"ping","requestId":"still"}')
        assert (await receive(other))["requestId"] == "still"
        await other.close()

        # The key opens no socket any more.
        async with connect(
            server.ws_url("c"), additional_headers={"X-API-Key": revoked_key}
        ) as refused:
            code, reason, _ = await closed_with(refused, 10.0)
        assert (code, reason) == (1008, "The API key has been revoked.")


async def test_a_token_expiring_closes_its_socket_at_exp(
    keyed_server: tuple[ServerProcess, dict[str, tuple[str, ApiKey]], dict[str, str]],
) -> None:
    server, _, _ = keyed_server
    settings = Settings(_env_file=None, secret_key=SECRET)  # type: ignore[call-arg]
    token = create_access_token({"sub": "brief"}, settings, timedelta(seconds=3))
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    ws, _ = await open_socket(server.ws_url("c"), subprotocols=["bearer", token])
    await ws.send(orjson.dumps({"type": "ping", "requestId": 1}).decode())
    assert (await receive(ws))["type"] == "pong"
    code, reason, _ = await closed_with(ws, 10.0)
    assert (code, reason) == (1008, "The token has expired.")
    assert exp <= time.time() < exp + 1.5

"""Real uvicorn processes on free loopback ports, and helpers for `websockets` clients."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from ..servers import free_port, uvicorn_command

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0

#: Settings every test server starts with: no .env, no persistence, no limits in the way.
BASE_ENV = {
    "ENVIRONMENT": "development",
    "ENABLE_PERSISTENCE": "false",
    "ENABLE_RATE_LIMITING": "false",
    "ENABLE_AUTH": "false",
    "LOG_LEVEL": "WARNING",
}


@dataclass
class ServerProcess:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, chart_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/charts/{chart_id}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode


def start_server(workdir: Path, port: int | None = None, **settings: object) -> ServerProcess:
    """``uvicorn ...app:create_app --factory`` in ``workdir`` with ``settings`` as env vars, on
    ``port`` (default: a free one; give the old one to restart a server in place)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = {**os.environ, **BASE_ENV, "PYTHONUNBUFFERED": "1"}
    env.update({name.upper(): str(value) for name, value in settings.items()})
    log_path = workdir / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            uvicorn_command(port),
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = ServerProcess(port, proc, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.http_url}/health", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server did not answer /health within {START_TIMEOUT} s:\n{server.log()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per test module: small frame cap and resume history, small chunks."""
    srv = start_server(
        tmp_path_factory.mktemp("ws-server"),
        websocket_max_message_bytes=4096,
        websocket_resume_events=8,
        chunk_size_threshold=50,
        default_chunk_size=20,
    )
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with their own settings; stopped at the end of the test."""
    started: list[ServerProcess] = []

    def make(**settings: object) -> ServerProcess:
        srv = start_server(tmp_path / f"server-{len(started)}", **settings)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop(signal.SIGKILL)


@pytest.fixture
async def http(server: ServerProcess) -> Any:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10.0) as client:
        yield client


async def receive(ws: ClientConnection, wait: float = 5.0) -> dict[str, Any]:
    """The next frame as JSON; skips the server's periodic pings."""
    while True:
        async with asyncio.timeout(wait):
            frame = await ws.recv()
        message: dict[str, Any] = orjson.loads(frame)
        if message.get("type") != "ping":
            return message


async def open_socket(url: str, **kwargs: Any) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect and read the ``connected`` frame, which must come first."""
    ws = await connect(url, **kwargs)
    async with asyncio.timeout(5.0):
        hello = orjson.loads(await ws.recv())
    assert hello["type"] == "connected", hello
    return ws, hello


def candles(start: int, count: int, step: int = 60) -> list[dict[str, Any]]:
    return [
        {
            "time": start + i * step,
            "open": 10.0 + i,
            "high": 12.0 + i,
            "low": 9.0 + i,
            "close": 11.0 + i,
        }
        for i in range(count)
    ]


async def socket_count(http_client: httpx.AsyncClient) -> int:
    body = (await http_client.get("/health/ready")).json()
    return int(body["checks"]["websockets"]["connections"])

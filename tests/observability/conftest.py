"""Real server processes for the observability tests: uvicorn and gunicorn on free loopback
ports, each in its own temporary working directory, stdout captured to a file for parsing."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, timeout: float = 10
) -> Reply:
    """One request on a fresh connection (so that gunicorn spreads them over its workers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@dataclass
class ServerProcess:
    command: Sequence[str]
    workdir: Path
    env: dict[str, str]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "server.log"

    def start(self) -> ServerProcess:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        # gunicorn >= 25.1 opens a control socket in $XDG_RUNTIME_DIR (else ~/.gunicorn); give
        # each server its own so parallel servers never share one.
        env["XDG_RUNTIME_DIR"] = str(self.workdir)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                list(self.command),
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()[-3000:]}")
            try:
                if request(self.port, "GET", "/health", timeout=2).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /health:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        """Every line of output parsed as JSON; a line that is not JSON fails the test."""
        lines = []
        for line in self.output().splitlines():
            if line.strip():
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    pytest.fail(f"log line is not JSON: {line!r}")
        return lines

    def wait_for_line(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.json_lines():
                if predicate(line):
                    return line
            if time.monotonic() > deadline:
                pytest.fail(f"no matching log line in:\n{self.output()[-3000:]}")
            time.sleep(0.05)


BASE_ENV = {
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "ENABLE_METRICS": "true",
    "ENABLE_RATE_LIMITING": "false",
    "ENVIRONMENT": "development",
}


@pytest.fixture
def uvicorn_server(tmp_path: Path) -> Iterator[Any]:
    """Start ``app`` (an import string of a factory) under uvicorn; stopped after the test."""
    servers: list[ServerProcess] = []

    def start(app: str, env: dict[str, str] | None = None) -> ServerProcess:
        port = free_port()
        command = [
            str(BIN / "uvicorn"),
            app,
            "--factory",
            "--app-dir",
            str(ROOT),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        server = ServerProcess(command, tmp_path, {**BASE_ENV, **(env or {})}, port)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def gunicorn_server(tmp_path: Path) -> Iterator[Any]:
    """Start the production app under gunicorn with the repository's ``gunicorn.conf.py``."""
    servers: list[ServerProcess] = []

    def start(
        workers: int, env: dict[str, str] | None = None, extra: Sequence[str] = ()
    ) -> ServerProcess:
        port = free_port()
        command = [
            str(BIN / "gunicorn"),
            "--config",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            *extra,
        ]
        server = ServerProcess(command, tmp_path, {**BASE_ENV, **(env or {})}, port)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()

"""Real servers for tests: Redis and gunicorn, on free loopback ports, in temporary directories.

Plain context managers, so any test module can wrap them in fixtures of the scope it needs::

    @pytest.fixture
    def redis(tmp_path):
        with redis_server(tmp_path) as server:
            yield server
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(predicate: object, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start within {STARTUP_SECONDS:g} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass(frozen=True)
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *args: str) -> str:
        """Run a command with ``redis-cli`` against this server and return its output."""
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            check=True,
            capture_output=True,
            timeout=10,
        )
        return out.stdout.decode()


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    """A throwaway ``redis-server`` (no persistence) in ``directory``; skips when not installed
    (``scripts/system-deps.sh`` installs it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (run scripts/system-deps.sh)")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory / "redis.log"
    process = subprocess.Popen(
        [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(log),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for(lambda: _ping(port), "redis-server", process, log)
        yield RedisServer(port, directory, process)
    finally:
        _stop(process)


@dataclass(frozen=True)
class GunicornServer:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        import psutil

        return [child.pid for child in psutil.Process(self.process.pid).children()]


@contextmanager
def gunicorn_server(
    app: str,
    directory: Path,
    *,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
) -> Iterator[GunicornServer]:
    """``gunicorn APP --factory``-style (``module:create_app()``) with uvicorn workers on a free
    port, started from ``directory`` (so no project ``.env`` is read) and stopped at the end."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory / "gunicorn.log"
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ENABLE_", "RATE_LIMIT", "REDIS_", "SECRET_", "TRUSTED_"))
    }
    environment.update(env or {})
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", app,
                "--bind", f"127.0.0.1:{port}",
                "--workers", str(workers),
                "--worker-class", "uvicorn.workers.UvicornWorker",
                "--graceful-timeout", "5",
            ],
            cwd=directory,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = GunicornServer(port, process, log)
    try:
        _wait_for(
            lambda: _healthy(server.url) and len(server.worker_pids()) >= workers,
            "gunicorn",
            process,
            log,
        )
        yield server
    finally:
        _stop(process)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def uvicorn_thread(app: object) -> Iterator[str]:
    """Serve the ASGI ``app`` (lifespan included) with uvicorn in a thread of this process on a
    free loopback port; yields ``127.0.0.1:PORT``. For real sockets against an app a test
    built, without a subprocess."""
    import threading

    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", ws_ping_interval=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)

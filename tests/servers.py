"""Throwaway servers for tests and benchmarks: real binaries on free loopback ports in
temporary directories, stopped (and their files removed) when done.

Databases (PostgreSQL, MariaDB) can be stopped, killed with SIGKILL and started again on the same
port and data directory, which is what the durability and outage tests need::

    with PostgresServer() as pg:
        url = pg.create_database("t1")   # postgresql+asyncpg://...@127.0.0.1:<port>/t1

Redis and gunicorn are plain context managers, so any test module can wrap them in fixtures of
the scope it needs::

    with redis_server(tmp_path) as redis:
        ...
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

START_TIMEOUT = 60.0


async def wait_for_window_room(seconds: float) -> None:
    """Shared rate limits count in one-minute windows aligned to the clock: start a test that
    counts refusals with at least ``seconds`` of the current window left."""
    import asyncio

    left = 60 - time.time() % 60
    if left < seconds:
        await asyncio.sleep(left + 0.2)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str, *patterns: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if matches:
            return matches[-1]
    return None


def missing(what: str) -> None:
    """Fail under CI (the packages must be installed there), skip on a developer machine."""
    import pytest

    message = f"{what} is not installed; run scripts/system-deps.sh"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class ServerError(RuntimeError):
    pass


class ServerProcess:
    """One server process with its own directory; ``start``/``stop``/``kill`` keep port and data."""

    name = "server"
    #: The signal asking for a clean shutdown that does not wait for clients to leave.
    stop_signal = signal.SIGTERM

    def __init__(self, temp_root: str | None = None) -> None:
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix=f"test-{self.name}-", dir=temp_root))
        self.log_path = self.base / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._initialized = False

    # subclass hooks
    def _initialize(self) -> None:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _wait_ready(self, deadline: float) -> None:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def start(self) -> None:
        if not self._initialized:
            self._initialize()
            self._initialized = True
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self._command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **self._popen_kwargs(),
            )
        deadline = time.monotonic() + START_TIMEOUT
        try:
            self._wait_ready(deadline)
        except Exception:
            self.kill()
            raise

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerError(
                f"{self.name} exited with code {self.proc.returncode}; log:\n{self.log_tail()}"
            )

    def stop(self, timeout: float = 30.0) -> None:
        """A clean shutdown, waiting for the process group to exit."""
        self._signal(self.stop_signal, timeout)

    def kill(self) -> None:
        """SIGKILL the server and everything it started, as a crash would."""
        self._signal(signal.SIGKILL, 30.0)

    def _signal(self, signum: int, timeout: float) -> None:
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        # children (PostgreSQL backends) may outlive the leader briefly; wait for the group
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            if signum == signal.SIGKILL:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.05)
        self.proc = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unprivileged_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root; as root we run it as ``nobody``."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("nobody")


class PostgresServer(ServerProcess):
    """PostgreSQL via initdb and postgres, trust authentication on 127.0.0.1 only."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown; SIGTERM would wait for every session to end
    user = "charts"
    password = "charts-password"

    def __init__(self) -> None:
        initdb = find_binary("initdb", "/usr/lib/postgresql/*/bin/initdb")
        postgres = find_binary("postgres", "/usr/lib/postgresql/*/bin/postgres")
        if not initdb or not postgres:
            missing("PostgreSQL (initdb, postgres)")
        assert initdb and postgres
        self.bin = Path(postgres).resolve().parent
        self.os_user = _unprivileged_user()
        # the unprivileged user must reach the directory: not below a private TMPDIR
        super().__init__(temp_root="/tmp" if self.os_user is not None else None)
        self.data = self.base / "data"
        self.sockets = self.base / "sockets"

    def _popen_kwargs(self) -> dict[str, Any]:
        if self.os_user is None:
            return {}
        return {"user": self.os_user.pw_uid, "group": self.os_user.pw_gid}

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=120, **self._popen_kwargs()
        )
        if proc.returncode != 0:
            raise ServerError(f"{' '.join(args)} failed: {proc.stderr or proc.stdout}")
        return proc

    def _initialize(self) -> None:
        self.sockets.mkdir()
        if self.os_user is not None:
            for path in (self.base, self.sockets):
                os.chown(path, self.os_user.pw_uid, self.os_user.pw_gid)
            os.chown(self.log_path.parent, self.os_user.pw_uid, self.os_user.pw_gid)
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        if self.os_user is not None:
            os.chown(pwfile, self.os_user.pw_uid, self.os_user.pw_gid)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def _command(self) -> list[str]:
        return [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.sockets),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=128MB",
            "-c",
            "max_wal_size=2GB",
        ]

    def _wait_ready(self, deadline: float) -> None:
        isready = self.bin / "pg_isready"
        while time.monotonic() < deadline:
            self.check_alive()
            proc = subprocess.run(
                [str(isready), "-h", "127.0.0.1", "-p", str(self.port), "-d", "postgres"],
                capture_output=True,
                timeout=10,
            )
            if proc.returncode == 0:
                return
            time.sleep(0.1)
        raise ServerError(f"PostgreSQL did not start in {START_TIMEOUT}s; log:\n{self.log_tail()}")

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = {**os.environ, "PGPASSWORD": self.password}
        proc = subprocess.run(
            [
                str(self.bin / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        if proc.returncode != 0:
            raise ServerError(f"psql {sql!r} failed: {proc.stderr}")
        return proc.stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)


class MariaDBServer(ServerProcess):
    """MariaDB via mariadb-install-db and mariadbd, with a password user for 127.0.0.1."""

    name = "mariadb"
    user = "charts"
    password = "charts-password"

    def __init__(self) -> None:
        self.install_db = find_binary("mariadb-install-db", "/usr/bin/mariadb-install-db")
        self.mariadbd = find_binary("mariadbd", "/usr/sbin/mariadbd")
        self.client = find_binary("mariadb", "/usr/bin/mariadb")
        if not self.install_db or not self.mariadbd or not self.client:
            missing("MariaDB (mariadb-install-db, mariadbd, mariadb)")
        super().__init__()
        self.data = self.base / "data"
        self.socket = self.base / "mariadb.sock"
        self._user_created = False

    def _initialize(self) -> None:
        assert self.install_db
        proc = subprocess.run(
            [
                self.install_db,
                "--no-defaults",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                f"--tmpdir={self.tmpdir}",
                *(["--user=root"] if os.geteuid() == 0 else []),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if proc.returncode != 0:
            raise ServerError(f"mariadb-install-db failed: {proc.stderr or proc.stdout}")

    @property
    def tmpdir(self) -> Path:
        path = self.base / "tmp"
        path.mkdir(exist_ok=True)
        return path

    def _command(self) -> list[str]:
        assert self.mariadbd
        return [
            self.mariadbd,
            "--no-defaults",
            f"--datadir={self.data}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.base / 'mariadb.pid'}",
            # Temporary tables in the server's own directory, not in /tmp shared with others.
            f"--tmpdir={self.tmpdir}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=256M",
            "--innodb-log-file-size=256M",
            "--max-allowed-packet=256M",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            *(["--user=root"] if os.geteuid() == 0 else []),
        ]

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                self.sql("SELECT 1")
            except ServerError:
                time.sleep(0.1)
                continue
            if not self._user_created:
                self.sql(
                    f"CREATE USER IF NOT EXISTS '{self.user}'@'127.0.0.1' "
                    f"IDENTIFIED BY '{self.password}'; "
                    f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'127.0.0.1'; FLUSH PRIVILEGES;"
                )
                self._user_created = True
            return
        raise ServerError(f"MariaDB did not start in {START_TIMEOUT}s; log:\n{self.log_tail()}")

    def sql(self, statement: str) -> str:
        assert self.client
        proc = subprocess.run(
            [
                self.client,
                "--no-defaults",
                f"--socket={self.socket}",
                "-uroot",
                "-N",
                "-e",
                statement,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise ServerError(f"mariadb {statement!r} failed: {proc.stderr}")
        return proc.stdout

    def url(self, database: str, driver: str = "mysql+aiomysql") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, driver: str = "mysql+aiomysql") -> str:
        self.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return self.url(name, driver)


# Redis, gunicorn and in-thread uvicorn

STARTUP_SECONDS = 30.0


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


def restart_redis(redis: RedisServer) -> subprocess.Popen[bytes]:
    """A new redis-server on the same port as the killed one."""
    binary = shutil.which("redis-server")
    assert binary is not None
    process = subprocess.Popen(
        [binary, "--port", str(redis.port), "--bind", "127.0.0.1", "--dir", str(redis.directory),
         "--save", "", "--appendonly", "no", "--logfile", str(redis.directory / "redis-2.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if redis.command("PING").strip() == "PONG":
                return process
        except subprocess.CalledProcessError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("redis did not restart")


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
    config: Path | None = None,
) -> Iterator[GunicornServer]:
    """``gunicorn APP --factory``-style (``module:create_app()``) with uvicorn workers on a free
    port, started from ``directory`` (so no project ``.env`` is read) and stopped at the end.
    ``config``: a gunicorn configuration file to read (the project's ``gunicorn.conf.py``);
    the options given here still override it."""
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
                *(["--config", str(config)] if config is not None else []),
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


def uvicorn_command(
    port: int, app: str = "lightweight_charts_pro_backend.app:create_app"
) -> list[str]:
    """The argv of a real uvicorn process serving the app factory ``app`` on loopback ``port``."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]

"""Chaos soak: the guide's deployment under load while its processes and dependencies fail.

Two replicas (gunicorn masters reading the project's ``gunicorn.conf.py``, two workers each) over
one PostgreSQL and one redis-server, all on loopback. During the run:

- writers PATCH points onto a few charts through either replica; every point has a time of its
  own and carries the id of its write as its value, and every 2xx answer's ``version`` is kept;
- readers page the charts' history, and read the newest acknowledged write back with its
  ``min_version`` (it must be there);
- sockets (200 by default) follow the charts and behave as careful clients: they apply
  ``version == last + 1``, reconnect with ``resume`` (``sinceVersion`` = the last version applied)
  to the other replica, and on ``resync_required`` fetch a snapshot (``get_initial_data`` with
  ``minVersion`` = what they already have) and go on from its version;
- faults, one after the other: SIGKILL a worker; SIGKILL Redis and start it again; stop
  PostgreSQL with a fast shutdown (``pg_ctl stop -m fast``) and start it again; SIGKILL a whole
  replica (master and workers) and start it again on the same port.

Afterwards it checks that nothing acknowledged was lost and nobody was misinformed:

- every write answered 2xx is in the database with its points, and in the reads of every worker
  of every replica: with ``min_version`` = the chart's highest acknowledged version, and without
  a token after a settle; no two acknowledged writes of a chart share a version;
- a read carrying a write's ``min_version`` always had the write;
- every socket applied each chart's versions in order with no duplicate (replays the protocol
  documents, and updates already in a snapshot, are counted apart), and any gap was announced by
  ``resync_required``; every frame of a version carried that write's points; at the end every
  socket is at its chart's version in the database;
- no 5xx except 503s while Redis or PostgreSQL was down (or within the grace after it came back),
  no transport error except on a replica while its worker or itself was killed, no other
  unexpected status;
- each service process's resident memory, measured after a settle, within 20% of its warm level
  (measured the same way before the faults; a restarted process is held to the level of the
  process it replaced).

Run: ``python -m bench.chaos_soak [--seconds 120 --sockets 200 --charts 4 --writers 4]``
Prints the counts and PASS or FAIL; exits 1 on failure. The test suite runs a short version
(``tests/realtime/test_chaos.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, BenchError, free_port, log

APP = "lightweight_charts_pro_backend.app_production:create_app()"
CONFIG = ROOT / "gunicorn.conf.py"
SERIES = "s"
FIRST_TIME = 1_700_000_040
STEP = 60
FAULTS = ("worker", "redis", "postgres", "replica")
#: Faults after which a 503 is the documented answer (a dependency is down).
DEPENDENCY_FAULTS = frozenset({"redis", "postgres"})
#: Statuses a write or a read may answer besides 2xx while nothing is wrong: none.
HTTP_TIMEOUT = 30.0
#: Environment variables of the caller that would change the servers' settings.
_FOREIGN_SETTINGS = (
    "ENABLE_",
    "RATE_LIMIT",
    "REDIS_",
    "SECRET_",
    "TRUSTED_",
    "DATABASE_",
    "WEB_CONCURRENCY",
    "GUNICORN_",
    "PROMETHEUS_",
)

Points = tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class SoakConfig:
    seconds: float = 120.0
    charts: int = 4
    sockets: int = 200
    writers: int = 4
    readers: int = 4
    #: Pause of each writer (reader) between two requests.
    write_pause: float = 0.1
    read_pause: float = 0.1
    replicas: int = 2
    workers: int = 2
    faults: tuple[str, ...] = FAULTS
    #: Load before the warm memory is measured and the first fault comes.
    warmup_seconds: float = 15.0
    #: How long Redis, PostgreSQL and a killed replica stay down.
    outage_seconds: float = 3.0
    #: After a dependency is back, how long a 503 still counts as its outage.
    grace_seconds: float = 5.0
    #: Wait before the reads without a token (the bus delay and the version sweep are below it).
    settle_seconds: float = 6.0
    rss_tolerance: float = 0.20
    seed: int = 19


@dataclass
class Write:
    id: int
    chart: str
    points: Points
    replica: int
    started: float
    ended: float = 0.0
    status: int | None = None
    version: int | None = None
    error: str = ""


@dataclass
class Request:
    """One HTTP exchange of the load: ``status`` None for a transport error."""

    kind: str
    replica: int
    at: float
    status: int | None
    error: str = ""


@dataclass
class Fault:
    kind: str
    started: float
    ended: float = 0.0
    replica: int | None = None
    detail: str = ""

    def covers(self, at: float, grace: float) -> bool:
        end = self.ended if self.ended else float("inf")
        return self.started <= at <= end + grace


@dataclass(frozen=True)
class Snapshot:
    """What one ``initial_data_response`` said the chart was at ``version``: the newest
    points of its series, from ``times[0]`` on."""

    chart: str
    version: int
    times: array[int]
    values: array[float]


@dataclass
class Counts:
    frames: int = 0
    updates: int = 0
    applied: int = 0
    replayed_again: int = 0
    covered_by_snapshot: int = 0
    resyncs_spontaneous: int = 0
    resyncs_on_resume: int = 0
    resumed: int = 0
    snapshots: int = 0
    snapshot_errors: int = 0
    pings: int = 0
    connects: int = 0
    disconnects: int = 0
    socket_errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Report:
    config: SoakConfig
    writes: list[Write]
    requests: list[Request]
    faults: list[Fault]
    counts: Counts
    failures: list[str]
    notes: list[str]
    rss: list[tuple[str, int, int]]
    duration: float

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        acked = sum(1 for w in self.writes if w.version is not None)
        reads = [r for r in self.requests if r.kind.startswith("read")]
        statuses = Counter(
            "transport" if r.status is None else str(r.status) for r in self.requests
        )
        unavailable = sum(1 for r in self.requests if r.status == 503)
        c = self.counts
        lines = [
            f"run: {self.duration:.0f} s, {self.config.replicas} replicas x "
            f"{self.config.workers} workers, {self.config.charts} charts, "
            f"{self.config.sockets} sockets",
            f"writes: {len(self.writes)} sent, {acked} acknowledged "
            f"({sum(len(w.points) for w in self.writes if w.version is not None)} points)",
            f"reads: {len(reads)} ({sum(1 for r in reads if r.status == 200)} answered 200)",
            "statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())),
            f"503s: {unavailable}",
            f"frames: {c.frames} received, {c.updates} data_update, {c.applied} applied, "
            f"{c.replayed_again} replayed again by resume, {c.covered_by_snapshot} already "
            f"in a snapshot",
            f"resyncs: {c.resyncs_spontaneous} resync_required sent by the server, "
            f"{c.resyncs_on_resume} in answer to resume; {c.resumed} resumed; "
            f"{c.snapshots} snapshots ({c.snapshot_errors} refused and retried)",
            f"sockets: {c.connects} connects, {c.disconnects} disconnects"
            + (f" ({dict(c.socket_errors)})" if c.socket_errors else ""),
            f"faults: {len(self.faults)}",
        ]
        grace = self.config.grace_seconds
        for fault in self.faults:
            took = fault.ended - fault.started if fault.ended else float("nan")
            during = [r for r in self.requests if fault.covers(r.at, grace)]
            unavailable = sum(1 for r in during if r.status == 503)
            dropped = sum(1 for r in during if r.status is None)
            lines.append(
                f"  {fault.kind:<8} {fault.detail}: back after {took:.1f} s; until {grace:g} s "
                f"later {len(during)} requests, {unavailable} 503s, {dropped} transport errors"
            )
        if self.rss:
            lines.append("rss after settle vs warm:")
            for name, warm, now in self.rss:
                lines.append(
                    f"  {name:<28} {warm / 2**20:7.1f} MiB -> {now / 2**20:7.1f} MiB "
                    f"({(now - warm) / warm:+.0%})"
                )
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"FAIL: {failure}" for failure in self.failures[:40]]
        if len(self.failures) > 40:
            lines.append(f"... and {len(self.failures) - 40} more failures")
        lines.append("PASS" if self.passed else f"FAIL ({len(self.failures)} failures)")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Processes


def server_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The settings of every replica: the guide's deployment, limits too high to refuse."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_SETTINGS)}
    return {
        **inherited,
        "PYTHONUNBUFFERED": "1",
        "ENVIRONMENT": "development",
        "ENABLE_PERSISTENCE": "true",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ENABLE_AUTH": "false",
        "ENABLE_RATE_LIMITING": "true",
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "RATE_LIMIT_HISTORY_PER_MINUTE": "1000000",
        "LOG_LEVEL": "WARNING",
    }


class Replica:
    """A gunicorn master with the project's configuration, in a process group of its own so
    that it can be killed whole, and started again on the same port."""

    def __init__(self, index: int, workdir: Path, env: dict[str, str], workers: int) -> None:
        self.index = index
        self.name = f"replica-{index}"
        self.port = free_port()
        self.workdir = workdir
        self.workers = workers
        self.env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics")}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        (self.workdir / "metrics").mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "server.log", "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "gunicorn", APP,
                    "--config", str(CONFIG),
                    "--bind", f"127.0.0.1:{self.port}",
                    "--workers", str(self.workers),
                ],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited: {self.log_tail()}")
            if len(self.worker_pids()) >= self.workers and self._healthy():
                return
            time.sleep(0.1)
        raise BenchError(f"{self.name} did not start in {timeout:g} s: {self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        with contextlib.suppress(psutil.Error):
            return [child.pid for child in psutil.Process(self.proc.pid).children()]
        return []

    def pids(self) -> dict[str, int]:
        """The master's and the workers' pids, named for the report."""
        if self.proc is None:
            return {}
        named = {f"{self.name} master": self.proc.pid}
        for pid in sorted(self.worker_pids()):
            named[f"{self.name} worker {pid}"] = pid
        return named

    def kill(self) -> None:
        """SIGKILL the master and its workers at once, as a machine failure would."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.proc = None

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def log_tail(self, limit: int = 3000) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-limit:] if path.exists() else ""


class Dependencies:
    """PostgreSQL and Redis with the two restarts the soak needs."""

    def __init__(self, root: Path) -> None:
        from tests.servers import PostgresServer

        if shutil.which("redis-server") is None:
            raise BenchError("redis-server is not installed (run scripts/system-deps.sh)")
        self.root = root
        self.postgres = PostgresServer()
        self._stack = ExitStack()
        self.redis: Any = None
        self.redis_proc: subprocess.Popen[bytes] | None = None

    @property
    def redis_url(self) -> str:
        return str(self.redis.url)

    def start(self) -> str:
        """Start both; returns the URL of a new database."""
        from tests.servers import redis_server

        self.postgres.start()
        database_url = self.postgres.create_database("chaos")
        self.redis = self._stack.enter_context(redis_server(self.root / "redis"))
        self.redis_proc = self.redis.process
        return database_url

    def kill_redis(self) -> None:
        if self.redis_proc is not None:
            self.redis_proc.kill()
            self.redis_proc.wait(timeout=30)

    def start_redis(self) -> None:
        from tests.servers import restart_redis

        self.redis_proc = restart_redis(self.redis)

    def stop_postgres(self) -> None:
        """``pg_ctl stop -m fast``: sessions are ended at once, the shutdown is clean."""
        pg = self.postgres
        pg._run(str(pg.bin / "pg_ctl"), "-D", str(pg.data), "stop", "-m", "fast", "-w")
        if pg.proc is not None:
            pg.proc.wait(timeout=60)
            pg.proc = None

    def start_postgres(self) -> None:
        self.postgres.start()

    def psql(self, sql: str) -> str:
        return self.postgres.psql(sql, database="chaos")

    def close(self) -> None:
        if self.redis_proc is not None and self.redis_proc.poll() is None:
            self.redis_proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.redis_proc.wait(timeout=10)
        self._stack.close()
        self.postgres.close()


def rss_of(pid: int) -> int | None:
    with contextlib.suppress(psutil.Error):
        return int(psutil.Process(pid).memory_info().rss)
    return None


def settled_rss(pids: dict[str, int], timeout: float = 20.0, quiet: float = 1.5) -> dict[str, int]:
    """Each process's RSS once none has moved by more than 1% for ``quiet`` seconds (or at
    ``timeout``)."""
    deadline = time.monotonic() + timeout
    readings: list[tuple[float, dict[str, int]]] = []
    while True:
        now = time.monotonic()
        sample = {name: rss for name, pid in pids.items() if (rss := rss_of(pid)) is not None}
        readings.append((now, sample))
        window = [s for t, s in readings if now - t <= quiet]
        steady = readings[0][0] <= now - quiet and all(
            max(s.get(name, 0) for s in window) - min(s.get(name, 0) for s in window)
            <= 0.01 * max(s.get(name, 0) for s in window)
            for name in sample
        )
        if steady or now >= deadline:
            return sample
        time.sleep(0.25)


# --------------------------------------------------------------------------------------------
# The load


class Soak:
    """The state shared by the load's tasks, and the checks over what they recorded."""

    def __init__(self, config: SoakConfig, replicas: list[Replica]) -> None:
        self.config = config
        self.replicas = replicas
        self.rng = random.Random(config.seed)
        self.charts = [f"chaos-{i}" for i in range(config.charts)]
        self.writes: list[Write] = []
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.counts = Counts()
        self._next_write = itertools.count(1)
        self._next_slot = {chart: 0 for chart in self.charts}
        #: The newest acknowledged write of each chart (highest version).
        self.newest: dict[str, Write] = {}
        #: The points the first socket to apply (chart, version) saw.
        self.frame_points: dict[tuple[str, int], Points] = {}
        self.snapshots: list[Snapshot] = []
        self.load_running = asyncio.Event()
        self.load_running.set()
        #: The writers and readers stop when this is set; the sockets when ``closing`` is.
        self.load_stopped = False
        self.closing = False
        self.followers: list[Follower] = []
        self.started = time.monotonic()

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def elapsed(self, at: float) -> str:
        return f"t={at - self.started:.1f}s"

    # writes

    def new_write(self, chart: str, replica: int, count: int) -> Write:
        write_id = next(self._next_write)
        slot = self._next_slot[chart]
        self._next_slot[chart] = slot + count
        points = tuple((FIRST_TIME + STEP * (slot + i), float(write_id)) for i in range(count))
        write = Write(write_id, chart, points, replica, time.monotonic())
        self.writes.append(write)
        return write

    async def send_write(self, client: httpx.AsyncClient, write: Write, *, create: bool) -> None:
        url = f"{self.replicas[write.replica].url}/api/charts/{write.chart}/data/{SERIES}"
        body: dict[str, Any] = {
            "paneId": 0,
            "data": [{"time": t, "value": v} for t, v in write.points],
        }
        try:
            if create:
                resp = await client.post(url, json={**body, "seriesType": "line"})
            else:
                resp = await client.patch(url, json=body)
        except httpx.HTTPError as exc:
            write.ended = time.monotonic()
            write.error = repr(exc)
            self.requests.append(Request("write", write.replica, write.ended, None, write.error))
            return
        write.ended = time.monotonic()
        write.status = resp.status_code
        self.requests.append(Request("write", write.replica, write.ended, resp.status_code))
        if 200 <= resp.status_code < 300:
            write.version = int(resp.json()["version"])
            newest = self.newest.get(write.chart)
            if newest is None or (newest.version or 0) < write.version:
                self.newest[write.chart] = write
        else:
            write.error = resp.text[:200]

    async def writer(self, client: httpx.AsyncClient) -> None:
        while not self.load_stopped:
            await self.load_running.wait()
            chart = self.rng.choice(self.charts)
            replica = self.rng.randrange(len(self.replicas))
            write = self.new_write(chart, replica, self.rng.randint(1, 3))
            await self.send_write(client, write, create=False)
            await asyncio.sleep(self.config.write_pause)

    # reads

    async def get(
        self, client: httpx.AsyncClient, kind: str, replica: int, path: str
    ) -> httpx.Response | None:
        try:
            resp = await client.get(self.replicas[replica].url + path)
        except httpx.HTTPError as exc:
            self.requests.append(Request(kind, replica, time.monotonic(), None, repr(exc)))
            return None
        self.requests.append(Request(kind, replica, time.monotonic(), resp.status_code))
        return resp

    async def reader(self, client: httpx.AsyncClient) -> None:
        before: dict[str, int | None] = {}
        while not self.load_stopped:
            await self.load_running.wait()
            chart = self.rng.choice(self.charts)
            replica = self.rng.randrange(len(self.replicas))
            newest = self.newest.get(chart)
            if newest is not None and self.rng.random() < 0.5:
                await self.read_back(client, replica, newest)
            else:
                path = f"/api/charts/{chart}/history/0/{SERIES}?count=100"
                if before.get(chart) is not None:
                    path += f"&before_time={before[chart]}"
                resp = await self.get(client, "read page", replica, path)
                if resp is not None and resp.status_code == 200:
                    chunk = resp.json()
                    data = chunk["data"]
                    before[chart] = data[0]["time"] if data and chunk["hasMoreBefore"] else None
            await asyncio.sleep(self.config.read_pause)

    async def read_back(self, client: httpx.AsyncClient, replica: int, write: Write) -> None:
        """A read carrying the write's version must return the write's points."""
        end = max(t for t, _ in write.points) + 1
        path = (
            f"/api/charts/{write.chart}/history/0/{SERIES}"
            f"?before_time={end}&count=10&min_version={write.version}"
        )
        resp = await self.get(client, "read token", replica, path)
        if resp is None or resp.status_code != 200:
            return
        got = {p["time"]: p.get("value") for p in resp.json()["data"]}
        missing = [(t, v) for t, v in write.points if got.get(t) != v]
        if missing:
            self.fail(
                f"{self.elapsed(time.monotonic())}: a read of {write.chart} on replica "
                f"{replica} with min_version={write.version} lacks write {write.id}'s points "
                f"{missing} (got {sorted(got.items())[-4:]})"
            )

    def classify(self) -> None:
        """Every status of the load against the fault windows."""
        grace = self.config.grace_seconds
        for request in self.requests:
            when = self.elapsed(request.at)
            if request.status is None:
                if not any(
                    f.kind in ("worker", "replica")
                    and f.replica == request.replica
                    and f.covers(request.at, grace)
                    for f in self.faults
                ):
                    self.fail(
                        f"{when}: {request.kind} on replica {request.replica} failed with no "
                        f"process of it killed: {request.error}"
                    )
            elif request.status == 503:
                if not any(
                    f.kind in DEPENDENCY_FAULTS and f.covers(request.at, grace) for f in self.faults
                ):
                    self.fail(
                        f"{when}: {request.kind} on replica {request.replica} answered 503 with "
                        f"Redis and PostgreSQL up"
                    )
            elif not 200 <= request.status < 300:
                self.fail(
                    f"{when}: {request.kind} on replica {request.replica} answered {request.status}"
                )


class Follower:
    """One socket following one chart as a careful client does, recording what it was told.

    ``last`` is the version the client's copy of the chart is at. Frames that arrive while it
    waits for the answer to ``resume`` or for a snapshot are held and checked against the
    answer: the protocol replays, after ``resume``, the updates sent live since connecting.
    """

    def __init__(self, soak: Soak, index: int, chart: str) -> None:
        self.soak = soak
        self.index = index
        self.chart = chart
        self.replica = index % len(soak.replicas)
        self.last = -1
        self.mode = "live"  # "resuming" or "snapshot" while an answer is awaited
        self.held: list[tuple[int, Points]] = []
        self.baseline = 0
        self.since = 0
        self.request_id = ""
        self.wanted = 0
        self.covered_upto = -1
        self.snapshot_again = False
        self.recent: list[str] = []
        self._ids = itertools.count(1)
        self.ws: Any = None

    def fail(self, what: str) -> None:
        self.soak.fail(
            f"{self.soak.elapsed(time.monotonic())}: socket {self.index} of {self.chart} "
            f"(replica {self.replica}, last {self.last}): {what}; recent frames {self.recent[-8:]}"
        )

    def url(self) -> str:
        port = self.soak.replicas[self.replica].port
        return f"ws://127.0.0.1:{port}/ws/charts/{self.chart}"

    async def run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        attempt = 0
        counts = self.soak.counts
        while not self.soak.closing:
            try:
                async with connect(
                    self.url(), open_timeout=10, ping_interval=None, compression=None
                ) as ws:
                    self.ws = ws
                    counts.connects += 1
                    attempt = 0
                    await self.follow(ws)
                    counts.disconnects += 1
            except (OSError, WebSocketException, TimeoutError) as exc:
                counts.socket_errors[type(exc).__name__] += 1
            finally:
                self.ws = None
            if self.soak.closing:
                break
            self.replica = (self.replica + 1) % len(self.soak.replicas)
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt) * (0.5 + random.random()))
            attempt += 1

    async def follow(self, ws: Any) -> None:
        hello = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if hello.get("type") != "connected":
            self.fail(f"first frame {hello!r:.200}")
            return
        self.held = []
        self.snapshot_again = False
        self.covered_upto = -1
        if self.last < 0:
            self.last = hello["version"]
            self.mode = "live"
        else:
            self.baseline = hello["version"]
            self.since = self.last
            await self.send_resume()
        async for raw in ws:
            await self.handle(orjson.loads(raw))

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws is not None:
            await self.ws.send(orjson.dumps(message).decode())

    async def send_resume(self) -> None:
        self.mode = "resuming"
        self.request_id = f"r{next(self._ids)}"
        await self.send({"type": "resume", "sinceVersion": self.last, "requestId": self.request_id})

    async def request_snapshot(self, hint: int | None) -> None:
        self.mode = "snapshot"
        self.request_id = f"s{next(self._ids)}"
        self.wanted = max(self.last, hint if isinstance(hint, int) else 0)
        await self.send(
            {"type": "get_initial_data", "minVersion": self.wanted, "requestId": self.request_id}
        )

    async def handle(self, message: dict[str, Any]) -> None:
        counts = self.soak.counts
        counts.frames += 1
        kind = message.get("type")
        answer = message.get("requestId") == self.request_id and self.request_id != ""
        self.recent.append(f"{kind}:{message.get('version')}:{message.get('requestId', '')}")
        del self.recent[:-12]
        if kind == "data_update":
            counts.updates += 1
            points = tuple((p["time"], p.get("value")) for p in message.get("data") or ())
            if self.mode == "live":
                await self.apply(message["version"], points)
            else:
                self.held.append((message["version"], points))
        elif kind == "ping":
            counts.pings += 1
            await self.send({"type": "pong"})
        elif kind == "resync_required" and answer and self.mode == "resuming":
            counts.resyncs_on_resume += 1
            await self.request_snapshot(message.get("version"))
        elif kind == "resync_required" and message.get("requestId") is None:
            counts.resyncs_spontaneous += 1
            if self.mode == "live":
                await self.request_snapshot(message.get("version"))
            else:
                self.snapshot_again = True
        elif kind == "resumed" and answer and self.mode == "resuming":
            counts.resumed += 1
            self.resumed(message["version"], message["replayed"])
            self.mode = "live"
            if self.snapshot_again:
                self.snapshot_again = False
                await self.request_snapshot(None)
        elif kind == "initial_data_response" and answer and self.mode == "snapshot":
            counts.snapshots += 1
            self.soak.snapshots.append(snapshot_of(self.chart, message))
            await self.snapshot(message["version"])
        elif kind == "error" and answer and self.mode == "snapshot":
            counts.snapshot_errors += 1
            code = message.get("errorCode")
            status = {"DATABASE_UNAVAILABLE": 503, "INTERNAL_ERROR": 500}.get(str(code), 400)
            self.soak.requests.append(
                Request("snapshot", self.replica, time.monotonic(), status, str(code))
            )
            await asyncio.sleep(0.5)
            await self.request_snapshot(self.wanted)
        else:
            self.fail(f"unexpected frame in mode {self.mode}: {message!r:.300}")

    async def apply(self, version: int, points: Points) -> None:
        counts = self.soak.counts
        if version == self.last + 1:
            self.last = version
            self.covered_upto = -1
            counts.applied += 1
            self.soak_points(version, points)
        elif version <= self.last:
            if version <= self.covered_upto:
                counts.covered_by_snapshot += 1
            else:
                self.fail(f"version {version} again (duplicate or out of order)")
        else:
            self.fail(f"version {version} after {self.last} with no resync_required")
            await self.send_resume()  # what a client does on a gap

    def soak_points(self, version: int, points: Points) -> None:
        key = (self.chart, version)
        seen = self.soak.frame_points.setdefault(key, points)
        if seen != points:
            self.fail(
                f"version {version} carried {points!r:.200}, another socket got {seen!r:.200}"
            )

    def resumed(self, version: int, replayed: int) -> None:
        """The frames held since ``resume``: updates sent live after connecting, then the
        replay of versions ``since + 1 .. version``; the live ones must all be in the replay."""
        held = self.held
        self.held = []
        live, replay = held[: len(held) - replayed], held[len(held) - replayed :]
        expected = list(range(self.since + 1, version + 1))
        if [v for v, _ in replay] != expected:
            self.fail(
                f"resume from {self.since} answered version {version}, replayed {replayed}: "
                f"held {[v for v, _ in held]}"
            )
        replayed_points = dict(replay)
        for v, points in live:
            if v not in replayed_points or replayed_points[v] != points:
                self.fail(
                    f"live update {v} (after connecting at {self.baseline}) is not in the replay "
                    f"of {self.since + 1}..{version}"
                )
        self.soak.counts.replayed_again += len(live)
        for v, points in replay:
            if v == self.last + 1:
                self.last = v
                self.soak.counts.applied += 1
                self.soak_points(v, points)

    async def snapshot(self, version: int) -> None:
        held = self.held
        self.held = []
        if version < self.wanted:
            self.fail(f"snapshot at version {version} for minVersion {self.wanted}")
        self.last = max(self.last, version)
        self.covered_upto = version
        self.mode = "live"
        for v, points in held:
            await self.apply(v, points)
        if self.snapshot_again:
            self.snapshot_again = False
            await self.request_snapshot(None)


def snapshot_of(chart: str, message: dict[str, Any]) -> Snapshot:
    data = message["panes"]["0"][SERIES]["data"]
    return Snapshot(
        chart,
        message["version"],
        array("q", (p["time"] for p in data)),
        array("d", (p["value"] for p in data)),
    )


# --------------------------------------------------------------------------------------------
# Faults


async def inject(soak: Soak, deps: Dependencies, kind: str) -> None:
    config = soak.config
    fault = Fault(kind, time.monotonic())
    soak.faults.append(fault)
    if kind == "worker":
        replica = soak.replicas[0]
        victim = replica.worker_pids()[0]
        fault.replica, fault.detail = 0, f"SIGKILL worker {victim} of replica 0"
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        for _ in itertools.count():
            pids = replica.worker_pids()
            if victim not in pids and len(pids) >= replica.workers:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"gunicorn did not replace worker {victim}")
            await asyncio.sleep(0.05)
    elif kind == "redis":
        fault.detail = f"SIGKILL redis-server, {config.outage_seconds:g} s down, start again"
        await asyncio.to_thread(deps.kill_redis)
        await asyncio.sleep(config.outage_seconds)
        await asyncio.to_thread(deps.start_redis)
    elif kind == "postgres":
        fault.detail = f"pg_ctl stop -m fast, {config.outage_seconds:g} s down, start again"
        await asyncio.to_thread(deps.stop_postgres)
        await asyncio.sleep(config.outage_seconds)
        await asyncio.to_thread(deps.start_postgres)
    elif kind == "replica":
        index = len(soak.replicas) - 1
        replica = soak.replicas[index]
        fault.replica = index
        fault.detail = f"SIGKILL replica {index} (master and workers), start it again"
        await asyncio.to_thread(replica.kill)
        await asyncio.sleep(config.outage_seconds)
        await asyncio.to_thread(replica.start)
    else:
        raise BenchError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
    fault.ended = time.monotonic()
    log(f"  {soak.elapsed(fault.started)} {kind}: {fault.detail}; "
        f"back after {fault.ended - fault.started:.1f} s")  # fmt: skip


# --------------------------------------------------------------------------------------------
# Verification


def chart_points(resp_chunks: list[dict[str, Any]]) -> dict[int, Any]:
    return {p["time"]: p.get("value") for chunk in resp_chunks for p in chunk["data"]}


async def read_series(url: str, chart: str, min_version: int | None) -> dict[int, Any] | str:
    """Every point of the chart's series through ``url`` (paged, one fresh connection per
    page so that any worker answers); an error's description when a page fails."""
    chunks: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        path = f"{url}/api/charts/{chart}/history/0/{SERIES}?count=10000"
        if before is not None:
            path += f"&before_time={before}"
        if min_version is not None:
            path += f"&min_version={min_version}"
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
                resp = await client.get(path, headers={"Connection": "close"})
        except httpx.HTTPError as exc:
            return repr(exc)
        if resp.status_code != 200:
            return f"HTTP {resp.status_code}: {resp.text[:200]}"
        chunk = resp.json()
        chunks.append(chunk)
        if not chunk["hasMoreBefore"] or not chunk["data"]:
            return chart_points(chunks)
        before = chunk["data"][0]["time"]


def lacking(points: dict[int, Any], writes: list[Write]) -> list[str]:
    return [
        f"write {w.id} (version {w.version}) time {t}: {points.get(t)!r}"
        for w in writes
        for t, v in w.points
        if points.get(t) != v
    ]


async def verify_reads(soak: Soak, token: bool, rounds: int = 4) -> None:
    acked = [w for w in soak.writes if w.version is not None]
    for chart in soak.charts:
        writes = [w for w in acked if w.chart == chart]
        top = max(w.version or 0 for w in writes)
        for replica in soak.replicas:
            for _ in range(rounds):
                points = await read_series(replica.url, chart, top if token else None)
                what = f"with min_version={top}" if token else "without a token"
                if isinstance(points, str):
                    soak.fail(f"final read of {chart} on {replica.name} {what}: {points}")
                    continue
                missing = lacking(points, writes)
                if missing:
                    soak.fail(
                        f"final read of {chart} on {replica.name} {what} lacks "
                        f"{len(missing)} acknowledged points: {missing[:3]}"
                    )


def verify_database(soak: Soak, deps: Dependencies) -> dict[str, int]:
    """Every acknowledged write is in the database; returns each chart's version there."""
    rows = deps.psql(
        "SELECT s.chart_id, p.time, p.data::text FROM points p JOIN series s ON s.id = p.series_pk"
    )
    stored: dict[str, dict[int, Any]] = {chart: {} for chart in soak.charts}
    for line in rows.splitlines():
        chart, moment, data = line.split("|", 2)
        stored.setdefault(chart, {})[int(moment)] = orjson.loads(data).get("value")
    acked = [w for w in soak.writes if w.version is not None]
    for chart in soak.charts:
        missing = lacking(stored[chart], [w for w in acked if w.chart == chart])
        if missing:
            soak.fail(f"the database lacks {len(missing)} acknowledged points of {chart}: "
                      f"{missing[:3]}")  # fmt: skip
        by_version: dict[int, list[int]] = {}
        for w in acked:
            if w.chart == chart and w.version is not None:
                by_version.setdefault(w.version, []).append(w.id)
        shared = {v: ids for v, ids in by_version.items() if len(ids) > 1}
        if shared:
            soak.fail(
                f"acknowledged writes of {chart} share versions: {dict(list(shared.items())[:3])}"
            )
        sent = {t for w in soak.writes if w.chart == chart for t, _ in w.points}
        phantom = sorted(set(stored[chart]) - sent)
        if phantom:
            soak.fail(f"{chart} holds points no write sent: times {phantom[:5]}")
    unknown = [w for w in soak.writes if w.version is None]
    landed = sum(1 for w in unknown if all(stored[w.chart].get(t) == v for t, v in w.points))
    if unknown:
        soak.notes.append(
            f"{len(unknown)} writes got no 2xx; {landed} of them are in the database anyway "
            f"(committed before the answer was lost, or their outcome was unknown to the client)"
        )
    versions: dict[str, int] = {}
    for line in deps.psql("SELECT id, version FROM charts").splitlines():
        chart, version = line.split("|")
        versions[chart] = int(version)
    return versions


def verify_frames(soak: Soak, versions: dict[str, int]) -> None:
    """Each version's frame carried that write's points; every socket is at its chart's
    version."""
    by_version = {(w.chart, w.version): w for w in soak.writes if w.version is not None}
    for (chart, version), points in soak.frame_points.items():
        write = by_version.get((chart, version))
        if write is not None and points != write.points:
            soak.fail(f"the update of {chart} version {version} carried {points!r:.200}, "
                      f"write {write.id} was {write.points!r:.200}")  # fmt: skip
    ahead = 0
    for snap in soak.snapshots:
        held = dict(zip(snap.times, snap.values, strict=True))
        start = snap.times[0] if snap.times else 0
        lacks: list[str] = []
        for w in soak.writes:
            if w.chart != snap.chart or w.version is None or w.points[0][0] < start:
                continue
            present = [held.get(t) == v for t, v in w.points]
            if w.version <= snap.version and not all(present):
                lacks.append(f"write {w.id} (version {w.version})")
            elif w.version > snap.version and any(present):
                ahead += 1
                break
        if lacks:
            soak.fail(f"a snapshot of {snap.chart} at version {snap.version} lacks {lacks[:3]}")
    if ahead:
        # The client applies those updates again when they come: it ends right, and the
        # version it holds is never above what it has.
        soak.notes.append(
            f"{ahead} of {len(soak.snapshots)} snapshots already held a write newer than "
            f"their version"
        )
    for follower in soak.followers:
        final = versions.get(follower.chart, 0)
        if follower.mode != "live" or follower.last != final:
            follower.fail(f"ends in mode {follower.mode} at {follower.last}, chart at {final}")


async def caught_up(soak: Soak, versions: dict[str, int], seconds: float) -> None:
    """Wait (at most ``seconds``) for every socket to be at its chart's final version."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(
            f.mode == "live" and f.last == versions.get(f.chart, 0) and f.ws is not None
            for f in soak.followers
        ):
            return
        await asyncio.sleep(0.25)


# --------------------------------------------------------------------------------------------
# The run


@contextmanager
def topology(config: SoakConfig, root: Path) -> Iterator[tuple[Dependencies, list[Replica]]]:
    with ExitStack() as stack:
        deps = Dependencies(root)
        stack.callback(deps.close)
        database_url = deps.start()
        env = server_env(database_url, deps.redis_url)
        replicas = []
        for index in range(config.replicas):
            replica = Replica(index, root / f"replica-{index}", env, config.workers)
            stack.callback(replica.stop)
            replicas.append(replica)
        with ThreadPoolExecutor(len(replicas)) as pool:
            for started in [pool.submit(replica.start) for replica in replicas]:
                started.result()
        yield deps, replicas


def all_pids(replicas: list[Replica]) -> dict[str, int]:
    return {name: pid for replica in replicas for name, pid in replica.pids().items()}


def compare_rss(
    soak: Soak, warm: dict[str, int], now: dict[str, int]
) -> list[tuple[str, int, int]]:
    """Each process against its own warm level; a process started during the run against the
    level of what it replaced (the replica's master, or the mean of its workers)."""
    rows = []
    for name, rss in sorted(now.items()):
        replica, _, role = name.partition(" ")
        if name in warm:
            level = warm[name]
        else:
            peers = [v for n, v in warm.items() if n.startswith(replica + " " + role.split(" ")[0])]
            if not peers:
                soak.fail(f"no warm level to compare {name} with")
                continue
            level = sum(peers) // len(peers)
        rows.append((name, level, rss))
        if abs(rss - level) > soak.config.rss_tolerance * level:
            soak.fail(f"{name}: RSS {rss / 2**20:.1f} MiB after settle, warm level "
                      f"{level / 2**20:.1f} MiB ({(rss - level) / level:+.0%})")  # fmt: skip
    return rows


async def soak_run(config: SoakConfig, deps: Dependencies, replicas: list[Replica]) -> Report:
    soak = Soak(config, replicas)
    limits = httpx.Limits(max_connections=64, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, limits=limits) as client:
        for index, chart in enumerate(soak.charts):
            write = soak.new_write(chart, index % len(replicas), 10)
            await soak.send_write(client, write, create=True)
            if write.version is None:
                raise BenchError(f"could not create {chart}: {write.status} {write.error}")
        soak.followers = [
            Follower(soak, i, soak.charts[i % len(soak.charts)]) for i in range(config.sockets)
        ]
        sockets = []
        for follower in soak.followers:
            sockets.append(asyncio.create_task(follower.run()))
            await asyncio.sleep(0.01)
        load = [asyncio.create_task(soak.writer(client)) for _ in range(config.writers)]
        load += [asyncio.create_task(soak.reader(client)) for _ in range(config.readers)]
        try:
            await asyncio.sleep(config.warmup_seconds)
            soak.load_running.clear()
            await asyncio.sleep(1.0)
            warm = await asyncio.to_thread(settled_rss, all_pids(replicas))
            soak.load_running.set()
            log(f"  {soak.elapsed(time.monotonic())} warm; faults: {', '.join(config.faults)}")
            warm_at = time.monotonic()
            gap = max(0.0, soak.started + config.seconds - warm_at) / (len(config.faults) + 1)
            for number, kind in enumerate(config.faults, 1):
                due = warm_at + gap * number
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await inject(soak, deps, kind)
            await asyncio.sleep(max(0.0, soak.started + config.seconds - time.monotonic()))
        finally:
            soak.load_stopped = True
            soak.load_running.set()
            await asyncio.gather(*load, return_exceptions=True)
        stopped = time.monotonic()
        duration = stopped - soak.started
        log(f"  {soak.elapsed(stopped)} load stopped; verifying")
        versions = await asyncio.to_thread(verify_database, soak, deps)
        await caught_up(soak, versions, 30.0)
        log(f"  {soak.elapsed(time.monotonic())} database checked, sockets caught up")
        await verify_reads(soak, token=True)
        await asyncio.sleep(max(0.0, stopped + config.settle_seconds - time.monotonic()))
        await verify_reads(soak, token=False)
        log(f"  {soak.elapsed(time.monotonic())} reads on every replica checked")
        soak.classify()
        verify_frames(soak, versions)
        now = await asyncio.to_thread(settled_rss, all_pids(replicas))
        rss = compare_rss(soak, warm, now)
        log(f"  {soak.elapsed(time.monotonic())} memory measured")
        soak.closing = True
        for follower in soak.followers:
            if follower.ws is not None:
                with contextlib.suppress(Exception):
                    await follower.ws.close()
        for task in sockets:
            task.cancel()
        await asyncio.gather(*sockets, return_exceptions=True)
    return Report(
        config,
        soak.writes,
        soak.requests,
        soak.faults,
        soak.counts,
        soak.failures,
        soak.notes,
        rss,
        duration,
    )


def run_soak(config: SoakConfig, root: Path | None = None) -> Report:
    """Start the topology in ``root`` (a temporary directory by default), run the soak, stop
    everything; the report holds the counts and the failures (none when it passed)."""
    with ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-soak-")))
        deps, replicas = stack.enter_context(topology(config, root))
        return asyncio.run(soak_run(config, deps, replicas))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = SoakConfig()
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--charts", type=int, default=defaults.charts)
    parser.add_argument("--sockets", type=int, default=defaults.sockets)
    parser.add_argument("--writers", type=int, default=defaults.writers)
    parser.add_argument("--readers", type=int, default=defaults.readers)
    parser.add_argument("--warmup", type=float, default=defaults.warmup_seconds)
    parser.add_argument("--outage", type=float, default=defaults.outage_seconds)
    parser.add_argument(
        "--faults", default=",".join(FAULTS), help=f"comma-separated subset of {FAULTS}"
    )
    parser.add_argument("--keep", type=Path, help="run in this directory and keep the logs")
    args = parser.parse_args(argv)
    config = SoakConfig(
        seconds=args.seconds,
        charts=args.charts,
        sockets=args.sockets,
        writers=args.writers,
        readers=args.readers,
        warmup_seconds=args.warmup,
        outage_seconds=args.outage,
        faults=tuple(f for f in args.faults.split(",") if f),
    )
    log(f"chaos soak: {config}")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    report = run_soak(config, args.keep)
    log(report.summary())
    if args.keep is not None:
        (args.keep / "failures.txt").write_text("".join(f + "\n" for f in report.failures))
    return 0 if report.passed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        log(f"chaos_soak FAILED: {exc}")
        sys.exit(1)

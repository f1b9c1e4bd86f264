"""Shared helpers for the benchmarks: ports, uvicorn processes, data, HTTP, wrk.

Everything here talks to real server processes over loopback, never to an app object in the
benchmark's own process, so the figures include the HTTP stack the service really runs behind.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import math
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

#: 2000-01-01T00:00:00Z in UTC seconds; candles are 60 s apart from here.
START_TIME = 946_684_800
STEP_SECONDS = 60
SEED = 20_000_101

#: The app under test; BENCH_PRODUCT_APP / BENCH_PRODUCT_FACTORY=0 substitute another one (used
#: to check the suite itself, e.g. ``BENCH_PRODUCT_APP=bench.naive_app:app``).
PRODUCT_APP = os.environ.get("BENCH_PRODUCT_APP", "lightweight_charts_pro_backend.app:create_app")
PRODUCT_FACTORY = os.environ.get(
    "BENCH_PRODUCT_FACTORY", "1" if "create_app" in PRODUCT_APP else "0"
)
NAIVE_APP = "bench.naive_app:app"
CEILING_APP = "bench.ceiling_app:app"

#: Environment for the product under benchmark: the development app with its defaults, except
#: that the per-IP rate limits (on by default: 60/min, 30/min for history) are raised to their
#: maximum, 1,000,000/min, so the limiter still runs on every request but wrk, sending thousands
#: of requests per second from one IP, is not answered 429. ``BENCH_RATE_LIMITING=off`` turns
#: the limiter off instead. The service's own log level is WARNING, like uvicorn's.
PRODUCT_ENV = {
    "ENABLE_RATE_LIMITING": "true",
    "RATE_LIMIT_PER_MINUTE": "1000000",
    "RATE_LIMIT_HISTORY_PER_MINUTE": "1000000",
    "LOG_LEVEL": "WARNING",
    "ENVIRONMENT": "development",
    "ENABLE_PERSISTENCE": "false",
    "ENABLE_AUTH": "false",
}
if os.environ.get("BENCH_RATE_LIMITING", "").lower() in ("off", "0", "false", "no"):
    PRODUCT_ENV["ENABLE_RATE_LIMITING"] = "false"


def log(message: str = "") -> None:
    print(message, flush=True)


class BenchError(RuntimeError):
    """A benchmark could not run (server failed, wrong status, tool missing)."""


# --------------------------------------------------------------------------------------------
# CPU placement


@dataclass(frozen=True)
class CpuPlan:
    """Where servers and load generators run. On 2+ cores: servers on CPU 0, clients on CPU 1."""

    server_prefix: tuple[str, ...]
    client_prefix: tuple[str, ...]
    client_cpus: frozenset[int] | None
    description: str


#: CPUs this process may use when the module is imported (before any benchmark pins itself).
ALL_CPUS: tuple[int, ...] = (
    tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()
)


def cpu_plan(pin: bool = True) -> CpuPlan:
    taskset = shutil.which("taskset")
    if pin and taskset and len(ALL_CPUS) >= 2:
        server_cpu, client_cpu = ALL_CPUS[0], ALL_CPUS[1]
        return CpuPlan(
            server_prefix=(taskset, "-c", str(server_cpu)),
            client_prefix=(taskset, "-c", str(client_cpu)),
            client_cpus=frozenset({client_cpu}),
            description=(
                f"pinned: server processes on CPU {server_cpu} (taskset), wrk and the Python "
                f"client on CPU {client_cpu}"
            ),
        )
    return CpuPlan((), (), None, f"not pinned ({len(ALL_CPUS) or '?'} CPUs visible)")


@contextlib.contextmanager
def client_pinned(plan: CpuPlan) -> Iterator[None]:
    """Run the benchmark's own process on the client CPU; restore the original set afterwards."""
    cpus = plan.client_cpus
    can = bool(cpus) and hasattr(os, "sched_setaffinity")
    if cpus and can:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        if can:
            unpin_self()


def pin_self(plan: CpuPlan) -> None:
    """Pin this process to the client CPU without restoring it (prefer ``client_pinned``)."""
    if plan.client_cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, plan.client_cpus)


def unpin_self() -> None:
    """Give this process back every CPU it had at import."""
    if ALL_CPUS and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, ALL_CPUS)


_QUIET_BUDGET = [60.0]


def reset_quiet_budget(seconds: float = 60.0) -> None:
    """Total seconds ``wait_quiet`` may spend waiting from now on (one budget per benchmark)."""
    _QUIET_BUDGET[0] = seconds


def wait_quiet(threshold: float = 20.0, max_wait: float = 30.0) -> float:
    """Wait (bounded) until other processes leave the CPUs mostly idle; return the busy %.

    The machine may be shared (tests, builds); a busy machine skews every figure, so the
    benchmark says so instead of silently reporting noise. Waiting is bounded per call by
    ``max_wait`` and per benchmark by the budget set with ``reset_quiet_budget``.
    """
    started = time.monotonic()
    limit = max(0.0, min(max_wait, _QUIET_BUDGET[0]))
    busy = psutil.cpu_percent(interval=1.0)
    while busy > threshold and time.monotonic() - started < limit:
        busy = psutil.cpu_percent(interval=1.0)
    waited = time.monotonic() - started
    _QUIET_BUDGET[0] = max(0.0, _QUIET_BUDGET[0] - waited)
    if busy > threshold:
        log(
            f"  !! other processes keep the CPUs {busy:.0f}% busy (waited {waited:.0f}s, "
            f"wait budget left {_QUIET_BUDGET[0]:.0f}s); figures may be noisy"
        )
    elif waited > 1.5:
        log(f"  (waited {waited:.0f}s for other processes to quiet down; now {busy:.0f}% busy)")
    else:
        log(f"  (background CPU before start: {busy:.0f}%)")
    return float(busy)


#: A measurement during which other processes used more than this many cores is disturbed.
FOREIGN_LIMIT = 0.15


class Repeats:
    """Decides whether a wrk round that other processes disturbed is run again.

    ``repeat(foreign)`` takes the foreign cores measured during each run of a round (by name):
    a disturbed round is discarded and repeated, after waiting for quiet, while repeats are
    left; after that it is kept and counted in ``kept``.
    """

    def __init__(self, repeats: int) -> None:
        self.left = repeats
        self.kept = 0

    def repeat(self, foreign: dict[str, float]) -> bool:
        disturbed = [name for name, cores in foreign.items() if cores > FOREIGN_LIMIT]
        if not disturbed:
            return False
        if self.left > 0:
            self.left -= 1
            log(
                f"  round disturbed: other processes used > {FOREIGN_LIMIT} core during "
                f"{', '.join(disturbed)}; discarding it and repeating"
            )
            wait_quiet()
            return True
        log("  !! round disturbed by other processes; kept (no repeats left)")
        self.kept += 1
        return False


# --------------------------------------------------------------------------------------------
# Ports and servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_LIVE_SERVERS: set[Server] = set()


@dataclass(eq=False)
class Server:
    """One uvicorn process (single worker) on a free loopback port.

    Usage::

        with Server("product", PRODUCT_APP, factory=True, env=PRODUCT_ENV) as srv:
            http_request(srv.port, "GET", "/health")
    """

    name: str
    app: str
    factory: bool = False
    env: dict[str, str] = field(default_factory=dict)
    prefix: Sequence[str] = ()
    #: uvicorn's own access line, as ``uvicorn`` writes it by default (off: ``--no-access-log``).
    access_log: bool = False
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    _log_file: Any = None

    def start(self, timeout: float = 90.0) -> Server:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        cmd = [
            *self.prefix,
            PYTHON,
            "-m",
            "uvicorn",
            self.app,
            "--app-dir",
            str(ROOT),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--log-level",
            "warning",
        ]
        if not self.access_log:
            cmd.append("--no-access-log")
        if self.factory:
            cmd.append("--factory")
        env = dict(os.environ)
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        self._log_file = open(self.workdir / "server.log", "wb")  # noqa: SIM115
        # cwd is an empty temp dir: no stray .env or charts.db from the checkout is picked up.
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.workdir,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        _LIVE_SERVERS.add(self)
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} server exited with code {self.proc.returncode} before "
                    f"answering /health; log:\n{self.log_tail()}"
                )
            try:
                resp = http_request(self.port, "GET", "/health", timeout=2.0)
                if resp.status == 200:
                    return
                last_error = f"status {resp.status}: {resp.body[:200]!r}"
            except OSError as exc:
                last_error = repr(exc)
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"{self.name} server did not answer /health in {timeout}s ({last_error})")

    def log_tail(self, limit: int = 4000) -> str:
        if self.workdir is None:
            return ""
        try:
            text = (self.workdir / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return text[-limit:]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        _LIVE_SERVERS.discard(self)

    def __enter__(self) -> Server:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def _stop_all_servers() -> None:
    for server in list(_LIVE_SERVERS):
        with contextlib.suppress(Exception):
            server.stop()


def product_server(prefix: Sequence[str] = (), extra_env: dict[str, str] | None = None) -> Server:
    return Server(
        "product",
        PRODUCT_APP,
        factory=PRODUCT_FACTORY == "1",
        env={**PRODUCT_ENV, **(extra_env or {})},
        prefix=prefix,
    )


def naive_server(prefix: Sequence[str] = ()) -> Server:
    return Server("naive", NAIVE_APP, prefix=prefix)


def product_available() -> tuple[bool, str]:
    """Whether ``create_app`` imports; the product is written in parallel with this suite."""
    module, _, attr = PRODUCT_APP.partition(":")
    code = f"import {module} as m; assert callable(m.{attr})"
    proc = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(ROOT)
    )
    if proc.returncode == 0:
        return True, "ok"
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return False, lines[-1] if lines else f"exit code {proc.returncode}"


# --------------------------------------------------------------------------------------------
# HTTP


@dataclass
class Response:
    status: int
    body: bytes
    seconds: float
    headers: dict[str, str]

    def json(self) -> Any:
        return orjson.loads(self.body)


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    timeout: float = 300.0,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Response:
    """One request on a fresh connection; ``seconds`` spans sending the request to the last byte."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        extra = headers or {}
        headers = {"Content-Type": content_type, **extra} if body is not None else dict(extra)
        started = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - started
        return Response(resp.status, data, elapsed, {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def expect(resp: Response, status: int | tuple[int, ...], what: str) -> Response:
    allowed = (status,) if isinstance(status, int) else status
    if resp.status not in allowed:
        raise BenchError(f"{what}: expected HTTP {allowed}, got {resp.status}: {resp.body[:500]!r}")
    return resp


class KeepAlive:
    """A sequential keep-alive client for latency measurements."""

    def __init__(
        self, port: int, timeout: float = 60.0, headers: dict[str, str] | None = None
    ) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.headers = headers or {}

    def get(self, path: str) -> tuple[int, bytes, float]:
        started = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, data, time.perf_counter() - started

    def close(self) -> None:
        self.conn.close()


def create_chart(port: int, chart_id: str) -> None:
    """``POST /api/charts/{id}`` (idempotent); the data routes may also create charts on demand."""
    resp = http_request(port, "POST", f"/api/charts/{chart_id}", body=b"{}", timeout=30)
    expect(resp, (200, 201), f"create chart {chart_id}")


# --------------------------------------------------------------------------------------------
# Data


@lru_cache(maxsize=8)
def generate_candles(n: int, seed: int = SEED) -> tuple[dict[str, Any], ...]:
    """``n`` OHLC candles: a multiplicative random walk, 2-decimal prices, 60 s apart.

    Deterministic for a given ``(n, seed)``; the result is cached and shared, do not mutate it.
    ``low <= open, close <= high`` holds exactly after rounding.
    """
    rng = random.Random(seed)
    gauss = rng.gauss
    price = 100.0
    out: list[dict[str, Any]] = []
    append = out.append
    t = START_TIME
    close = round(price, 2)
    for _ in range(n):
        open_ = close
        price *= math.exp(gauss(0.0, 0.0008))
        close = round(price, 2)
        top = max(open_, close)
        bottom = min(open_, close)
        high = round(top + abs(gauss(0.0, 0.0004)) * price, 2)
        low = round(bottom - abs(gauss(0.0, 0.0004)) * price, 2)
        append({"time": t, "open": open_, "high": high, "low": low, "close": close})
        t += STEP_SECONDS
    return tuple(out)


def replace_body(candles: Sequence[dict[str, Any]], pane_id: int = 0) -> bytes:
    return orjson.dumps({"paneId": pane_id, "seriesType": "candlestick", "data": list(candles)})


def upsert_body(candles: Sequence[dict[str, Any]], pane_id: int = 0) -> bytes:
    return orjson.dumps({"paneId": pane_id, "data": list(candles)})


def post_series(
    port: int, chart: str, series: str, body: bytes, count: int, timeout: float = 600.0
) -> Response:
    """``POST /api/charts/{chart}/data/{series}`` and check the contract's reply."""
    resp = http_request(port, "POST", f"/api/charts/{chart}/data/{series}", body, timeout=timeout)
    expect(resp, (200, 201), f"POST {chart}/{series} ({count} points)")
    reply = resp.json()
    if not isinstance(reply, dict) or reply.get("count") != count:
        raise BenchError(f"POST {chart}/{series}: expected count={count}, got {reply!r:.300}")
    missing = {"seriesId", "seriesType", "count"} - set(reply)
    if missing:
        log(f"  ! POST reply lacks {sorted(missing)}: {reply!r:.300}")
    return resp


def patch_series(
    port: int, chart: str, series: str, body: bytes, count: int, total: int, timeout: float = 600.0
) -> Response:
    """``PATCH /api/charts/{chart}/data/{series}`` and check ``count``/``totalCount``."""
    resp = http_request(port, "PATCH", f"/api/charts/{chart}/data/{series}", body, timeout=timeout)
    expect(resp, (200,), f"PATCH {chart}/{series} ({count} points)")
    reply = resp.json()
    if not isinstance(reply, dict) or reply.get("totalCount") != total:
        raise BenchError(f"PATCH {chart}/{series}: expected totalCount={total}, got {reply!r:.300}")
    if reply.get("count") != count:
        log(f"  ! PATCH reply count={reply.get('count')!r}, expected {count}")
    return resp


# --------------------------------------------------------------------------------------------
# wrk


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    log("wrk not found; trying `apt-get install -y wrk` ...")
    try:
        proc = subprocess.run(
            ["apt-get", "install", "-y", "wrk"], capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"wrk is not installed and apt-get failed to run: {exc}") from exc
    path = shutil.which("wrk")
    if proc.returncode != 0 or not path:
        tail = (proc.stderr or proc.stdout)[-800:]
        raise BenchError(
            "wrk is not installed and `apt-get install -y wrk` failed "
            f"(exit {proc.returncode}); install it (Debian package `wrk`) and retry.\n{tail}"
        )
    return path


@dataclass
class WrkResult:
    rps: float
    requests: int
    latency_avg_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    raw: str
    #: CPU used by processes other than the server, wrk and this one during the run, in
    #: cores (0.25 = a quarter of a core); high values mean the run was disturbed.
    foreign_cpu: float = 0.0
    #: CPU seconds (user + system) the server process used during the run.
    server_cpu_s: float = 0.0

    @property
    def server_us_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1e6 if self.requests else math.nan


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(text: str) -> WrkResult:
    def latency(pattern: str) -> float:
        m = re.search(pattern + r"\s+([\d.]+)(us|ms|s|m|h)\b", text)
        return _ms(m.group(1), m.group(2)) if m else math.nan

    rps_m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rps_m:
        raise BenchError(f"cannot parse wrk output:\n{text}")
    req_m = re.search(r"(\d+) requests in", text)
    non2xx_m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock_m = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return WrkResult(
        rps=float(rps_m.group(1)),
        requests=int(req_m.group(1)) if req_m else 0,
        latency_avg_ms=latency(r"Latency"),
        p50_ms=latency(r"50%"),
        p90_ms=latency(r"90%"),
        p99_ms=latency(r"99%"),
        non_2xx=int(non2xx_m.group(1)) if non2xx_m else 0,
        socket_errors=sum(int(g) for g in sock_m.groups()) if sock_m else 0,
        raw=text,
    )


_WRK_SCRIPT = """\
local paths = {%s}
local reqs = {}
local n = #paths
local i = 0
function init(args)
  for k, p in ipairs(paths) do reqs[k] = wrk.format("GET", p) end
end
function request()
  i = i %% n + 1
  return reqs[i]
end
"""


def run_wrk(
    port: int,
    paths: Sequence[str],
    duration: float,
    connections: int = 50,
    threads: int = 1,
    timeout_s: int = 30,
    prefix: Sequence[str] = (),
    server_pid: int | None = None,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """Run wrk against ``paths`` (cycled, one after the other, by a small Lua script)."""
    wrk = ensure_wrk()
    url = f"http://127.0.0.1:{port}{paths[0]}"
    cmd = [
        *prefix,
        wrk,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(duration))}s",
        "--timeout",
        f"{timeout_s}s",
        "--latency",
    ]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    script_path = None
    if len(paths) > 1:
        quoted = ", ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in paths)
        fd, script_path = tempfile.mkstemp(suffix=".lua", prefix="bench-wrk-")
        with os.fdopen(fd, "w") as fh:
            fh.write(_WRK_SCRIPT % quoted)
        cmd += ["-s", script_path]
    cmd.append(url)
    try:
        with ForeignCpu(server_pid) as foreign:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    finally:
        if script_path:
            os.unlink(script_path)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed (exit {proc.returncode}): {proc.stderr}\n{proc.stdout}")
    result = parse_wrk(proc.stdout)
    result.foreign_cpu = foreign.cores
    result.server_cpu_s = foreign.server_seconds
    return result


def _busy_seconds(times: Any) -> float:
    return float(times.user + times.nice + times.system)


class ForeignCpu:
    """CPU time spent by everything except ``pid``, our children and us, in cores on average.

    System-wide user+nice+system time minus the watched server's, the children's we waited for
    (wrk) and our own; interrupt time is left out (loopback traffic is accounted there).
    """

    def __init__(self, pid: int | None) -> None:
        self.proc = psutil.Process(pid) if pid else None
        self.cores = 0.0
        self.server_seconds = 0.0

    def _server(self) -> float:
        if self.proc is not None:
            with contextlib.suppress(psutil.Error):
                t = self.proc.cpu_times()
                return float(t.user + t.system)
        return 0.0

    @staticmethod
    def _self_and_children() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def __enter__(self) -> ForeignCpu:
        self._t0 = time.monotonic()
        self._sys0 = _busy_seconds(psutil.cpu_times())
        self._server0 = self._server()
        self._local0 = self._self_and_children()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.monotonic() - self._t0
        system = _busy_seconds(psutil.cpu_times()) - self._sys0
        self.server_seconds = self._server() - self._server0
        ours = self.server_seconds + self._self_and_children() - self._local0
        self.cores = max(0.0, system - ours) / elapsed if elapsed > 0 else 0.0


# --------------------------------------------------------------------------------------------
# Memory sampling and formatting


class PeakRss:
    """Samples a process's RSS in a background thread; ``peak`` is the largest value seen."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, int(self.proc.memory_info().rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def settled_rss(server: Server, timeout: float = 20.0, quiet: float = 1.5) -> int:
    """RSS once it has stopped moving (within 0.5% over ``quiet`` seconds) or at ``timeout``."""
    deadline = time.monotonic() + timeout
    readings: list[tuple[float, int]] = []
    while True:
        now = time.monotonic()
        readings.append((now, server.rss()))
        window = [r for t, r in readings if now - t <= quiet]
        span_ok = readings[0][0] <= now - quiet
        if span_ok and max(window) - min(window) <= 0.005 * max(window):
            return readings[-1][1]
        if now >= deadline:
            return readings[-1][1]
        time.sleep(0.25)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[idx]


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    if math.isnan(value):
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "MISS"


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


@contextlib.contextmanager
def section(title: str) -> Iterator[None]:
    log("")
    log("=" * 78)
    log(title)
    log("=" * 78)
    started = time.monotonic()
    yield
    log(f"[{title.split(' ')[0]} done in {time.monotonic() - started:.1f}s]")

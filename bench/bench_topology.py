"""The deployment the guide recommends against one development process (wrk, one run).

Servers, all on loopback, the same 1,000,000-candle series in each:

- development: ``app:create_app`` in one uvicorn process, in memory (the baseline);
- topology-1 and topology-2: ``app_production`` under gunicorn with the project's
  ``gunicorn.conf.py`` and 1 and 2 workers, over one throwaway PostgreSQL and one redis-server,
  with JWT auth on (every request carries a bearer token), rate limiting on (limits high enough
  never to refuse), Prometheus metrics on and JSON access lines at INFO. The two masters share
  the database and Redis, as two replicas would.

Measured, in alternating wrk rounds of 500-candle history chunks at five places in the series:
requests/s of topology-2 over development and over topology-1. Then 20,000 sequential history
requests at random times against topology-2 (a new connection every 50 requests, so both
workers serve them) while one worker is sent SIGTERM halfway and gunicorn starts a new one:
errors, p99.9 and max latency. The ingest figure is the replace of the 1M candles through
topology-2, server side (request sent to answer received).

Targets (issue 14): topology-2 >= 1.0x development; topology-2 >= 1.3x topology-1; restart
stall: no error (one retry of a dropped keep-alive connection), p99.9 <= 10 ms, max <= 100 ms;
ingest >= 300k candles/s.

Run: ``python -m bench.bench_topology [--candles 1000000 --duration 4 --rounds 3]``
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PRODUCT_ENV,
    ROOT,
    BenchError,
    Server,
    WrkResult,
    create_chart,
    ensure_wrk,
    expect,
    free_port,
    generate_candles,
    http_request,
    log,
    median,
    percentile,
    ratio,
    replace_body,
    run_wrk,
    section,
    verdict,
)

DEVELOPMENT_APP = "lightweight_charts_pro_backend.app:create_app"
PRODUCTION_APP = "lightweight_charts_pro_backend.app_production:create_app()"
CONFIG = ROOT / "gunicorn.conf.py"
CHART = "bench"
SERIES = "candles"
CHUNK = 500
SECRET = "bench-topology-secret-key-of-at-least-32-bytes"
HIGHEST_LIMIT = "1000000"
SPEED_TARGET = 1.0
SCALE_TARGET = 1.3
STALL_P999_MS = 10.0
STALL_MAX_MS = 100.0
INGEST_TARGET = 300_000.0


def history_path(before_time: int) -> str:
    return f"/api/charts/{CHART}/history/0/{SERIES}?before_time={before_time}&count={CHUNK}"


class Gunicorn:
    """A gunicorn master reading ``gunicorn.conf.py``, on a free port."""

    def __init__(self, name: str, workers: int, env: dict[str, str]) -> None:
        self.name = name
        self.workers = workers
        self.env = env
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.proc: psutil.Popen | None = None

    def start(self) -> Gunicorn:
        environment = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        log_file = open(self.workdir / "server.log", "wb")  # noqa: SIM115
        self.proc = psutil.Popen(
            [
                sys.executable, "-m", "gunicorn", PRODUCTION_APP,
                "--config", str(CONFIG),
                "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(self.workers),
            ],
            cwd=self.workdir,
            env=environment,
            stdout=log_file,
            stderr=log_file,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited: {self.log_tail()}")
            with contextlib.suppress(OSError):
                ready = http_request(self.port, "GET", "/health/ready", timeout=2).status == 200
                if ready and len(self.worker_pids()) >= self.workers:
                    return self
            time.sleep(0.2)
        raise BenchError(f"{self.name} did not become ready: {self.log_tail()}")

    def wait_warm(self, timeout: float = 180.0) -> None:
        """Until every worker has logged the series it loaded before serving."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_tail(10**9).count("recently used series before serving") >= self.workers:
                return
            time.sleep(0.5)
        raise BenchError(f"{self.name}: the workers did not warm up: {self.log_tail()}")

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        return [child.pid for child in self.proc.children()]

    def log_tail(self, limit: int = 3000) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-limit:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except psutil.TimeoutExpired:
                self.proc.kill()


def token() -> str:
    import jwt

    claims = {"sub": "bench", "exp": int(time.time()) + 7200, "scope": "charts:read charts:write"}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def topology_env(database_url: str, redis_url: str) -> dict[str, str]:
    return {
        **PRODUCT_ENV,
        "ENVIRONMENT": "production",
        "SECRET_KEY": SECRET,
        "ENABLE_AUTH": "true",
        "ENABLE_PERSISTENCE": "true",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ENABLE_RATE_LIMITING": "true",
        "RATE_LIMIT_PER_MINUTE": HIGHEST_LIMIT,
        "RATE_LIMIT_HISTORY_PER_MINUTE": HIGHEST_LIMIT,
        "ENABLE_METRICS": "true",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "CORS_ORIGINS": "https://charts.example.com",
        "SERIES_CACHE_MB": "1024",
        # Workers load the series before they serve (gunicorn.conf.py gives them the time).
        "CACHE_WARMUP_SECONDS": "120",
    }


def checked(name: str, res: WrkResult) -> WrkResult:
    if res.non_2xx or res.socket_errors:
        raise BenchError(
            f"{name}: {res.non_2xx} non-2xx responses and {res.socket_errors} socket errors in "
            f"{res.requests} requests"
        )
    return res


def warm(port: int, paths: list[str], headers: dict[str, str], name: str) -> None:
    """wrk until two runs in a row agree within 10%: every worker has loaded the series."""
    previous = 0.0
    for _ in range(15):
        rps = checked(name, run_wrk(port, paths, 2, 16, headers=headers)).rps
        if previous and abs(rps - previous) <= 0.1 * max(rps, previous):
            return
        previous = rps
        time.sleep(1.0)
    log(f"  ! {name} did not settle while warming")


@contextmanager
def services(root: Path) -> Iterator[tuple[str, str]]:
    from tests.servers import PostgresServer, redis_server

    with ExitStack() as stack:
        postgres = PostgresServer()
        stack.callback(postgres.close)
        postgres.start()
        redis = stack.enter_context(redis_server(root / "redis"))
        yield postgres.create_database("bench"), redis.url


def restart_stall(
    server: Gunicorn, candles: int, start: int, step: int, requests: int, headers: dict[str, str]
) -> dict[str, float]:
    """Sequential requests at random times; SIGTERM to one worker halfway."""
    rng = random.Random(7)
    latencies: list[float] = []
    errors: list[str] = []
    retries = 0
    conn: http.client.HTTPConnection | None = None
    victim = None
    for i in range(requests):
        if i == requests // 2:
            victim = server.worker_pids()[0]
            os.kill(victim, signal.SIGTERM)
        if conn is None or i % 50 == 0:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        path = history_path(start + step * rng.randrange(CHUNK, candles))
        for attempt in (0, 1):
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
            except (ConnectionError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                if attempt == 0:
                    retries += 1
                    continue
                errors.append(f"{i}: {exc!r}")
                break
            latencies.append((time.perf_counter() - started) * 1000)
            if resp.status != 200:
                errors.append(f"{i}: HTTP {resp.status}")
            break
    if conn is not None:
        conn.close()
    if victim in server.worker_pids():
        errors.append(f"worker {victim} did not exit")
    if errors:
        log(f"  errors: {errors[:5]}")
    return {
        "stall_errors": float(len(errors)),
        "stall_retries": float(retries),
        "stall_p50_ms": percentile(latencies, 50),
        "stall_p999_ms": percentile(latencies, 99.9),
        "stall_max_ms": max(latencies),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating wrk rounds")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--stall-requests", type=int, default=20_000)
    args = parser.parse_args(argv)

    figures: dict[str, float] = {}
    with (
        section("bench_topology: gunicorn workers over PostgreSQL and Redis"),
        ExitStack() as stack,
    ):
        ensure_wrk()
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-topology-")))
        database_url, redis_url = stack.enter_context(services(root))
        env = topology_env(database_url, redis_url)
        auth = {"Authorization": f"Bearer {token()}"}
        candles = generate_candles(args.candles)
        body = replace_body(candles)
        start, step = candles[0]["time"], candles[1]["time"] - candles[0]["time"]
        paths = [
            history_path(candles[int(args.candles * f)]["time"]) for f in (0.1, 0.3, 0.5, 0.7, 0.9)
        ]

        development = Server("development", DEVELOPMENT_APP, True, PRODUCT_ENV).start()
        stack.callback(development.stop)
        create_chart(development.port, CHART)
        post = http_request(development.port, "POST", f"/api/charts/{CHART}/data/{SERIES}", body)
        expect(post, 200, "development replace")

        two = Gunicorn("topology-2", 2, env).start()
        stack.callback(two.stop)
        one = Gunicorn("topology-1", 1, env).start()
        stack.callback(one.stop)
        ingest = expect(
            http_request(
                two.port, "POST", f"/api/charts/{CHART}/data/{SERIES}", body, headers=auth
            ),
            200,
            "topology replace",
        )
        figures["ingest_candles_per_s"] = args.candles / ingest.seconds
        log(f"ingest through topology-2: {args.candles:,} candles in {ingest.seconds:.2f} s")
        # Started again, as after a deployment: each worker loads the series before it serves.
        for old in (one, two):
            old.stop()
        two = Gunicorn("topology-2", 2, env).start()
        stack.callback(two.stop)
        one = Gunicorn("topology-1", 1, env).start()
        stack.callback(one.stop)
        for server in (one, two):
            server.wait_warm()
        for path in paths:
            reference = expect(http_request(development.port, "GET", path), 200, path).body
            for server in (one, two):
                answer = http_request(server.port, "GET", path, headers=auth)
                if expect(answer, 200, path).body != reference:
                    raise BenchError(f"{server.name} answers {path} differently")
        warm(development.port, paths, {}, "development")
        warm(one.port, paths, auth, "topology-1")
        warm(two.port, paths, auth, "topology-2")

        rates: dict[str, list[float]] = {"development": [], "topology-1": [], "topology-2": []}
        for round_ in range(args.rounds):
            line = []
            for name, port, headers in (
                ("development", development.port, {}),
                ("topology-1", one.port, auth),
                ("topology-2", two.port, auth),
            ):
                res = checked(
                    name, run_wrk(port, paths, args.duration, args.connections, headers=headers)
                )
                rates[name].append(res.rps)
                line.append(f"{name} {res.rps:>8,.0f} req/s (p99 {res.p99_ms:.1f} ms)")
            log(f"round {round_ + 1}: " + "; ".join(line))
        figures["two_over_development"] = median(
            [ratio(t, d) for t, d in zip(rates["topology-2"], rates["development"], strict=True)]
        )
        figures["two_over_one"] = median(
            [ratio(t, o) for t, o in zip(rates["topology-2"], rates["topology-1"], strict=True)]
        )
        for name, values in rates.items():
            figures[f"{name}_rps"] = median(values)

        log(f"\n{args.stall_requests:,} sequential requests; a topology-2 worker restarted halfway")
        figures |= restart_stall(two, args.candles, start, step, args.stall_requests, auth)

        log("\nsummary (topology):")
        checks = [
            ("2 workers / development", figures["two_over_development"], SPEED_TARGET, True, ".3f"),
            ("2 workers / 1 worker req/s", figures["two_over_one"], SCALE_TARGET, True, ".3f"),
            ("restart: p99.9 latency ms", figures["stall_p999_ms"], STALL_P999_MS, False, ".2f"),
            ("restart: max latency ms", figures["stall_max_ms"], STALL_MAX_MS, False, ".1f"),
            ("restart: errors", figures["stall_errors"], 0.0, False, ".0f"),
            ("ingest candles/s", figures["ingest_candles_per_s"], INGEST_TARGET, True, ",.0f"),
        ]  # fmt: skip
        for label, value, target, higher, form in checks:
            log(f"  {label} = {value:{form}} (target {'>=' if higher else '<='} {target:{form}}) "
                f"{verdict(value, target, higher)}")  # fmt: skip
        log(f"  one retry of a dropped keep-alive connection: {figures['stall_retries']:.0f}")
        log("  " + ", ".join(f"{name} {figures[f'{name}_rps']:,.0f} req/s" for name in rates))
    return figures


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        log(f"bench_topology FAILED: {exc}")
        sys.exit(1)

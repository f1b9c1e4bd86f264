"""Persistence: bulk ingest into the database, and history served from the database.

For each backend (PostgreSQL on a throwaway server, SQLite in a temporary file):

- ingest: one uvicorn process with ``ENABLE_PERSISTENCE=true`` receives
  ``POST /api/charts/ingest/data/candles`` with 1,000,000 candles (after a 10k warm-up POST);
  the figure is candles / wall time of that request seen from the client, i.e. until the
  points are committed. The same POST to the product in memory mode is the reference.
- history: a second process on the same database with ``SERIES_CACHE_MB=0``, so the series is
  never loaded and every chunk is a keyset query, against the memory-mode process holding the
  same 1M candles. Sequential keep-alive requests for 500-candle chunks before random times,
  alternating between the two servers; the figure is the ratio of the median latencies. Every
  answer of the database-backed server is checked byte for byte against the memory server's.

Targets (issue 4): PostgreSQL >= 150,000 candles/s, SQLite >= 100,000 candles/s; history chunk
from the database within 3x of the same chunk from memory (median latency, 1M rows).

Run: ``python -m bench.bench_persistence [--candles 1000000 --backends postgresql,sqlite]``
(``mariadb`` and ``mariadb-asyncmy`` may be added: measured, no ingest target).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BenchError,
    KeepAlive,
    Server,
    cpu_plan,
    create_chart,
    generate_candles,
    log,
    median,
    percentile,
    pin_self,
    post_series,
    product_available,
    product_server,
    replace_body,
    section,
    verdict,
)

CHART = "ingest"
SERIES = "candles"
CHUNK = 500
INGEST_TARGETS = {"postgresql": 150_000.0, "sqlite": 100_000.0}
LATENCY_TARGET = 3.0


def ingest(server: Server, body: bytes, candles: int) -> float:
    """Start ``server``, warm it up, POST the 1M candles; candles per second. Leaves it running."""
    server.start()
    create_chart(server.port, CHART)
    post_series(server.port, CHART, "warmup", replace_body(generate_candles(10_000)), 10_000)
    seconds = post_series(server.port, CHART, SERIES, body, candles).seconds
    return candles / seconds


def history_path(before_time: int) -> str:
    return f"/api/charts/{CHART}/history/0/{SERIES}?before_time={before_time}&count={CHUNK}"


def compare_latency(
    memory: Server, database: Server, paths: list[str], warmup: int
) -> tuple[list[float], list[float]]:
    """Alternate the same requests between both servers; seconds per request for each."""
    mem_client, db_client = KeepAlive(memory.port), KeepAlive(database.port)
    mem: list[float] = []
    db: list[float] = []
    try:
        for path in paths[:warmup]:
            mem_client.get(path)
            db_client.get(path)
        for i, path in enumerate(paths):
            order = [(mem_client, mem), (db_client, db)]
            if i % 2:
                order.reverse()
            bodies = []
            for client, sink in order:
                status, data, seconds = client.get(path)
                if status != 200:
                    raise BenchError(f"{path} answered {status}: {data[:300]!r}")
                sink.append(seconds)
                bodies.append(data)
            if bodies[0] != bodies[1]:
                raise BenchError(f"{path}: the database and memory answers differ")
    finally:
        mem_client.close()
        db_client.close()
    return mem, db


class Backend:
    """A database for one backend: a throwaway server or a temporary SQLite file."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server = None
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))

    def url(self) -> str:
        if self.name == "sqlite":
            return f"sqlite+aiosqlite:///{self.tmp / 'charts.db'}"
        from tests.servers import MariaDBServer, PostgresServer

        if self.name == "postgresql":
            postgres = PostgresServer()
            self.server = postgres  # type: ignore[assignment]
            postgres.start()
            return postgres.create_database("bench")
        maria = MariaDBServer()
        self.server = maria  # type: ignore[assignment]
        maria.start()
        driver = "mysql+asyncmy" if self.name == "mariadb-asyncmy" else "mysql+aiomysql"
        return maria.create_database("bench", driver)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--latency-requests", type=int, default=600)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)

    figures: dict[str, float] = {}
    with section("bench_persistence: ingest into the database, history from the database"):
        ok, why = product_available()
        if not ok:
            raise BenchError(f"the product does not import yet: {why}")
        plan = cpu_plan(not args.no_pin)
        pin_self(plan)
        n = args.candles
        candles = generate_candles(n)
        body = replace_body(candles)
        log(f"{n:,} candles, {len(body) / 1e6:.1f} MB JSON; {plan.description}")
        rng = random.Random(4)
        paths = [history_path(candles[rng.randrange(CHUNK, n)]["time"]) for _ in range(400)]
        paths = (paths * (args.latency_requests // len(paths) + 1))[: args.latency_requests]

        memory = product_server(plan.server_prefix)
        try:
            rate = ingest(memory, body, n)
            figures["memory_candles_per_s"] = rate
            log(f"  {'memory':<10} ingest {rate:>12,.0f} candles/s  (reference)")
            for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
                backend = Backend(name)
                try:
                    url = backend.url()
                    env = {"ENABLE_PERSISTENCE": "true", "DATABASE_URL": url}
                    writer = product_server(plan.server_prefix, env)
                    try:
                        rate = ingest(writer, body, n)
                    finally:
                        writer.stop()
                    figures[f"{name}_candles_per_s"] = rate
                    target = INGEST_TARGETS.get(name)
                    goal = (
                        f"(target >= {target:,.0f}) {verdict(rate, target, True)}"
                        if target
                        else "(no target)"
                    )
                    log(f"  {name:<10} ingest {rate:>12,.0f} candles/s  {goal}")
                    reader = product_server(plan.server_prefix, {**env, "SERIES_CACHE_MB": "0"})
                    reader.start()
                    try:
                        mem, db = compare_latency(memory, reader, paths, warmup=20)
                    finally:
                        reader.stop()
                    ratio = median(db) / median(mem)
                    figures[f"{name}_history_latency_ratio"] = ratio
                    figures[f"{name}_history_median_ms"] = median(db) * 1000
                    figures[f"{name}_memory_median_ms"] = median(mem) * 1000
                    log(
                        f"  {name:<10} history median {median(db) * 1000:.3f} ms "
                        f"(p99 {percentile(db, 99) * 1000:.3f}) vs memory "
                        f"{median(mem) * 1000:.3f} ms (p99 {percentile(mem, 99) * 1000:.3f}): "
                        f"{ratio:.2f}x (target <= {LATENCY_TARGET:g}x) "
                        f"{verdict(ratio, LATENCY_TARGET, False)}"
                    )
                finally:
                    backend.close()
        finally:
            memory.stop()
    return figures


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        log(f"bench_persistence FAILED: {exc}")
        sys.exit(1)

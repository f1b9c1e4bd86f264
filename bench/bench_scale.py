"""Fan-out through Redis: 1,000 sockets over 4 gunicorn workers vs one in-memory process.

Two servers, measured in alternating rounds in the same run:

- single: ``create_app --factory`` in one process, in memory (the in-process bus), as in
  ``bench_fanout``;
- redis:  gunicorn with 4 uvicorn workers, persistence on a throwaway PostgreSQL and
  ``REDIS_URL`` on a throwaway redis-server: an update is committed by the worker that takes the
  PATCH, published once on Redis and fanned out by every worker to its own sockets.

The sockets are opened in batches on new connections, so the workers' accept loops share them.
Figures per server (the clients and helpers are ``bench_fanout``'s): the p99 over the sockets of
each single update (median over updates), and frames delivered per second during bursts of
pipelined PATCHes. Nothing is pinned: the workers are meant to use every core.

Targets (issue 7): redis p99 <= 100 ms; redis rate >= 0.5 x single rate.

Run: ``python -m bench.bench_scale [--sockets 1000 --workers 4 --rounds 3 --trials 10 --burst 50]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PRODUCT_ENV,
    BenchError,
    log,
    median,
    percentile,
    product_available,
    product_server,
    ratio,
    section,
    verdict,
)
from bench.bench_fanout import (
    CHART,
    FANOUT_ENV,
    Target,
    Tracker,
    Updates,
    close_clients,
    measure_rounds,
    open_clients,
    prepare_chart,
    raise_fd_limit,
)

LATENCY_TARGET_MS = 100.0
RATE_TARGET = 0.5
APP = "lightweight_charts_pro_backend.app:create_app()"


async def run(args: argparse.Namespace, stack: ExitStack) -> dict[str, float]:
    from tests.servers import PostgresServer, gunicorn_server, redis_server

    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-")))
    postgres = PostgresServer()
    stack.callback(postgres.close)
    postgres.start()
    redis = stack.enter_context(redis_server(root / "redis"))
    env = {
        **PRODUCT_ENV,
        **FANOUT_ENV,
        "ENABLE_PERSISTENCE": "true",
        "DATABASE_URL": postgres.create_database("bench"),
        "REDIS_URL": redis.url,
    }
    log(
        f"{args.sockets:,} sockets per server on one chart; {args.rounds} rounds of "
        f"{args.trials} single updates + a burst of {args.burst}; not pinned"
    )
    tracker = Tracker()
    targets: list[Target] = []
    closers: list[Callable[[], None]] = []
    try:
        single = product_server((), FANOUT_ENV).start()
        stack.callback(single.stop)
        conn = await prepare_chart(single.port)
        closers.append(conn.close)
        clients = await open_clients(single.port, f"/ws/charts/{CHART}", args.sockets, tracker)
        closers.append(lambda: close_clients(clients))
        updates = Updates(conn, 10**9)
        targets.append(Target("single", clients, updates.one, updates.burst))

        cluster = stack.enter_context(
            gunicorn_server(APP, root / "gunicorn", workers=args.workers, env=env)
        )
        redis_conn = await prepare_chart(cluster.port)
        closers.append(redis_conn.close)
        # small batches on fresh connections: each worker's accept loop takes a share
        redis_clients = await open_clients(
            cluster.port, f"/ws/charts/{CHART}", args.sockets, tracker, batch=10
        )
        closers.append(lambda: close_clients(redis_clients))
        redis_updates = Updates(redis_conn, 10**9)
        targets.append(Target("redis", redis_clients, redis_updates.one, redis_updates.burst))

        await measure_rounds(targets, tracker, args.rounds, args.trials, args.burst)
    finally:
        for close in closers:
            with contextlib.suppress(Exception):
                close()

    figures: dict[str, float] = {}
    for target in targets:
        p99s = [percentile(trial, 99) for trial in target.trials]
        pooled = [x for trial in target.trials for x in trial]
        figures[f"{target.name}_p99_ms"] = median(p99s)
        figures[f"{target.name}_worst_p99_ms"] = max(p99s)
        figures[f"{target.name}_p50_ms"] = percentile(pooled, 50)
        figures[f"{target.name}_rate"] = median(target.rates)
    by_name = {target.name: target for target in targets}
    figures["redis_over_single"] = median(
        [ratio(r, s) for r, s in zip(by_name["redis"].rates, by_name["single"].rates, strict=True)]
    )
    return figures


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=10, help="single updates per round")
    parser.add_argument("--burst", type=int, default=50, help="updates per sustained burst")
    args = parser.parse_args(argv)

    with section("bench_scale: fan-out through Redis over several workers"):
        ok, why = product_available()
        if not ok:
            raise BenchError(f"the product does not import yet: {why}")
        raise_fd_limit(2 * args.sockets + 400)
        with ExitStack() as stack:
            try:
                import uvloop

                figures = uvloop.run(run(args, stack))
            except ImportError:
                figures = asyncio.run(run(args, stack))

        p99 = figures["redis_p99_ms"]
        over = figures["redis_over_single"]
        log("\nsummary (scale-out):")
        log(
            f"  redis p99 latency (median over updates) = {p99:.2f} ms "
            f"(target <= {LATENCY_TARGET_MS:g} ms) {verdict(p99, LATENCY_TARGET_MS, False)}"
        )
        log(
            f"  redis rate / single rate (median of rounds) = {over:.3f} "
            f"(target >= {RATE_TARGET}) {verdict(over, RATE_TARGET, True)}"
        )
        for name in ("single", "redis"):
            log(
                f"  {name:<7} p50 {figures[f'{name}_p50_ms']:7.2f} ms  p99 median "
                f"{figures[f'{name}_p99_ms']:7.2f} ms, worst {figures[f'{name}_worst_p99_ms']:7.2f}"
                f" ms;  rate {figures[f'{name}_rate']:>10,.0f} frames/s"
            )
    return figures


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        log(f"bench_scale FAILED: {exc}")
        sys.exit(1)

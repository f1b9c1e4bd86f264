"""Resident memory per stored candle, product vs naive reference.

For each server: start it, warm it up (a tiny chart created, read and deleted), read its settled
RSS ("empty"); load 1,000,000 candles as one POST of 100k and nine PATCH appends of 100k; read a
few history chunks (so lazily built read structures are counted); read the settled RSS again.
Bytes per candle = (loaded - empty) / candles. Target (DESIGN.md section 8): <= 100.

Run: ``python -m bench.bench_memory [--candles 1000000 --chunks 10]``
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BenchError,
    PeakRss,
    Server,
    client_pinned,
    cpu_plan,
    create_chart,
    expect,
    generate_candles,
    http_request,
    log,
    mib,
    naive_server,
    patch_series,
    post_series,
    product_available,
    product_server,
    replace_body,
    reset_quiet_budget,
    section,
    settled_rss,
    upsert_body,
    verdict,
    wait_quiet,
)

CHART = "mem"
SERIES = "candles"
TARGET_BYTES_PER_CANDLE = 100.0
MALLOC_TRIM_ENV = {"MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_MMAP_THRESHOLD_": "65536"}


def warm_up(server: Server) -> None:
    """Exercise the code paths once so that lazily imported modules count as 'empty'."""
    port = server.port
    expect(http_request(port, "GET", "/health"), 200, "health")
    create_chart(port, "warmup")
    post_series(port, "warmup", "s", replace_body(generate_candles(60)[:50]), 50)
    patch_series(port, "warmup", "s", upsert_body(generate_candles(60)[50:]), 10, 60)
    path = "/api/charts/warmup/history/0/s?before_time=946687000&count=20"
    expect(http_request(port, "GET", path), 200, "warm-up history")
    expect(http_request(port, "DELETE", "/api/charts/warmup"), (200, 204), "delete warm-up chart")


_STORE_BYTES = re.compile(
    r"^(\w*(?:store|storage|cache)\w*bytes\w*)(?:\{[^}]*\})?\s+([0-9.eE+-]+)$", re.MULTILINE
)


def store_bytes_from_metrics(port: int) -> float | None:
    """Sum of ``*store*bytes*`` gauges on ``/metrics``, when the server exposes any."""
    try:
        resp = http_request(port, "GET", "/metrics", timeout=10)
    except OSError:
        return None
    if resp.status != 200:
        return None
    values = [
        float(m.group(2))
        for m in _STORE_BYTES.finditer(resp.body.decode("utf-8", "replace"))
        if not m.group(1).endswith(("_total", "_created", "_bucket", "_sum", "_count"))
    ]
    return sum(values) if values else None


def measure(server: Server, candles: int, chunks: int) -> dict[str, float]:
    data = generate_candles(candles)
    size = candles // chunks
    bodies = [
        replace_body(data[:size]) if k == 0 else upsert_body(data[k * size : (k + 1) * size])
        for k in range(chunks)
    ]
    server.start()
    try:
        warm_up(server)
        empty = settled_rss(server)
        with PeakRss(server.pid) as peak:
            create_chart(server.port, CHART)
            seconds = post_series(server.port, CHART, SERIES, bodies[0], size).seconds
            for k in range(1, chunks):
                resp = patch_series(server.port, CHART, SERIES, bodies[k], size, size * (k + 1))
                seconds += resp.seconds
        bodies.clear()
        loaded = settled_rss(server)
        for t in (data[-1]["time"] + 1, data[candles // 2]["time"], data[600]["time"]):
            path = f"/api/charts/{CHART}/history/0/{SERIES}?before_time={t}&count=500"
            resp = expect(http_request(server.port, "GET", path), 200, f"history {path}")
            got = len(resp.json().get("data", ()))
            if got != 500:
                raise BenchError(f"{server.name}: history {path} returned {got} points, not 500")
        after_reads = settled_rss(server)
        accounted = store_bytes_from_metrics(server.port)
        if accounted is not None:
            log(
                f"  {server.name:<8} /metrics reports {accounted:,.0f} store bytes "
                f"= {accounted / candles:.1f} bytes/candle (the rest is process overhead)"
            )
        final = max(loaded, after_reads)
        per = (final - empty) / candles
        log(
            f"  {server.name:<8} empty {mib(empty):>12}  loaded {mib(loaded):>12}  "
            f"after reads {mib(after_reads):>12}  peak {mib(peak.peak):>12}  "
            f"-> {per:7.1f} bytes/candle  (load {seconds:.2f}s, {candles / seconds:,.0f}/s)"
        )
        return {
            "empty_rss": float(empty),
            "loaded_rss": float(final),
            "peak_rss": float(peak.peak),
            "bytes_per_candle": per,
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument(
        "--no-malloc-diag", action="store_true", help="skip the glibc-trimming diagnostic run"
    )
    args = parser.parse_args(argv)
    if args.candles % args.chunks:
        parser.error("--candles must be a multiple of --chunks")

    figures: dict[str, float] = {}
    with section("bench_memory: resident memory per candle"), contextlib.ExitStack() as stack:
        ok, why = product_available()
        if not ok:
            raise BenchError(f"the product does not import yet: {why}")
        plan = cpu_plan(not args.no_pin)
        stack.enter_context(client_pinned(plan))
        reset_quiet_budget(10)  # RSS does not depend on CPU contention; only the load speed does
        wait_quiet(max_wait=10)
        size = args.candles // args.chunks
        log(
            f"{args.candles:,} candles as 1 POST + {args.chunks - 1} PATCH of {size:,}; RSS via "
            "psutil, settled (<0.5% change over 1.5s) after load and after 3 history reads"
        )
        log(
            f"  (the JSON itself is ~{len(replace_body(generate_candles(60))) / 60:.0f} "
            "bytes/candle; 5 numbers as int64/float64 are 40 bytes)"
        )
        product = measure(product_server(plan.server_prefix), args.candles, args.chunks)
        figures.update({f"product_{k}": v for k, v in product.items()})
        if not args.no_naive:
            naive = measure(naive_server(plan.server_prefix), args.candles, args.chunks)
            figures.update({f"naive_{k}": v for k, v in naive.items()})
        if not args.no_malloc_diag:
            # Diagnostic, not the target: the same load with glibc told to give freed memory
            # back; the difference is heap the allocator keeps after parsing request bodies.
            env_text = " ".join(f"{k}={v}" for k, v in MALLOC_TRIM_ENV.items())
            log(f"  diagnostic: the product again with {env_text}")
            trimmed = product_server(plan.server_prefix, extra_env=MALLOC_TRIM_ENV)
            trimmed.name = "trimmed"
            diag = measure(trimmed, args.candles, args.chunks)
            figures["product_trimmed_bytes_per_candle"] = diag["bytes_per_candle"]

        log("\nsummary (memory):")
        per = figures["product_bytes_per_candle"]
        log(
            f"  product bytes/candle       = {per:.1f}  (target <= {TARGET_BYTES_PER_CANDLE:.0f}) "
            f"{verdict(per, TARGET_BYTES_PER_CANDLE, False)}"
        )
        if "product_trimmed_bytes_per_candle" in figures:
            trimmed_per = figures["product_trimmed_bytes_per_candle"]
            log(f"  product, glibc trimming    = {trimmed_per:.1f}  (diagnostic)")
        if "naive_bytes_per_candle" in figures:
            naive_per = figures["naive_bytes_per_candle"]
            log(f"  naive bytes/candle         = {naive_per:.1f}")
            if per > 0:
                log(f"  naive/product              = {naive_per / per:.1f}x")
    return figures


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        log(f"bench_memory FAILED: {exc}")
        sys.exit(1)

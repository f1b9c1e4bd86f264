"""Run every benchmark in turn and print a summary of the ratios against DESIGN.md section 8.

Run: ``python -m bench.run_all`` (or ``python bench/run_all.py``); ``--quick`` for a short pass,
``--only history,memory,ingest,persistence,fanout,production,topology,annotations,resolutions,udf``
to choose. Exit status 1 when a benchmark could not run, and also when a target is missed if
``--strict`` is given.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    bench_annotations,
    bench_fanout,
    bench_history,
    bench_ingest,
    bench_memory,
    bench_persistence,
    bench_production,
    bench_resolutions,
    bench_topology,
    bench_udf,
)
from bench._common import BenchError, log, unpin_self, verdict

Main = Callable[[list[str] | None], dict[str, float]]

BENCHES: dict[str, tuple[Main, list[str], list[str]]] = {
    # name: (main, default args, --quick args)
    "history": (
        bench_history.main,
        [],
        ["--duration", "4", "--rounds", "2", "--latency-requests", "500"],
    ),
    "memory": (bench_memory.main, [], []),
    "ingest": (bench_ingest.main, [], []),
    "persistence": (bench_persistence.main, [], ["--latency-requests", "300"]),
    "fanout": (bench_fanout.main, [], ["--rounds", "3", "--trials", "5", "--burst", "50"]),
    "production": (bench_production.main, [], ["--duration", "3", "--rounds", "3"]),
    "topology": (
        bench_topology.main,
        [],
        ["--candles", "200000", "--duration", "3", "--rounds", "2", "--stall-requests", "4000"],
    ),
    "annotations": (
        bench_annotations.main,
        [],
        ["--latency-requests", "200", "--backends", "memory,sqlite"],
    ),
    "resolutions": (
        bench_resolutions.main,
        [],
        ["--duration", "3", "--rounds", "2", "--trials", "10", "--range-requests", "100"],
    ),
    "udf": (bench_udf.main, [], ["--duration", "3", "--rounds", "2"]),
}

# (bench, figure, label, target, higher is better)
TARGETS = [
    ("history", "product_over_ceiling", "history req/s product/ceiling", 0.30, True),
    ("history", "product_latency_ratio", "history latency 1M/1k (product)", 1.2, False),
    ("memory", "product_bytes_per_candle", "memory bytes/candle (product)", 100.0, False),
    ("ingest", "product_candles_per_s", "ingest candles/s (product)", 500_000.0, True),
    (
        "persistence",
        "postgresql_candles_per_s",
        "ingest candles/s into PostgreSQL",
        150_000.0,
        True,
    ),
    ("persistence", "sqlite_candles_per_s", "ingest candles/s into SQLite", 100_000.0, True),
    (
        "persistence",
        "postgresql_history_latency_ratio",
        "history latency DB/memory (PostgreSQL)",
        3.0,
        False,
    ),
    (
        "persistence",
        "sqlite_history_latency_ratio",
        "history latency DB/memory (SQLite)",
        3.0,
        False,
    ),
    ("fanout", "product_p99_ms", "fan-out p99 ms, 1000 sockets (product)", 50.0, False),
    ("fanout", "product_over_bare", "fan-out rate product/bare websockets", 0.5, True),
    ("production", "production_over_development", "req/s production/development", 0.85, True),
    ("topology", "two_over_development", "req/s 2 gunicorn workers/development", 1.0, True),
    ("topology", "two_over_one", "req/s 2 workers/1 worker", 1.3, True),
    ("topology", "stall_p999_ms", "worker restart: p99.9 ms", 10.0, False),
    ("topology", "stall_max_ms", "worker restart: max ms", 100.0, False),
    ("topology", "ingest_candles_per_s", "ingest candles/s through the topology", 300_000.0, True),
    (
        "annotations",
        "memory_listing_over_history",
        "annotations listing/history latency (mem)",
        3.0,
        False,
    ),
    (
        "annotations",
        "sqlite_listing_over_history",
        "annotations listing/history latency (SQLite)",
        3.0,
        False,
    ),
    (
        "annotations",
        "postgresql_listing_over_history",
        "annotations listing/history (PostgreSQL)",
        3.0,
        False,
    ),
    ("resolutions", "warm_bars_over_raw", "warm 500 bars at 60 / raw chunk req/s", 0.5, True),
    (
        "resolutions",
        "cold_utc_60_pandas_json_over_server",
        "cold 60 (UTC): pandas/server",
        2.0,
        True,
    ),
    (
        "resolutions",
        "cold_utc_1D_pandas_json_over_server",
        "cold 1D (UTC): pandas/server",
        2.0,
        True,
    ),
    ("resolutions", "cold_ny_60_pandas_json_over_server", "cold 60 (NY): pandas/server", 2.0, True),
    ("resolutions", "cold_ny_1D_pandas_json_over_server", "cold 1D (NY): pandas/server", 2.0, True),
    ("udf", "udf_over_rest", "UDF history / REST 300 bars at 60 req/s", 0.5, True),
    ("resolutions", "live_bars_over_raw", "live p99 bars/raw, 1000 sockets", 1.5, False),
    ("resolutions", "range_over_raw_chunk", "range 2000 of 1M / raw 2000 chunk", 10.0, False),
]
#: Figure counting measurements kept although other processes disturbed them.
NOISE_KEYS = {
    ("history", "product_over_ceiling"): "disturbed_rounds",
    ("ingest", "product_candles_per_s"): "disturbed_runs",
}
REFERENCE = [
    ("history", "product_rps", "history req/s product"),
    ("history", "ceiling_rps", "history req/s ceiling"),
    ("history", "product_over_naive", "history req/s product/naive"),
    ("history", "naive_over_ceiling", "history req/s naive/ceiling"),
    ("history", "naive_latency_ratio", "history latency 1M/1k (naive)"),
    ("history", "product_post_candles_per_s", "1M POST candles/s (history setup)"),
    ("history", "product_over_ceiling_of_medians", "history product/ceiling (of medians)"),
    ("history", "product_over_ceiling_cpu", "history product/ceiling (server CPU)"),
    ("memory", "product_trimmed_bytes_per_candle", "memory bytes/candle (product, trim)"),
    ("memory", "naive_bytes_per_candle", "memory bytes/candle (naive)"),
    ("ingest", "naive_candles_per_s", "ingest candles/s (naive)"),
    ("ingest", "product_over_naive", "ingest product/naive"),
    ("persistence", "memory_candles_per_s", "ingest candles/s in memory (same run)"),
    ("fanout", "bare_p99_ms", "fan-out p99 ms (bare websockets)"),
    ("fanout", "naive_p99_ms", "fan-out p99 ms (naive)"),
    ("fanout", "product_worst_p99_ms", "fan-out worst update p99 ms (product)"),
    ("fanout", "product_over_naive", "fan-out rate product/naive"),
    ("production", "production_over_development_worst_round", "production/development worst"),
    ("production", "production_over_development_cpu", "production/development by CPU"),
    ("resolutions", "cold_ny_60_pandas_frame_over_server", "cold 60 (NY): pandas DataFrame/server"),
    ("resolutions", "cold_ny_1D_pandas_frame_over_server", "cold 1D (NY): pandas DataFrame/server"),
    ("resolutions", "range_cold_ms", "range 2000 of 1M, first (cold) ms"),
]


def fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    started = time.monotonic()
    results: dict[str, dict[str, float]] = {}
    failures: dict[str, str] = {}
    for name in chosen:
        run, default_args, quick_args = BENCHES[name]
        try:
            results[name] = run(quick_args if args.quick else default_args)
        except BenchError as exc:
            failures[name] = str(exc)
            log(f"\n{name}: FAILED: {exc}")
        except Exception as exc:  # keep going: one broken benchmark must not hide the others
            failures[name] = f"{type(exc).__name__}: {exc}"
            log(f"\n{name}: CRASHED:\n{traceback.format_exc()}")
        finally:
            unpin_self()  # a benchmark may have pinned this process to the client CPU

    log("")
    log("=" * 78)
    log(f"SUMMARY (one run, same machine; {time.monotonic() - started:.0f}s total)")
    log("=" * 78)
    missed = 0
    for bench, key, label, target, higher in TARGETS:
        if bench not in chosen:
            continue
        value = results.get(bench, {}).get(key, math.nan)
        mark = verdict(value, target, higher)
        missed += mark == "MISS"
        op = ">=" if higher else "<="
        noise = results.get(bench, {}).get(NOISE_KEYS.get((bench, key), ""), 0.0)
        note = f"  (noisy: {noise:.0f} disturbed run(s) kept)" if noise else ""
        log(f"  {label:<40} {fmt(value):>12}   target {op} {fmt(target):<8} {mark}{note}")
    for bench, key, label in REFERENCE:
        if bench in results and key in results[bench]:
            log(f"  {label:<40} {fmt(results[bench][key]):>12}")
    for name, why in failures.items():
        log(f"  {name}: did not run: {why.splitlines()[0] if why else ''}")
    if failures:
        return 1
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())

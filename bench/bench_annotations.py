"""Annotations: listing a visible range of a chart holding 10,000 of them, against a history chunk.

For each store (memory, and the databases asked for): one uvicorn process; a chart with 100,000
one-minute candles and 10,000 annotations spread over them (markers, trend lines up to 60 bars
long, a few horizontal lines that every range shows). Then sequential keep-alive requests,
alternating: ``GET /api/charts/{id}/annotations?from=&to=`` for a window of 500 bars at a random
place, and ``GET /api/charts/{id}/history/0/price?before_time=&count=500`` for the same window.
The figure is the ratio of the median latencies (the series is served from memory in every mode,
as it is once loaded).

Target (issue 17): listing latency <= 3x the 500-point history chunk latency, same run.

Run: ``python -m bench.bench_annotations [--backends memory,sqlite,postgresql]``.
"""

from __future__ import annotations

import argparse
import http.client
import random
import sys
import time
from pathlib import Path
from typing import Any

import orjson

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
from bench.bench_persistence import Backend

CHART = "drawn"
CHUNK = 500
BAR = 60
TARGET = 3.0


def annotation_bodies(times: list[int], count: int, seed: int = 17) -> list[bytes]:
    """``count`` annotations anchored at the candles' times: markers, trend lines, a few
    horizontal lines."""
    rng = random.Random(seed)
    bodies = []
    for i in range(count):
        body: dict[str, Any]
        at = rng.randrange(len(times) - 60)
        if i % 500 == 0:
            body = {"kind": "horizontal_line", "points": [{"price": 100 + i / 100}]}
        elif i % 2:
            body = {
                "kind": "marker",
                "seriesId": "price",
                "points": [{"time": times[at]}],
                "style": {"position": "aboveBar", "shape": "arrowDown", "color": "#ef5350"},
                "text": f"signal {i}",
            }
        else:
            end = at + rng.randrange(1, 60)
            body = {
                "kind": "trend_line",
                "points": [{"time": times[at], "price": 100.0}, {"time": times[end], "price": 101}],
                "style": {"color": "#2962ff", "lineWidth": 2},
            }
        bodies.append(orjson.dumps(body))
    return bodies


def draw(server: Server, bodies: list[bytes]) -> float:
    """POST every annotation on one keep-alive connection; seconds taken."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    started = time.perf_counter()
    try:
        for body in bodies:
            conn.request(
                "POST",
                f"/api/charts/{CHART}/annotations",
                body=body,
                headers={"Content-Type": "application/json"},
            )
            response = conn.getresponse()
            data = response.read()
            if response.status != 201:
                raise BenchError(f"annotation refused ({response.status}): {data[:300]!r}")
    finally:
        conn.close()
    return time.perf_counter() - started


def measure(
    server: Server, windows: list[int], warmup: int
) -> tuple[list[float], list[float], float]:
    """Alternate listing and history requests for each window's end; seconds per request for
    each, and the mean number of annotations listed."""
    client = KeepAlive(server.port)
    listing: list[float] = []
    history: list[float] = []
    found = 0
    try:
        for i, end in enumerate(windows[:warmup] + windows):
            start = end - CHUNK * BAR
            paths = [
                f"/api/charts/{CHART}/annotations?from={start}&to={end}",
                f"/api/charts/{CHART}/history/0/price?before_time={end}&count={CHUNK}",
            ]
            sinks = [listing, history]
            if i % 2:
                paths.reverse()
                sinks.reverse()
            for path, sink in zip(paths, sinks, strict=True):
                status, data, seconds = client.get(path)
                if status != 200:
                    raise BenchError(f"{path} answered {status}: {data[:300]!r}")
                if i >= warmup:
                    sink.append(seconds)
                    if "annotations?" in path:
                        found += len(orjson.loads(data)["annotations"])
    finally:
        client.close()
    return listing, history, found / max(len(windows), 1)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=100_000)
    parser.add_argument("--annotations", type=int, default=10_000)
    parser.add_argument("--backends", default="memory,sqlite,postgresql")
    parser.add_argument("--latency-requests", type=int, default=600)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)

    figures: dict[str, float] = {}
    with section("bench_annotations: visible-range listing vs 500-point history chunk"):
        ok, why = product_available()
        if not ok:
            raise BenchError(f"the product does not import yet: {why}")
        plan = cpu_plan(not args.no_pin)
        pin_self(plan)
        candles = generate_candles(args.candles)
        times = [c["time"] for c in candles]
        body = replace_body(candles)
        drawings = annotation_bodies(times, args.annotations)
        rng = random.Random(5)
        windows = [times[rng.randrange(CHUNK, len(times))] for _ in range(args.latency_requests)]
        log(
            f"{args.candles:,} candles, {args.annotations:,} annotations, windows of {CHUNK} "
            f"bars; {plan.description}"
        )
        for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
            backend = None if name == "memory" else Backend(name)
            try:
                env = {}
                if backend is not None:
                    env = {"ENABLE_PERSISTENCE": "true", "DATABASE_URL": backend.url()}
                server = product_server(plan.server_prefix, env)
                server.start()
                try:
                    create_chart(server.port, CHART)
                    post_series(server.port, CHART, "price", body, len(candles))
                    seconds = draw(server, drawings)
                    listing, history, found = measure(server, windows, warmup=30)
                finally:
                    server.stop()
                ratio = median(listing) / median(history)
                figures[f"{name}_listing_over_history"] = ratio
                figures[f"{name}_listing_median_ms"] = median(listing) * 1000
                figures[f"{name}_history_median_ms"] = median(history) * 1000
                log(
                    f"  {name:<10} {len(drawings) / seconds:,.0f} annotations/s written; "
                    f"listing median {median(listing) * 1000:.3f} ms (p99 "
                    f"{percentile(listing, 99) * 1000:.3f}, {found:.0f} annotations a window) vs "
                    f"history {median(history) * 1000:.3f} ms (p99 "
                    f"{percentile(history, 99) * 1000:.3f}): {ratio:.2f}x "
                    f"(target <= {TARGET:g}x) {verdict(ratio, TARGET, False)}"
                )
            finally:
                if backend is not None:
                    backend.close()
    return figures


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        log(f"bench_annotations FAILED: {exc}")
        sys.exit(1)

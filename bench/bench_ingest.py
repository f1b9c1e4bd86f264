"""Bulk ingest over REST: one POST of 1,000,000 candles, product vs naive reference.

Each server is started fresh, warmed up with a 10k-candle POST to another series, then receives
``POST /api/charts/ingest/data/candles`` with the 1M-candle body (built with orjson beforehand).
The figure is candles / wall time of that request seen from the client (send start to last
response byte). The ceiling app receiving and discarding the same bytes gives the transport floor.
Target (DESIGN.md section 8): >= 500,000 candles/s for the product in memory mode.

Run: ``python -m bench.bench_ingest [--candles 1000000 --repeat 1]``
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    CEILING_APP,
    BenchError,
    ForeignCpu,
    PeakRss,
    Server,
    client_pinned,
    cpu_plan,
    create_chart,
    expect,
    generate_candles,
    http_request,
    log,
    median,
    mib,
    naive_server,
    post_series,
    product_available,
    product_server,
    replace_body,
    section,
    verdict,
    wait_quiet,
)

CHART = "ingest"
SERIES = "candles"
TARGET_CANDLES_PER_S = 500_000.0


def measure(server: Server, body: bytes, candles: int, repeat: int, floor: bool = False) -> float:
    """Median wall seconds of ``repeat`` 1M POSTs (each replaces the series) on a fresh server."""
    server.start()
    try:
        path = f"/api/charts/{CHART}/data/{SERIES}"
        times: list[float] = []
        if floor:
            for _ in range(repeat + 1):
                resp = expect(http_request(server.port, "POST", path, body), 200, "ceiling")
                times.append(resp.seconds)
            times = times[1:]
            peak_rss = 0
        else:
            create_chart(server.port, CHART)
            warm = replace_body(generate_candles(10_000))
            post_series(server.port, CHART, "warmup", warm, 10_000)
            with PeakRss(server.pid) as peak, ForeignCpu(server.pid) as foreign:
                for _ in range(repeat):
                    times.append(post_series(server.port, CHART, SERIES, body, candles).seconds)
            peak_rss = peak.peak
            if foreign.cores > 0.15:
                log(f"  !! other processes used {foreign.cores:.2f} core during the POST")
        seconds = median(times)
        runs = ", ".join(f"{t:.3f}s" for t in times)
        rate = candles / seconds
        extra = f", peak RSS {mib(peak_rss)}" if peak_rss else ""
        log(f"  {server.name:<8} {rate:>12,.0f} candles/s   (wall {runs}{extra})")
        return rate
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="1M POSTs per server (median)")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--no-naive", action="store_true")
    args = parser.parse_args(argv)

    figures: dict[str, float] = {}
    with section("bench_ingest: bulk POST of candles"), contextlib.ExitStack() as stack:
        ok, why = product_available()
        if not ok:
            raise BenchError(f"the product does not import yet: {why}")
        plan = cpu_plan(not args.no_pin)
        stack.enter_context(client_pinned(plan))
        wait_quiet()
        body = replace_body(generate_candles(args.candles))
        log(
            f"{args.candles:,} candles, {len(body) / 1e6:.1f} MB JSON body, wall time from the "
            f"client; {plan.description}"
        )
        figures["floor_candles_per_s"] = measure(
            Server("ceiling", CEILING_APP, prefix=plan.server_prefix),
            body,
            args.candles,
            args.repeat,
            floor=True,
        )
        product = measure(product_server(plan.server_prefix), body, args.candles, args.repeat)
        figures["product_candles_per_s"] = product
        if not args.no_naive:
            naive = measure(naive_server(plan.server_prefix), body, args.candles, args.repeat)
            figures["naive_candles_per_s"] = naive
            figures["product_over_naive"] = product / naive

        log("\nsummary (ingest):")
        log(
            f"  product candles/s          = {product:,.0f}  (target >= "
            f"{TARGET_CANDLES_PER_S:,.0f}) {verdict(product, TARGET_CANDLES_PER_S, True)}"
        )
        if "product_over_naive" in figures:
            log(f"  naive candles/s            = {figures['naive_candles_per_s']:,.0f}")
            log(f"  product/naive              = {figures['product_over_naive']:.2f}x")
        floor = figures["floor_candles_per_s"]
        log(
            f"  transport floor (ceiling)  = {floor:,.0f} candles/s; product/floor = "
            f"{product / floor:.3f}"
        )
    return figures


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        log(f"bench_ingest FAILED: {exc}")
        sys.exit(1)

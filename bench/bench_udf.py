"""UDF history throughput (wrk) against the REST resolution chunk, same server, same run.

One uvicorn process (the development app) holds 1,000,000 one-minute candles whose market has a
symbol. wrk alternates between two URL sets over the same five points in time:

- rest: ``GET /api/charts/bench/history/0/candles?resolution=60&count=300&before_time=T``;
- udf:  ``GET /udf/history?symbol=bench~0~candles&resolution=60&from=F&to=T&countback=300``,
  the request the Charting Library's UDF adapter sends for 300 hourly bars.

Both answer the same 300 hourly bars (checked before measuring). Target (issue 16): UDF req/s
>= 0.5 x REST req/s, the median of the per-round ratios.

Run: ``python -m bench.bench_udf [--duration 8 --rounds 3 --connections 50]``
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BenchError,
    Repeats,
    Server,
    WrkResult,
    client_pinned,
    cpu_plan,
    create_chart,
    ensure_wrk,
    expect,
    generate_candles,
    http_request,
    log,
    median,
    post_series,
    product_available,
    product_server,
    ratio,
    reset_quiet_budget,
    run_wrk,
    section,
    verdict,
    wait_quiet,
)

CHART = "bench"
SERIES = "candles"
TICKER = f"{CHART}~0~{SERIES}"
BARS = 300
RESOLUTION = "60"
TARGET = 0.5


def rest_path(before_time: int) -> str:
    return (
        f"/api/charts/{CHART}/history/0/{SERIES}?resolution={RESOLUTION}&count={BARS}"
        f"&before_time={before_time}"
    )


def udf_path(to: int) -> str:
    start = to - BARS * 3600
    return (
        f"/udf/history?symbol={TICKER}&resolution={RESOLUTION}&from={start}&to={to}"
        f"&countback={BARS}"
    )


def same_bars(rest: dict[str, Any], udf: dict[str, Any]) -> list[str]:
    """Problems if the UDF arrays are not the REST chunk's bars."""
    bars = rest.get("data") or []
    if udf.get("s") != "ok":
        return [f"udf answered {udf!r:.200}"]
    problems = []
    if len(bars) != BARS or len(udf["t"]) != BARS:
        problems.append(f"{len(bars)} REST bars, {len(udf['t'])} UDF bars; expected {BARS}")
    columns = {"t": "time", "o": "open", "h": "high", "l": "low", "c": "close"}
    for key, field in columns.items():
        if [bar.get(field) for bar in bars] != udf.get(key):
            problems.append(f"UDF {key} differs from the REST bars' {field}")
    return problems


def wrk_line(name: str, res: WrkResult) -> str:
    extra = f"  [other processes: {res.foreign_cpu:.2f} core]" if res.foreign_cpu > 0.05 else ""
    if res.non_2xx or res.socket_errors:
        extra += f"  !! non-2xx={res.non_2xx} socket_errors={res.socket_errors}"
    return (
        f"  {name:<5} {res.rps:>10,.0f} req/s   p50 {res.p50_ms:7.2f}  p99 {res.p99_ms:8.2f} ms  "
        f"server CPU {res.server_us_per_request:8.1f} us/req  ({res.requests} req){extra}"
    )


def run_wrk_checked(
    server: Server, paths: list[str], duration: float, connections: int, prefix: Any
) -> WrkResult:
    res = run_wrk(server.port, paths, duration, connections, prefix=prefix, server_pid=server.pid)
    if server.proc is not None and server.proc.poll() is not None:
        raise BenchError(f"{server.name} died during wrk: {server.log_tail()}")
    if res.requests and res.non_2xx > res.requests * 0.01:
        raise BenchError(f"{server.name}: {res.non_2xx} of {res.requests} responses not 2xx")
    return res


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating wrk rounds")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--max-repeats", type=int, default=2, help="rounds redone when other processes interfere"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    args = parser.parse_args(argv)

    figures: dict[str, float] = {}
    with (
        section("bench_udf: UDF history vs the REST resolution chunk"),
        contextlib.ExitStack() as stack,
    ):
        ensure_wrk()
        ok, why = product_available()
        if not ok:
            raise BenchError(f"the product does not import yet: {why}")
        plan = cpu_plan(not args.no_pin)
        stack.enter_context(client_pinned(plan))
        reset_quiet_budget(90)
        wait_quiet()
        log(f"CPU placement: {plan.description}")

        n = args.candles
        candles = generate_candles(n)
        body = orjson.dumps(
            {
                "paneId": 0,
                "seriesType": "candlestick",
                "data": list(candles),
                "market": {"symbol": "BENCH", "exchange": "BENCHX"},
            }
        )
        # Five bar times spread over the series, each a whole hour after 300 hours of data.
        hours = [candles[int(n * f)]["time"] // 3600 * 3600 for f in (0.1, 0.3, 0.5, 0.7, 0.9)]
        rest_paths = [rest_path(t) for t in hours]
        udf_paths = [udf_path(t) for t in hours]

        product = product_server(plan.server_prefix).start()
        stack.callback(product.stop)
        create_chart(product.port, CHART)
        started = time.perf_counter()
        post_series(product.port, CHART, SERIES, body, n)
        log(f"data: {n:,} one-minute candles posted in {time.perf_counter() - started:.1f}s")

        problems: list[str] = []
        for rest, udf in zip(rest_paths, udf_paths, strict=True):
            started = time.perf_counter()
            a = expect(http_request(product.port, "GET", rest), 200, rest).json()
            first = time.perf_counter() - started
            b = expect(http_request(product.port, "GET", udf), 200, udf).json()
            problems += [f"{udf}: {p}" for p in same_bars(a, b)]
        log(f"first REST request (bars built for the whole series): {first * 1000:.0f} ms")
        size = len(http_request(product.port, "GET", udf_paths[0]).body)
        log(
            f"UDF answer {size:,} bytes; REST chunk "
            f"{len(http_request(product.port, 'GET', rest_paths[0]).body):,} bytes"
        )
        for problem in problems:
            log(f"  ! {problem}")
        if problems:
            raise BenchError("UDF and REST disagree on the bars")
        log("responses: UDF arrays equal the REST chunk's bars")

        log(
            f"\nwrk: 1 thread, {args.connections} connections, {args.duration:.0f}s per run, "
            f"{len(hours)} URLs cycled, {args.rounds} alternating rounds"
        )
        targets = [("rest", rest_paths), ("udf", udf_paths)]
        for _name, paths in targets:  # warm-up, not reported
            run_wrk_checked(product, paths, 2, args.connections, plan.client_prefix)
        results: dict[str, list[WrkResult]] = {name: [] for name, _ in targets}
        round_ratios: list[float] = []
        repeats = Repeats(args.max_repeats)
        done = 0
        while done < args.rounds:
            log(f" round {done + 1}")
            this_round: dict[str, WrkResult] = {}
            order = targets if done % 2 == 0 else targets[::-1]
            for name, paths in order:
                res = run_wrk_checked(
                    product, paths, args.duration, args.connections, plan.client_prefix
                )
                this_round[name] = res
                log(wrk_line(name, res))
            if repeats.repeat({name: res.foreign_cpu for name, res in this_round.items()}):
                continue
            for name, res in this_round.items():
                results[name].append(res)
            round_ratios.append(ratio(this_round["udf"].rps, this_round["rest"].rps))
            done += 1

        for name in ("rest", "udf"):
            figures[f"{name}_rps"] = median([r.rps for r in results[name]])
            figures[f"{name}_us_per_request"] = median(
                [r.server_us_per_request for r in results[name]]
            )
        figures["udf_over_rest"] = median(round_ratios)
        figures["udf_over_rest_cpu"] = ratio(
            figures["rest_us_per_request"], figures["udf_us_per_request"]
        )
        figures["disturbed_rounds"] = float(repeats.kept)

        log("\nsummary (udf):")
        log("  udf/rest per round: " + ", ".join(f"{x:.3f}" for x in round_ratios))
        value = figures["udf_over_rest"]
        log(
            f"  UDF history / REST resolution chunk req/s = {value:.3f}  (target >= {TARGET}) "
            f"{verdict(value, TARGET, True)}"
        )
        log(
            f"  by server CPU per request = {figures['udf_over_rest_cpu']:.3f}  (REST "
            f"{figures['rest_us_per_request']:.1f} us / UDF {figures['udf_us_per_request']:.1f} us)"
        )
    return figures


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        log(f"bench_udf FAILED: {exc}")
        sys.exit(1)

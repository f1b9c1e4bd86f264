"""Timeframes: bars at other resolutions, warm and cold, live, and range views (issue 15).

One product process (``create_app --factory``, pinned to the server CPU) with 1,000,000 one-minute
candles; the clients run in this process (pinned to the client CPU). Four figures, each a ratio
measured in this run:

- warm chunks: wrk req/s of 500-bar history chunks at ``60`` over raw 500-candle chunks of the
  same series (alternating rounds, median of per-round ratios); target >= 0.5;
- cold bars: the first request at ``60`` and at ``1D`` after the series was written (nothing
  cached: the server parses the stored points, buckets and aggregates), against pandas
  ``resample`` with the same alignment on the same data, timed here. pandas is timed two ways: from
  the points' JSON, as the server holds them (``orjson.loads`` + DataFrame + resample), and from a
  DataFrame already in memory (resample alone). Both for a 24x7 UTC series and for New York
  sessions (``0930-1600:23456``). Target: pandas / server >= 2;
- live: 1,000 sockets subscribed at ``60``; for single PATCHed candles, the p99 over the sockets
  of the aggregated ``data_update`` against the p99 of the raw ``data_update`` of the same
  updates (median over updates); target <= 1.5;
- range: ``/range`` over 1,000,000 line points with ``max_points=2000`` against a raw 2,000-point
  history chunk of the same series, sequential keep-alive latency (medians; the first, cold range
  request reported apart); target <= 10.

Run: ``python -m bench.bench_resolutions [--candles 1000000 --duration 5 --rounds 3]``;
``--parts cold`` (or any of ``warm,cold,range,live``) runs only those parts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BenchError,
    KeepAlive,
    Repeats,
    Server,
    client_pinned,
    cpu_plan,
    create_chart,
    ensure_wrk,
    expect,
    generate_candles,
    http_request,
    log,
    median,
    percentile,
    post_series,
    product_available,
    product_server,
    ratio,
    reset_quiet_budget,
    section,
    verdict,
    wait_quiet,
)
from bench.bench_fanout import (
    FANOUT_ENV,
    FrameCounter,
    HttpConnection,
    Tracker,
    close_clients,
    open_clients,
    raise_fd_limit,
)
from bench.bench_history import run_wrk_checked, wrk_line

CHART = "tf"
CHUNK = 500
WARM_TARGET = 0.5
COLD_TARGET = 2.0
LIVE_TARGET = 1.5
RANGE_TARGET = 10.0
PARTS = ("warm", "cold", "range", "live")
MARKETS: dict[str, dict[str, str] | None] = {
    "24x7 UTC": None,
    "New York": {"timezone": "America/New_York", "session": "0930-1600:23456"},
}


def series_body(data: bytes, series_type: str, market: dict[str, str] | None) -> bytes:
    """A replace body around the points' JSON array (encoded once for every POST)."""
    head: dict[str, Any] = {"paneId": 0, "seriesType": series_type}
    if market is not None:
        head["market"] = market
    return orjson.dumps(head)[:-1] + b',"data":' + data + b"}"


def history_path(series: str, before_time: int, count: int, resolution: str | None) -> str:
    path = f"/api/charts/{CHART}/history/0/{series}?before_time={before_time}&count={count}"
    return path if resolution is None else f"{path}&resolution={resolution}"


# ------------------------------------------------------------------------------------ pandas


def pandas_frame(data: bytes) -> Any:
    import pandas as pd

    frame = pd.DataFrame(orjson.loads(data))
    return frame.set_index(pd.to_datetime(frame.pop("time"), unit="s", utc=True))


def pandas_bars(frame: Any, resolution: str, market: dict[str, str] | None) -> Any:
    """What a pandas user writes for the server's alignment: sessions in local time, bars from
    the session start, daily bars labelled with the trading day."""
    how = {"open": "first", "high": "max", "low": "min", "close": "last"}
    if market is not None:
        frame = frame.tz_convert(market["timezone"])
        frame = frame[frame.index.day_of_week < 5].between_time("09:30", "16:00", inclusive="left")
    if resolution == "60":
        offset = "30min" if market is not None else None
        bars = frame.resample("60min", offset=offset).agg(how).dropna()
        return bars.tz_convert("UTC")
    bars = frame.resample("1D").agg(how).dropna()
    return bars.tz_localize(None) if market is None else bars.tz_localize(None).tz_localize("UTC")


def pandas_times(bars: Any) -> list[int]:
    return [int(t.timestamp()) for t in bars.index]


def server_cpu(server: Server) -> float:
    times = psutil.Process(server.pid).cpu_times()
    return float(times.user + times.system)


def wait_idle(server: Server, timeout: float = 30.0) -> None:
    """Wait until the server process stops using CPU (the previous request's cleanup is done)."""
    deadline = time.monotonic() + timeout
    before = server_cpu(server)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = server_cpu(server)
        if now - before < 0.01:
            return
        before = now


def cold_round(
    server: Server, data: bytes, n: int, market: dict[str, str] | None, resolution: str
) -> tuple[float, float, dict[str, Any]]:
    """Write the series (dropping its cached bars), then time the first request for its bars:
    wall seconds, and CPU seconds the server spent on it (robust to other processes)."""
    body = series_body(data, "candlestick", market)
    post_series(server.port, CHART, "cold", body, n)
    wait_idle(server)
    path = f"/api/charts/{CHART}/history/0/cold?count={CHUNK}&resolution={resolution}"
    cpu = server_cpu(server)
    started = time.perf_counter()
    resp = expect(http_request(server.port, "GET", path, timeout=120), 200, path)
    wall = time.perf_counter() - started
    return wall, server_cpu(server) - cpu, resp.json()


def measure_cold(
    server: Server, data: bytes, n: int, rounds: int, figures: dict[str, float]
) -> list[str]:
    problems = []
    log("\ncold bars: first request after a write vs pandas resample, same alignment")
    frame_started = time.perf_counter()
    frame = pandas_frame(data)
    frame_seconds = time.perf_counter() - frame_started
    for name, market in MARKETS.items():
        for resolution in ("60", "1D"):
            served: list[float] = []
            served_cpu: list[float] = []
            from_json: list[float] = []
            from_json_cpu: list[float] = []
            in_memory: list[float] = []
            for _ in range(rounds):
                wait_quiet()
                seconds, cpu, doc = cold_round(server, data, n, market, resolution)
                served.append(seconds)
                served_cpu.append(cpu)
                started, cpu_started = time.perf_counter(), time.process_time()
                bars = pandas_bars(pandas_frame(data), resolution, market)
                from_json.append(time.perf_counter() - started)
                from_json_cpu.append(time.process_time() - cpu_started)
                started = time.perf_counter()
                bars = pandas_bars(frame, resolution, market)
                in_memory.append(time.perf_counter() - started)
            got = [(b["time"], b["close"]) for b in doc["data"]]
            want = list(zip(pandas_times(bars), bars["close"].tolist(), strict=True))[-CHUNK:]
            if got != want or doc["totalCount"] != len(bars):
                problems.append(f"{name} {resolution}: the server's bars differ from pandas'")
            key = f"{'ny' if market else 'utc'}_{resolution}"
            figures[f"cold_{key}_server_s"] = median(served)
            figures[f"cold_{key}_pandas_json_s"] = median(from_json)
            figures[f"cold_{key}_pandas_frame_s"] = median(in_memory)
            figures[f"cold_{key}_pandas_json_over_server"] = ratio(
                median(from_json), median(served)
            )
            figures[f"cold_{key}_pandas_frame_over_server"] = ratio(
                median(in_memory), median(served)
            )
            figures[f"cold_{key}_pandas_json_over_server_cpu"] = ratio(
                median(from_json_cpu), median(served_cpu)
            )
            log(
                f"  {name:<9} {resolution:>3}: server {median(served) * 1e3:7.1f} ms "
                f"({median(served_cpu) * 1e3:6.1f} ms CPU) | pandas from JSON "
                f"{median(from_json) * 1e3:7.1f} ms ({median(from_json_cpu) * 1e3:6.1f} ms CPU) | "
                f"pandas resample of a DataFrame {median(in_memory) * 1e3:6.1f} ms  "
                f"({doc['totalCount']:,} bars)"
            )
    log(f"  (pandas: building the DataFrame from the JSON alone took {frame_seconds:.2f} s)")
    return problems


# ------------------------------------------------------------------------------------ warm


def measure_warm(
    server: Server,
    candles: tuple[dict[str, Any], ...],
    args: argparse.Namespace,
    prefix: Any,
    figures: dict[str, float],
) -> None:
    n = len(candles)
    positions = [int(n * f) for f in (0.1, 0.3, 0.5, 0.7, 0.9)]
    raw = [history_path("utc", candles[i]["time"], CHUNK, None) for i in positions]
    bars = [history_path("utc", candles[i]["time"], CHUNK, "60") for i in positions]
    for path in bars:  # builds the bars once; every later request is warm
        doc = expect(http_request(server.port, "GET", path, timeout=120), 200, path).json()
        if not doc["data"] or doc["resolution"] != "60":
            raise BenchError(f"{path}: expected bars at 60, got {str(doc)[:200]}")
    log(
        f"\nwarm chunks: wrk, {args.connections} connections, {args.duration:.0f}s per run, "
        f"{args.rounds} alternating rounds"
    )
    for paths in (raw, bars):  # warm-up
        run_wrk_checked(server, paths, 2, args.connections, prefix)
    ratios: list[float] = []
    repeats = Repeats(args.max_repeats)
    while len(ratios) < args.rounds:
        runs = {}
        for name, paths in (("raw", raw), ("at 60", bars)):
            runs[name] = run_wrk_checked(server, paths, args.duration, args.connections, prefix)
            log(wrk_line(name, runs[name]))
        if repeats.repeat({name: run.foreign_cpu for name, run in runs.items()}):
            continue
        ratios.append(ratio(runs["at 60"].rps, runs["raw"].rps))
    figures["warm_bars_over_raw"] = median(ratios)
    log("  bars/raw per round: " + ", ".join(f"{r:.3f}" for r in ratios))


# ------------------------------------------------------------------------------------ range


def measure_range(
    server: Server, data: bytes, n: int, requests: int, figures: dict[str, float]
) -> list[str]:
    problems = []
    closes = orjson.loads(data)
    line = orjson.dumps([{"time": c["time"], "value": c["close"]} for c in closes])
    post_series(server.port, CHART, "line", series_body(line, "line", None), n)
    range_path = f"/api/charts/{CHART}/range/0/line?max_points=2000"
    raw_path = f"/api/charts/{CHART}/history/0/line?count=2000"
    started = time.perf_counter()
    doc = expect(http_request(server.port, "GET", range_path, timeout=120), 200, range_path).json()
    cold = time.perf_counter() - started
    values = [c["close"] for c in closes]
    picked = [p["value"] for p in doc["data"]]
    if not doc["downsampled"] or len(picked) > 2000 or {min(values), max(values)} - set(picked):
        problems.append("range: not downsampled to <= 2000 points with the extremes")
    client = KeepAlive(server.port)
    ranges: list[float] = []
    raws: list[float] = []
    try:
        for i in range(requests):
            order = ((range_path, ranges), (raw_path, raws))
            for path, sink in order if i % 2 else order[::-1]:
                status, _, seconds = client.get(path)
                if status != 200:
                    raise BenchError(f"{path} answered {status}")
                sink.append(seconds)
    finally:
        client.close()
    figures["range_cold_ms"] = cold * 1e3
    figures["range_ms"] = median(ranges) * 1e3
    figures["range_raw_chunk_ms"] = median(raws) * 1e3
    figures["range_over_raw_chunk"] = ratio(median(ranges), median(raws))
    log(
        f"\nrange over {n:,} line points, max_points=2000 ({len(picked)} returned): first "
        f"(cold) {cold * 1e3:.1f} ms; then median {median(ranges) * 1e3:.2f} ms "
        f"(p99 {percentile(ranges, 99) * 1e3:.2f}) vs raw 2,000-point chunk "
        f"{median(raws) * 1e3:.2f} ms (p99 {percentile(raws, 99) * 1e3:.2f}), {requests} each"
    )
    return problems


# ------------------------------------------------------------------------------------ live


async def measure_live(
    port: int, sockets: int, trials: int, base_time: int, figures: dict[str, float]
) -> None:
    tracker = Tracker()
    clients = await open_clients(port, f"/ws/charts/{CHART}", sockets, tracker)
    try:
        await _wait_frames(clients, tracker, 1)  # connected
        tracker.arm(clients, 1)
        subscribe = orjson.dumps({"type": "subscribe", "seriesId": "utc", "resolution": "60"})
        for client in clients:
            client.send_text(subscribe.decode())
        await asyncio.wait_for(tracker.done.wait(), 60)
        conn = HttpConnection(port)
        raw_p99: list[float] = []
        bar_p99: list[float] = []
        next_time = base_time
        for trial in range(2 * trials + 4):
            candle = dict(generate_candles(1)[0], time=next_time)
            next_time += 60
            frames = 1 if trial % 2 else 2  # the raw update, or the bars after it
            before = sum(c.frames for c in clients)
            tracker.arm(clients, frames)
            started = time.perf_counter()
            status, body = await conn.request(
                "PATCH", f"/api/charts/{CHART}/data/utc", orjson.dumps({"data": [candle]})
            )
            if status != 200:
                raise BenchError(f"PATCH answered {status}: {body[:200]!r}")
            await asyncio.wait_for(tracker.done.wait(), 60)
            p99 = percentile([(c.reached_at - started) * 1000 for c in clients], 99)
            if trial >= 4:  # the first ones warm up
                (raw_p99 if frames == 1 else bar_p99).append(p99)
            # let the bars of a raw-timed update arrive before the next update
            deadline = time.monotonic() + 60
            while sum(c.frames for c in clients) < before + 2 * len(clients):
                if time.monotonic() > deadline:
                    raise BenchError("the bars of an update did not reach every socket")
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.02)
        conn.close()
        last = clients[0].last
        if b'"resolution":"60"' not in last:
            raise BenchError(f"the last frame is not an update at 60: {last[:200]!r}")
    finally:
        close_clients(clients)
    figures["live_raw_p99_ms"] = median(raw_p99)
    figures["live_bars_p99_ms"] = median(bar_p99)
    figures["live_bars_over_raw"] = ratio(median(bar_p99), median(raw_p99))
    log(
        f"\nlive: {sockets:,} sockets subscribed at 60, {trials} updates each way: p99 over the "
        f"sockets, median over updates: raw data_update {median(raw_p99):.2f} ms, "
        f"bars {median(bar_p99):.2f} ms (worst {max(raw_p99):.2f} / {max(bar_p99):.2f} ms)"
    )


async def _wait_frames(clients: list[FrameCounter], tracker: Tracker, frames: int) -> None:
    deadline = time.monotonic() + 30
    while any(c.frames < frames for c in clients):
        if time.monotonic() > deadline:
            raise BenchError("sockets did not receive their first frame")
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (wrk, cold)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--max-repeats", type=int, default=2)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=20, help="live updates timed each way")
    parser.add_argument("--range-requests", type=int, default=200)
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--parts",
        type=_parts,
        default=PARTS,
        help=f"comma-separated parts to run, of {','.join(PARTS)} (default: all)",
    )
    args = parser.parse_args(argv)
    parts = args.parts

    figures: dict[str, float] = {}
    problems: list[str] = []
    with section("bench_resolutions: timeframes"), contextlib.ExitStack() as stack:
        ensure_wrk()
        ok, why = product_available()
        if not ok:
            raise BenchError(f"the product does not import yet: {why}")
        raise_fd_limit(args.sockets + 200)
        plan = cpu_plan(not args.no_pin)
        stack.enter_context(client_pinned(plan))
        reset_quiet_budget(90)
        wait_quiet()
        log(f"CPU placement: {plan.description}")
        n = args.candles
        candles = generate_candles(n)
        data = orjson.dumps(list(candles))
        log(f"data: {n:,} one-minute candles ({len(data) / 1e6:.1f} MB JSON)")
        server = product_server(plan.server_prefix, extra_env=FANOUT_ENV).start()
        try:
            create_chart(server.port, CHART)
            post_series(server.port, CHART, "utc", series_body(data, "candlestick", None), n)
            if "warm" in parts:
                measure_warm(server, candles, args, plan.client_prefix, figures)
            if "cold" in parts:
                problems += measure_cold(server, data, n, args.rounds, figures)
            if "range" in parts:
                problems += measure_range(server, data, n, args.range_requests, figures)
            if "live" in parts:
                asyncio.run(
                    measure_live(
                        server.port, args.sockets, args.trials, candles[-1]["time"] + 60, figures
                    )
                )
        finally:
            server.stop()

        for problem in problems:
            log(f"  ! {problem}")
        figures["problems"] = float(len(problems))
        log("\nsummary (resolutions):")
        if "warm" in parts:
            warm = figures["warm_bars_over_raw"]
            log(
                f"  warm 500-bar chunks at 60 / raw 500-candle chunks, req/s = {warm:.3f}  "
                f"(target >= {WARM_TARGET}) {verdict(warm, WARM_TARGET, True)}"
            )
        for market, name in (("utc", "24x7 UTC"), ("ny", "New York")) if "cold" in parts else ():
            for resolution in ("60", "1D"):
                key = f"cold_{market}_{resolution}"
                json_ratio = figures[f"{key}_pandas_json_over_server"]
                cpu_ratio = figures[f"{key}_pandas_json_over_server_cpu"]
                frame_ratio = figures[f"{key}_pandas_frame_over_server"]
                log(
                    f"  cold {resolution:>3} {name:<9}: pandas from JSON / server = "
                    f"{json_ratio:5.2f} wall, {cpu_ratio:5.2f} CPU  (target >= {COLD_TARGET}) "
                    f"{verdict(json_ratio, COLD_TARGET, True)}; pandas resample of a DataFrame "
                    f"/ server = {frame_ratio:.3f}"
                )
        if "live" in parts:
            live = figures["live_bars_over_raw"]
            log(
                f"  live p99 bars / raw data_update = {live:.3f}  (target <= {LIVE_TARGET}) "
                f"{verdict(live, LIVE_TARGET, False)}"
            )
        if "range" in parts:
            rng = figures["range_over_raw_chunk"]
            log(
                f"  range max_points=2000 / raw 2,000-point chunk latency = {rng:.2f}  "
                f"(target <= {RANGE_TARGET}) {verdict(rng, RANGE_TARGET, False)}; cold first "
                f"range {figures['range_cold_ms']:.0f} ms"
            )
    return figures


def _parts(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = set(chosen) - set(PARTS)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"parts are {', '.join(PARTS)}; got {', '.join(sorted(unknown)) or 'none'}"
        )
    return chosen


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        log(f"bench_resolutions FAILED: {exc}")
        sys.exit(1)

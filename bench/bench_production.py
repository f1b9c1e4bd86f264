"""Cost of the production features: the production app against the development app (wrk).

Two uvicorn processes, each a single worker on its own loopback port, the same series loaded in
both, the same 500-candle history chunks requested from both in alternating wrk runs:

- development: ``lightweight_charts_pro_backend.app:create_app`` (request ids and the error
  envelope; no access log, no metrics, rate limiting off);
- production: ``lightweight_charts_pro_backend.app_production:create_app`` with JSON logs at INFO
  (one access line per request, written to a file as a deployment ships them), Prometheus
  metrics, request ids, and ``ENABLE_RATE_LIMITING=true`` with limits high enough never to
  refuse wrk, so the limiter's cost is measured as soon as the service enforces limits.

A third process serves the development app as it runs by default, with uvicorn's own access
line per request (``--no-access-log`` left out): the production app's batched JSON access lines
against the line a development setup writes, reported beside the target, not instead of it. A
fourth serves the production app with ``RATE_LIMIT_HEADERS=true`` (the three ``X-RateLimit-*``
headers on every limited response, not only on refusals), also reported beside the target.

Target (issue 6): production req/s >= 0.85 x development req/s, same run. The figure is the
median over rounds of each round's ratio (the two runs of a round are back to back, so slow
drifts in machine load cancel); the server CPU time per request is reported beside it, a
measure of the same cost that other processes on the machine disturb much less.

Run: ``python -m bench.bench_production [--duration 4 --rounds 5 --connections 50]``
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client.parser import text_string_to_metric_families

from bench._common import (
    PRODUCT_ENV,
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
    ratio,
    replace_body,
    run_wrk,
    section,
    verdict,
    wait_quiet,
)

DEVELOPMENT_APP = "lightweight_charts_pro_backend.app:create_app"
PRODUCTION_APP = "lightweight_charts_pro_backend.app_production:create_app"
CHART = "bench"
SERIES = "candles"
CHUNK = 500
HISTORY_ROUTE = "/api/charts/{chart_id}/history/{pane_id}/{series_id}"
DEFAULT_LOGGING = "development-access-log"
LIMIT_HEADERS = "production-limit-headers"
TARGET = 0.85
# Settings caps both limits at 1,000,000 per minute (16,667/s): above what one process serves
# here, so an enforcing limiter costs its bookkeeping but refuses nothing.
HIGHEST_LIMIT = "1000000"

DEVELOPMENT_ENV = {**PRODUCT_ENV, "LOG_LEVEL": "INFO"}
PRODUCTION_ENV = {
    **PRODUCT_ENV,
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "ENABLE_METRICS": "true",
    "ENABLE_RATE_LIMITING": "true",
    "RATE_LIMIT_PER_MINUTE": HIGHEST_LIMIT,
    "RATE_LIMIT_HISTORY_PER_MINUTE": HIGHEST_LIMIT,
}


def history_path(before_time: int) -> str:
    return f"/api/charts/{CHART}/history/0/{SERIES}?before_time={before_time}&count={CHUNK}"


def scraped(port: int, name: str, **labels: str) -> float:
    """The sum of the ``name`` samples with these labels in one scrape of ``/metrics``."""
    scrape = expect(http_request(port, "GET", "/metrics"), 200, "GET /metrics").body.decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def served(server: Server) -> float:
    """History requests the server's metrics counted."""
    return scraped(server.port, "http_requests_total", route=HISTORY_ROUTE)


def access_lines(server: Server) -> int:
    if server.workdir is None:
        return 0
    count = 0
    with open(server.workdir / "server.log", "rb") as fh:
        for line in fh:
            count += b'"lightweight_charts_pro_backend.access"' in line
    return count


def cpu_seconds(server: Server) -> float:
    times = psutil.Process(server.pid).cpu_times()
    return float(times.user + times.system)


def checked_wrk(
    server: Server, paths: list[str], duration: float, connections: int, prefix: tuple[str, ...]
) -> WrkResult:
    res = run_wrk(server.port, paths, duration, connections, prefix=prefix, server_pid=server.pid)
    if server.proc is not None and server.proc.poll() is not None:
        raise BenchError(f"{server.name} died during wrk: {server.log_tail()}")
    if res.non_2xx or res.socket_errors:
        raise BenchError(
            f"{server.name}: {res.non_2xx} non-2xx responses and {res.socket_errors} socket "
            f"errors in {res.requests} requests (a rate limit refusing wrk would show here)"
        )
    return res


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating wrk rounds")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--max-repeats", type=int, default=4, help="re-runs of disturbed rounds")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    args = parser.parse_args(argv)

    figures: dict[str, float] = {}
    with (
        section("bench_production: production features vs development app"),
        contextlib.ExitStack() as stack,
    ):
        ensure_wrk()
        plan = cpu_plan(not args.no_pin)
        stack.enter_context(client_pinned(plan))
        wait_quiet()
        log(f"CPU placement: {plan.description}")
        candles = generate_candles(args.candles)
        body = replace_body(candles)
        idx = [int(args.candles * f) for f in (0.1, 0.3, 0.5, 0.7, 0.9)]
        paths = [history_path(candles[i]["time"]) for i in idx]

        servers: list[Server] = []
        try:
            development = Server(
                "development", DEVELOPMENT_APP, True, DEVELOPMENT_ENV, plan.server_prefix
            ).start()
            servers.append(development)
            production = Server(
                "production", PRODUCTION_APP, True, PRODUCTION_ENV, plan.server_prefix
            ).start()
            servers.append(production)
            logging_development = Server(
                DEFAULT_LOGGING,
                DEVELOPMENT_APP,
                True,
                DEVELOPMENT_ENV,
                plan.server_prefix,
                access_log=True,
            ).start()
            servers.append(logging_development)
            with_headers = Server(
                LIMIT_HEADERS,
                PRODUCTION_APP,
                True,
                {**PRODUCTION_ENV, "RATE_LIMIT_HEADERS": "true"},
                plan.server_prefix,
            ).start()
            servers.append(with_headers)
            for srv in servers:
                create_chart(srv.port, CHART)
                post_series(srv.port, CHART, SERIES, body, args.candles)
            for path in paths:
                dev = expect(http_request(development.port, "GET", path), 200, path)
                prod = expect(http_request(production.port, "GET", path), 200, path)
                other = expect(http_request(logging_development.port, "GET", path), 200, path)
                limited = expect(http_request(with_headers.port, "GET", path), 200, path)
                if not dev.body == prod.body == other.body == limited.body:
                    raise BenchError(f"{path}: the apps answer different bytes")
                if "x-request-id" not in prod.headers:
                    raise BenchError("production answers without X-Request-ID")
            log(
                f"data: {args.candles:,} candles in each; {len(paths)} history URLs of {CHUNK} "
                f"candles ({len(dev.body):,} bytes each), identical bytes from every app"
            )
            clients = scraped(production.port, "rate_limit_clients")
            if clients < 1 or "x-ratelimit-limit" not in limited.headers:
                raise BenchError("the production apps do not count requests against a limit")
            log(
                "production: JSON logs at INFO to a file, access line per request, metrics, "
                f"ENABLE_RATE_LIMITING=true at {int(HIGHEST_LIMIT):,}/min (enforced: "
                f"rate_limit_clients={clients:.0f}); X-RateLimit-* headers on refusals only, "
                f"the default; '{LIMIT_HEADERS}' sends them on every request"
            )
            requests_before = served(production)
            lines_before = access_lines(production)

            log(
                f"\nwrk: 1 thread, {args.connections} connections, {args.duration:.0f}s per run, "
                f"{args.rounds} rounds, order alternating"
            )
            for srv in servers:  # warm-up, not reported
                checked_wrk(srv, paths, 2, args.connections, plan.client_prefix)
            results: dict[str, list[WrkResult]] = {srv.name: [] for srv in servers}
            cpu_us: dict[str, list[float]] = {srv.name: [] for srv in servers}
            round_ratios: list[float] = []
            cpu_ratios: list[float] = []
            default_ratios: list[float] = []
            header_ratios: list[float] = []
            production_requests = 0
            repeats = Repeats(args.max_repeats)
            while len(round_ratios) < args.rounds:
                r = len(round_ratios)
                order = servers if r % 2 == 0 else servers[::-1]
                this_round: dict[str, tuple[WrkResult, float]] = {}
                for srv in order:
                    cpu_before = cpu_seconds(srv)
                    res = checked_wrk(
                        srv, paths, args.duration, args.connections, plan.client_prefix
                    )
                    per_request = (cpu_seconds(srv) - cpu_before) / res.requests * 1e6
                    this_round[srv.name] = (res, per_request)
                    if srv is production:
                        production_requests += res.requests
                if repeats.repeat({n: res.foreign_cpu for n, (res, _) in this_round.items()}):
                    continue
                for name, (res, per_request) in this_round.items():
                    results[name].append(res)
                    cpu_us[name].append(per_request)
                dev_rps = results["development"][-1].rps
                prod_rps = results["production"][-1].rps
                round_ratios.append(ratio(prod_rps, dev_rps))
                cpu_ratios.append(ratio(cpu_us["development"][-1], cpu_us["production"][-1]))
                default_ratios.append(ratio(prod_rps, results[DEFAULT_LOGGING][-1].rps))
                header_ratios.append(ratio(results[LIMIT_HEADERS][-1].rps, dev_rps))
                log(
                    f"  round {r + 1}: development {dev_rps:>7,.0f} req/s "
                    f"{cpu_us['development'][-1]:6.1f} CPU-us/req   production {prod_rps:>7,.0f} "
                    f"req/s {cpu_us['production'][-1]:6.1f} CPU-us/req   ratio "
                    f"{round_ratios[-1]:.3f} (CPU {cpu_ratios[-1]:.3f})"
                )
                log(
                    f"           {LIMIT_HEADERS} {results[LIMIT_HEADERS][-1].rps:>7,.0f} req/s "
                    f"{cpu_us[LIMIT_HEADERS][-1]:6.1f} CPU-us/req   development with uvicorn's "
                    f"access line {results[DEFAULT_LOGGING][-1].rps:>7,.0f} req/s "
                    f"{cpu_us[DEFAULT_LOGGING][-1]:6.1f} CPU-us/req"
                )

            counted = served(production) - requests_before
            deadline = time.monotonic() + 10
            logged = access_lines(production) - lines_before
            while logged < production_requests and time.monotonic() < deadline:
                time.sleep(0.2)
                logged = access_lines(production) - lines_before
            log(
                f"production bookkeeping: wrk completed {production_requests:,} requests; "
                f"metrics counted {counted:,.0f}, access lines written {logged:,}"
            )
            if counted < production_requests or logged < production_requests:
                raise BenchError("production did not log or count every request")
        finally:
            for srv in reversed(servers):
                srv.stop()

        figures["development_rps"] = median([r.rps for r in results["development"]])
        figures["production_rps"] = median([r.rps for r in results["production"]])
        figures["production_over_development"] = median(round_ratios)
        figures["production_over_development_worst_round"] = min(round_ratios)
        figures["production_over_development_cpu"] = median(cpu_ratios)
        figures["production_over_logging_development"] = median(default_ratios)
        figures["production_with_limit_headers_over_development"] = median(header_ratios)
        value = figures["production_over_development"]
        log("\nsummary (production):")
        log(
            f"  req/s production/development = {value:.3f} (median of the rounds' ratios; worst "
            f"round {min(round_ratios):.3f})  target >= {TARGET}  {verdict(value, TARGET, True)}"
        )
        log(
            "  server CPU per request, development/production = "
            f"{figures['production_over_development_cpu']:.3f} (median; the same ratio measured "
            "by CPU time, insensitive to other load on the machine)"
        )
        log(
            f"  req/s production with RATE_LIMIT_HEADERS=true/development = "
            f"{figures['production_with_limit_headers_over_development']:.3f} (median; the three "
            "X-RateLimit-* headers on every response)"
        )
        log(
            "  req/s production/development with uvicorn's access line = "
            f"{figures['production_over_logging_development']:.3f} (median; the development app "
            "as it runs by default, one access line per request)"
        )
    return figures


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        log(f"bench_production FAILED: {exc}")
        sys.exit(1)

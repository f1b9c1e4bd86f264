"""WebSocket fan-out: one chart, 1,000 sockets, product vs a bare `websockets` server vs naive.

Three servers, each one process on its own loopback port, pinned to the server CPU:

- product: ``create_app --factory``; an update is a ``PATCH`` of one candle, sent by this process;
- bare:    ``bench.bare_ws_server`` (`websockets` with ``broadcast``), sending the product's own
           ``data_update`` text, prebuilt, when told so over a control socket;
- naive:   ``bench.naive_app``, whose PATCH awaits ``send_json`` to each socket in turn.

The 1,000 client sockets of each server live in this process (pinned to the client CPU, uvloop),
as minimal raw-socket WebSocket clients: they count text frames and answer protocol pings, so the
clients cost far less per frame than any of the servers. They do not offer permessage-deflate, so
no server compresses (browsers do offer it; see the deployment guide).

Figures, per server, alternated over ``--rounds`` rounds:

- latency: ``--trials`` single updates per round; for each, the time from sending the trigger
  (the PATCH, or the control command) until each socket has the frame, and that update's p99
  over the sockets. Reported: the median over updates (the figure checked), the worst update and
  the p99 of all samples pooled;
- sustained rate: ``--burst`` updates back to back (the product and naive: that many PATCHes
  pipelined on one connection; bare: ``burst`` broadcasts); frames delivered per second until
  every socket has all.
  The product/bare ratio is taken per round and its median reported.

Targets (DESIGN.md section 8): product p99 <= 50 ms; product rate >= 0.5 x bare rate.

Run: ``python -m bench.bench_fanout [--sockets 1000 --rounds 5 --trials 20 --burst 100]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import orjson

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PYTHON,
    ROOT,
    BenchError,
    Server,
    cpu_plan,
    free_port,
    generate_candles,
    log,
    median,
    naive_server,
    percentile,
    pin_self,
    product_available,
    product_server,
    ratio,
    replace_body,
    section,
    upsert_body,
    verdict,
)

CHART = "fanout"
SERIES = "candles"
LATENCY_TARGET_MS = 50.0
RATE_TARGET = 0.5
#: The product pings and reaps idle sockets; the bench clients never send application frames.
FANOUT_ENV = {"WEBSOCKET_PING_INTERVAL_SECONDS": "3600", "WEBSOCKET_TIMEOUT_SECONDS": "7200"}


def raise_fd_limit(needed: int) -> int:
    """Raise the soft open-files limit toward the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < needed:
        raise BenchError(f"need {needed} open files, the limit is {soft} (hard {hard})")
    return soft


# --------------------------------------------------------------------------------------------
# Minimal WebSocket clients


class Tracker:
    """Counts the sockets that still wait for their target frame of the current measurement."""

    def __init__(self) -> None:
        self.pending = 0
        self.done = asyncio.Event()

    def arm(self, clients: list[FrameCounter], frames: int) -> None:
        self.done.clear()
        self.pending = len(clients)
        for client in clients:
            client.target = client.frames + frames
            client.reached_at = 0.0

    def reached(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.done.set()


class FrameCounter(asyncio.Protocol):
    """A WebSocket client that counts text frames (unmasked, from the server) and answers pings."""

    def __init__(self, host: str, path: str, tracker: Tracker, keep_last: bool = False) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n\r\n"
        ).encode()
        self.tracker = tracker
        self.keep_last = keep_last
        self.last: bytes = b""
        self.buf = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.frames = 0
        self.target = -1
        self.reached_at = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = stream
        stream.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed during the handshake: {exc}"))

    def data_received(self, data: bytes) -> None:
        if self.buf:
            self.buf += data
            data = bytes(self.buf)
            self.buf.clear()
        if not self.upgraded.done():
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf += data
                return
            status = data[:end].split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                self.upgraded.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            data = data[end + 4 :]
            self.upgraded.set_result(None)
        pos = 0
        size = len(data)
        while size - pos >= 2:
            opcode = data[pos] & 0x0F
            length = data[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = 10
            end = pos + head + length
            if end > size:
                break
            if opcode == 0x1:
                self.frames += 1
                if self.keep_last:
                    self.last = data[pos + head : end]
                if self.frames == self.target:
                    self.reached_at = time.perf_counter()
                    self.tracker.reached()
            elif opcode == 0x9:
                self._pong(data[pos + head : end])
            elif opcode == 0x8:
                self.closed = True
            pos = end
        if pos < size:
            self.buf += data[pos:]

    def _pong(self, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None
        self.transport.write(bytes((0x8A, 0x80 | len(payload))) + mask + masked)

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        n = len(payload)
        if n < 126:
            head = bytes((0x81, 0x80 | n))
        elif n < 1 << 16:
            head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
        assert self.transport is not None
        self.transport.write(head + mask + masked)


async def open_clients(
    port: int, path: str, count: int, tracker: Tracker, batch: int = 100
) -> list[FrameCounter]:
    loop = asyncio.get_running_loop()
    host = f"127.0.0.1:{port}"
    clients: list[FrameCounter] = []

    async def one(keep_last: bool) -> FrameCounter:
        _, proto = await loop.create_connection(
            lambda: FrameCounter(host, path, tracker, keep_last), "127.0.0.1", port
        )
        await asyncio.wait_for(proto.upgraded, 30)
        return proto

    for start in range(0, count, batch):
        n = min(batch, count - start)
        clients += await asyncio.gather(*(one(start + i == 0) for i in range(n)))
    return clients


def close_clients(clients: list[FrameCounter]) -> None:
    for client in clients:
        if client.transport is not None:
            client.transport.abort()


# --------------------------------------------------------------------------------------------
# Triggers


class HttpConnection:
    """A keep-alive HTTP/1.1 connection for the PATCH requests that produce updates; opened
    again when the server has closed it (uvicorn drops idle keep-alive connections after 5 s)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        for attempt in (1, 2):
            if self.reader is None or self.writer is None or self.writer.is_closing():
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                self.writer.write(head + body)
                return await self._response(self.reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def pipeline(self, method: str, path: str, bodies: list[bytes]) -> list[int]:
        """Send every request at once on a fresh connection (HTTP/1.1 pipelining), then read
        the answers: the server always has the next update waiting, as the bare server does."""
        self.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(
                b"".join(
                    f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                    f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                    for body in bodies
                )
            )
            return [(await self._response(reader))[0] for _ in bodies]
        finally:
            writer.close()

    @staticmethod
    async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Updates:
    """PATCHes of one new candle each, to the product or the naive app."""

    def __init__(self, conn: HttpConnection, base_time: int) -> None:
        self.conn = conn
        self.next_time = base_time

    path = f"/api/charts/{CHART}/data/{SERIES}"

    def _body(self) -> bytes:
        candle = dict(generate_candles(1)[0], time=self.next_time)
        self.next_time += 60
        return upsert_body([candle])

    async def one(self) -> None:
        status, body = await self.conn.request("PATCH", self.path, self._body())
        if status != 200:
            raise BenchError(f"PATCH answered {status}: {body[:300]!r}")

    async def burst(self, count: int) -> None:
        statuses = await self.conn.pipeline(
            "PATCH", self.path, [self._body() for _ in range(count)]
        )
        if set(statuses) != {200}:
            raise BenchError(f"pipelined PATCHes answered {sorted(set(statuses))}")


@dataclass
class Target:
    name: str
    clients: list[FrameCounter]
    one: Callable[[], Awaitable[None]]
    burst: Callable[[int], Awaitable[None]]
    #: Per single update: the latency of every socket, in ms.
    trials: list[list[float]] = field(default_factory=list)
    #: Per round: frames delivered per second during the burst.
    rates: list[float] = field(default_factory=list)

    def reset(self) -> None:
        self.trials.clear()
        self.rates.clear()


async def measure_round(target: Target, tracker: Tracker, trials: int, burst: int) -> None:
    clients = target.clients
    first = len(target.trials)
    for _ in range(trials):
        tracker.arm(clients, 1)
        started = time.perf_counter()
        await target.one()
        await asyncio.wait_for(tracker.done.wait(), 60)
        target.trials.append([(c.reached_at - started) * 1000 for c in clients])
        await asyncio.sleep(0.02)

    tracker.arm(clients, burst)
    started = time.perf_counter()
    await target.burst(burst)
    await asyncio.wait_for(tracker.done.wait(), 300)
    finished = max(c.reached_at for c in clients)
    target.rates.append(len(clients) * burst / (finished - started))
    await asyncio.sleep(0.2)
    p99s = [percentile(t, 99) for t in target.trials[first:]]
    log(
        f"  {target.name:<8} p99 per update: median {median(p99s):7.2f} ms, worst "
        f"{max(p99s):7.2f} ms   rate {target.rates[-1]:>10,.0f} frames/s"
    )


async def measure_rounds(
    targets: list[Target], tracker: Tracker, rounds: int, trials: int, burst: int
) -> None:
    """A warm-up round, then ``rounds`` rounds over every target in alternating order."""
    log("warm-up round (not counted):")
    for target in targets:
        await measure_round(target, tracker, 3, 10)
        target.reset()
    for number in range(rounds):
        log(f"round {number + 1}:")
        for target in targets if number % 2 == 0 else reversed(targets):
            await measure_round(target, tracker, trials, burst)
        if any(c.closed for t in targets for c in t.clients):
            raise BenchError("a server closed client sockets during the measurement")


async def prepare_chart(port: int) -> HttpConnection:
    conn = HttpConnection(port)
    status, body = await conn.request(
        "POST", f"/api/charts/{CHART}/data/{SERIES}", replace_body(generate_candles(1000))
    )
    if status not in (200, 201):
        raise BenchError(f"replace series answered {status}: {body[:300]!r}")
    return conn


async def run(args: argparse.Namespace) -> dict[str, float]:
    plan = cpu_plan(not args.no_pin)
    pin_self(plan)
    log(
        f"{args.sockets:,} sockets per server on one chart; {args.rounds} rounds of "
        f"{args.trials} single updates + a burst of {args.burst}; {plan.description}"
    )
    tracker = Tracker()
    targets: list[Target] = []
    servers: list[Server] = []
    bare_proc: asyncio.subprocess.Process | None = None
    closers: list[Callable[[], None]] = []
    try:
        product = product_server(plan.server_prefix, FANOUT_ENV).start()
        servers.append(product)
        conn = await prepare_chart(product.port)
        closers.append(conn.close)
        clients = await open_clients(product.port, f"/ws/charts/{CHART}", args.sockets, tracker)
        closers.append(lambda: close_clients(clients))
        updates = Updates(conn, 10**9)
        tracker.arm(clients, 1)
        await updates.one()
        await asyncio.wait_for(tracker.done.wait(), 60)
        frame = clients[0].last.decode()
        message = orjson.loads(frame)
        if message.get("type") != "data_update" or message.get("op") != "upsert":
            raise BenchError(f"the product sent {frame[:300]!r} instead of a data_update")
        log(f"product frame ({len(frame)} bytes): {frame[:160]}...")
        targets.append(Target("product", clients, updates.one, updates.burst))

        bare_port = free_port()
        bare_proc = await asyncio.create_subprocess_exec(
            *plan.server_prefix,
            PYTHON,
            "-m",
            "bench.bare_ws_server",
            str(bare_port),
            cwd=str(ROOT),
        )
        control = await _wait_control(bare_port, tracker)
        bare_clients = await open_clients(bare_port, "/listen", args.sockets, tracker)
        closers.append(lambda: close_clients([*bare_clients, control]))
        control.send_text("frame " + frame)
        await _wait_done(control, tracker)

        async def bare_one() -> None:
            control.send_text("one")

        async def bare_burst(count: int) -> None:
            control.send_text(f"burst {count}")

        targets.append(Target("bare", bare_clients, bare_one, bare_burst))

        if not args.no_naive:
            naive = naive_server(plan.server_prefix).start()
            servers.append(naive)
            naive_conn = await prepare_chart(naive.port)
            closers.append(naive_conn.close)
            naive_clients = await open_clients(
                naive.port, f"/ws/charts/{CHART}", args.sockets, tracker
            )
            closers.append(lambda: close_clients(naive_clients))
            naive_updates = Updates(naive_conn, 10**9)
            targets.append(Target("naive", naive_clients, naive_updates.one, naive_updates.burst))

        await measure_rounds(targets, tracker, args.rounds, args.trials, args.burst)
    finally:
        for close in closers:
            with contextlib.suppress(Exception):
                close()
        if bare_proc is not None and bare_proc.returncode is None:
            bare_proc.terminate()
            await bare_proc.wait()
        for server in servers:
            server.stop()

    figures: dict[str, float] = {}
    for target in targets:
        p99s = [percentile(trial, 99) for trial in target.trials]
        pooled = [x for trial in target.trials for x in trial]
        figures[f"{target.name}_p99_ms"] = median(p99s)
        figures[f"{target.name}_worst_p99_ms"] = max(p99s)
        figures[f"{target.name}_pooled_p99_ms"] = percentile(pooled, 99)
        figures[f"{target.name}_p50_ms"] = percentile(pooled, 50)
        figures[f"{target.name}_rate"] = median(target.rates)
    by_name = {target.name: target for target in targets}
    # Rounds are paired (each server measured right after the other), so the ratio is taken per
    # round: load from outside the benchmark then hits both sides of a ratio alike.
    figures["product_over_bare"] = median(
        [ratio(p, b) for p, b in zip(by_name["product"].rates, by_name["bare"].rates, strict=True)]
    )
    if "naive" in by_name:
        figures["product_over_naive"] = median(
            [
                ratio(p, n)
                for p, n in zip(by_name["product"].rates, by_name["naive"].rates, strict=True)
            ]
        )
    return figures


async def _wait_control(port: int, tracker: Tracker) -> FrameCounter:
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 60
    while True:
        try:
            _, proto = await loop.create_connection(
                lambda: FrameCounter(f"127.0.0.1:{port}", "/control", tracker), "127.0.0.1", port
            )
            await asyncio.wait_for(proto.upgraded, 10)
            return proto
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError("the bare websockets server did not start") from None
            await asyncio.sleep(0.1)


async def _wait_done(control: FrameCounter, tracker: Tracker) -> None:
    tracker.arm([control], 1)
    await asyncio.wait_for(tracker.done.wait(), 30)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=20, help="single updates per round")
    parser.add_argument("--burst", type=int, default=100, help="updates per sustained burst")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--no-naive", action="store_true")
    args = parser.parse_args(argv)

    with section("bench_fanout: one update to many sockets"):
        ok, why = product_available()
        if not ok:
            raise BenchError(f"the product does not import yet: {why}")
        raise_fd_limit(3 * args.sockets + 200)
        try:
            import uvloop

            figures = uvloop.run(run(args))
        except ImportError:
            figures = asyncio.run(run(args))

        p99 = figures["product_p99_ms"]
        over = figures["product_over_bare"]
        log("\nsummary (fan-out):")
        log(
            f"  product p99 latency (median over updates) = {p99:.2f} ms "
            f"(target <= {LATENCY_TARGET_MS:g} ms) {verdict(p99, LATENCY_TARGET_MS, False)}"
        )
        log(
            f"  product rate / bare rate (median of rounds) = {over:.3f} "
            f"(target >= {RATE_TARGET}) {verdict(over, RATE_TARGET, True)}"
        )
        for name in ("product", "bare", "naive"):
            if f"{name}_rate" not in figures:
                continue
            got = {key: figures[f"{name}_{key}"] for key in ("p50_ms", "p99_ms", "rate")}
            got["worst"] = figures[f"{name}_worst_p99_ms"]
            got["pooled"] = figures[f"{name}_pooled_p99_ms"]
            log(
                f"  {name:<8} p50 {got['p50_ms']:7.2f} ms  p99 median {got['p99_ms']:7.2f} ms, "
                f"worst {got['worst']:7.2f} ms, pooled {got['pooled']:7.2f} ms;  rate "
                f"{got['rate']:>10,.0f} frames/s"
            )
        if "product_over_naive" in figures:
            over_naive = figures["product_over_naive"]
            log(f"  product rate / naive rate (median of rounds) = {over_naive:.2f}")
    return figures


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        log(f"bench_fanout FAILED: {exc}")
        sys.exit(1)

"""Slow consumers, silent clients and shutdown, each on a server of its own."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .conftest import ServerProcess, candles, open_socket, receive, socket_count

pytestmark = pytest.mark.slow

MakeServer = Callable[..., ServerProcess]


async def wait_for_sockets(http: httpx.AsyncClient, count: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while (now := await socket_count(http)) != count:
        assert time.monotonic() < deadline, f"{now} sockets open, expected {count}"
        await asyncio.sleep(0.05)


async def test_a_client_that_stops_reading_is_closed_and_the_others_keep_receiving(
    make_server: MakeServer,
) -> None:
    srv = make_server(websocket_send_queue_size=8)
    chart = "slow"
    # A tiny receive buffer so that a client that stops reading backs up quickly.
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", srv.port))
    slow, _ = await open_socket(srv.ws_url(chart), sock=raw, max_queue=1, compression=None)
    fast, _ = await open_socket(srv.ws_url(chart))
    received: list[dict[str, Any]] = []
    sent = 0
    async with httpx.AsyncClient(base_url=srv.http_url, timeout=10) as http:
        await wait_for_sockets(http, 2)
        wide = [{**c, "customValues": {"note": "x" * 200}} for c in candles(0, 200)]
        body = {"seriesType": "candlestick", "data": wide}
        resp = await http.post(f"/api/charts/{chart}/data/s", json=body)
        sent = 1
        received.append(await receive(fast))
        # Each update is ~60 KB; the slow socket's buffers hold a few of them, then its outbox of
        # 8 fills and it must be dropped. The other client reads each update as it comes.
        while await socket_count(http) == 2:
            assert sent < 400, "the slow client was never disconnected"
            for _ in range(10):
                shifted = [{**c, "time": c["time"] + 60 * sent} for c in wide]
                resp = await http.patch(f"/api/charts/{chart}/data/s", json={"data": shifted})
                assert resp.status_code == 200
                sent += 1
                received.append(await receive(fast))
        for _ in range(5):  # the remaining client still gets what follows
            resp = await http.patch(f"/api/charts/{chart}/data/s", json={"data": candles(0, 1)})
            sent += 1
            received.append(await receive(fast))
        assert await socket_count(http) == 1

    assert [m["version"] for m in received] == list(range(1, sent + 1))

    # Reading again, the slow client finds the server's close after what was already on its way.
    got = 0
    with pytest.raises(ConnectionClosed) as closed:
        while got < 1000:
            await receive(slow, wait=10)
            got += 1
    assert got < sent
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert "slow consumer" in closed.value.rcvd.reason
    await slow.close()
    await fast.close()


async def test_silent_clients_are_closed_and_answering_clients_stay(
    make_server: MakeServer,
) -> None:
    srv = make_server(websocket_timeout_seconds=1.0, websocket_ping_interval_seconds=0.25)
    started = time.monotonic()  # before joining: the close cannot come sooner than the timeout
    silent, hello = await open_socket(srv.ws_url("idle"))
    assert hello["timeoutSeconds"] == 1.0
    lively, _ = await open_socket(srv.ws_url("idle"))

    async def answer_pings(seconds: float) -> int:
        """Answer every ping for ``seconds``; the number of pings answered."""
        pings = 0
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while time.monotonic() < deadline:
                    message = orjson.loads(await lively.recv())
                    if message["type"] == "ping":
                        assert isinstance(message["timestamp"], float)
                        pings += 1
                        await lively.send('{"type":"pong"}')
        return pings

    # Longer than the timeout: answering pings keeps a socket open.
    answering = asyncio.create_task(answer_pings(3.0))
    pings_seen = 0
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                message = orjson.loads(await silent.recv())
                assert message["type"] == "ping"  # the server pings; this client never answers
                pings_seen += 1
    elapsed = time.monotonic() - started
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert "idle timeout" in closed.value.rcvd.reason
    assert 1.0 <= elapsed < 5
    assert pings_seen >= 2

    assert await answering >= 8
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        assert await socket_count(http) == 1
    await lively.send('{"type":"ping","requestId":1}')
    assert (await receive(lively))["type"] == "pong"
    await lively.close()


async def test_shutdown_closes_every_socket_with_1001(make_server: MakeServer) -> None:
    srv = make_server()
    sockets = [(await open_socket(srv.ws_url(chart)))[0] for chart in ("a", "a", "b")]
    late = await connect(srv.ws_url("c"))  # never reads until the end

    srv.proc.send_signal(signal.SIGTERM)
    for ws in [*sockets, late]:
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(10):
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None, closed.value
        assert closed.value.rcvd.code == 1001
        assert closed.value.rcvd.reason == "server shutting down"
    # uvicorn exits through the re-raised SIGTERM once it has shut down cleanly.
    assert await asyncio.to_thread(srv.proc.wait, 20) in (0, -signal.SIGTERM)

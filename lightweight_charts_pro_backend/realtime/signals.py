"""Closing sockets with 1001 when the server is told to stop.

uvicorn stops on SIGINT/SIGTERM by closing every open WebSocket itself, with 1012 (service
restart), before the app's lifespan shutdown runs. To close them as "going away" (1001) instead,
the app wraps the server's Python signal handlers: the signal first makes the hub close every
socket, and is passed on to the server once their handlers are done (or after a bound).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from .hub import Hub

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def close_sockets_on_signal(hub: Hub, grace_seconds: float = 5.0) -> Callable[[], None]:
    """Wrap the current SIGINT/SIGTERM handlers so that sockets close with 1001 before the
    server handles the signal; returns a function putting the previous handlers back.

    Only plain Python handlers are wrapped (uvicorn's, for instance); where there is none, or
    off the main thread, nothing changes and the lifespan shutdown closes what is left.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Callable[[int, FrameType | None], Any]] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def close_then_pass_on(handler: Callable[[int, FrameType | None], Any], sig: int) -> None:
        try:
            await hub.close_sockets(grace_seconds=grace_seconds)
        finally:
            handler(sig, None)

    def on_loop(sig: int) -> None:
        handler = previous[sig]
        if hub.closed:
            handler(sig, None)
            return
        task = loop.create_task(close_then_pass_on(handler, sig))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_signal(sig: int, frame: FrameType | None) -> None:
        # A signal handler may run between any two bytecodes of the loop's own code: only
        # schedule work on the loop from here.
        loop.call_soon_threadsafe(on_loop, sig)

    for sig in SIGNALS:
        handler = signal.getsignal(sig)
        if callable(handler) and handler is not signal.default_int_handler:
            previous[sig] = handler
            signal.signal(sig, on_signal)

    def restore() -> None:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is on_signal:
                signal.signal(sig, handler)

    return restore

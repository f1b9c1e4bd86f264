"""The fan-out ceiling: a bare `websockets` server sending one prebuilt frame to every socket.

Every connection except ``/control`` just waits. The control connection sends commands:

- ``frame <text>``: the frame to send from now on (the product's own ``data_update`` text);
- ``one``: send the frame once to every socket (``websockets.broadcast``: encoded once, written
  to each connection without waiting);
- ``burst <n>``: ``n`` broadcasts, yielding to the event loop between two of them.

Run: ``python -m bench.bare_ws_server <port>``
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve


async def main(port: int) -> None:
    listeners: set[ServerConnection] = set()
    frame = '{"type":"data_update"}'

    async def handler(ws: ServerConnection) -> None:
        nonlocal frame
        if ws.request is None or ws.request.path != "/control":
            listeners.add(ws)
            try:
                await ws.wait_closed()
            finally:
                listeners.discard(ws)
            return
        async for command in ws:
            assert isinstance(command, str)
            verb, _, arg = command.partition(" ")
            if verb == "frame":
                frame = arg
            elif verb == "one":
                broadcast(listeners, frame)
            elif verb == "burst":
                for _ in range(int(arg)):
                    broadcast(listeners, frame)
                    await asyncio.sleep(0)
            await ws.send("done")

    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None, backlog=4096):
        await asyncio.Future()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main(int(sys.argv[1])))
    except ImportError:
        asyncio.run(main(int(sys.argv[1])))

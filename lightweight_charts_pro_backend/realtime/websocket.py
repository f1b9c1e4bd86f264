"""`/ws/charts/{chart_id}`: live updates of one chart, history and snapshots over the socket.

Besides the server's task running the handler, each socket has two of its own: the receiver
answers client frames, the pump is the socket's only writer, draining its outbox. The handler
waits for the first of: the client going away, the hub asking for a close, the pump failing.
Everything the server sends goes through the outbox, so a snapshot and the updates after it
leave in the order they were taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from fastapi import APIRouter, WebSocket
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from ..annotations.service import AnnotationsService
from ..api import render
from ..apikeys import KEY_CACHE_SECONDS
from ..auth import (
    ANONYMOUS,
    REVOCATIONS,
    TOKEN_EXPIRED,
    Authenticator,
    Principal,
    refuse_websocket,
)
from ..charts.events import ChartEvent
from ..charts.service import ChartsService, check_id, check_min_version, check_pane
from ..charts.timeframes import parse_resolution
from ..database import as_unavailable
from ..errors import (
    ChartNotFound,
    ChartsError,
    DatabaseUnavailable,
    InvalidRequest,
    RateLimited,
)
from ..metrics import Metrics, close_reason
from ..ratelimit import RateLimiter
from .hub import CLOSE_GOING_AWAY, CLOSE_IDLE, Connection, Hub
from .protocol import (
    Message,
    bars_message,
    decode_frame,
    error_message,
    frame_message,
    message_fields,
    pong_message,
    prefixed_message,
    refusal_message,
    request_id_of,
    text_message,
)

logger = logging.getLogger(__name__)

#: Path of the chart socket; its handler is a plain ASGI app (``ChartSocketApp``).
PATH: Final = "/ws/charts/{chart_id}"
#: How long a closing handshake may wait for a client that does not read.
CLOSE_TIMEOUT_SECONDS: Final = 5.0
CLOSE_POLICY_VIOLATION: Final = 1008
#: How often the credentials of open sockets are checked again (besides on each client frame):
#: as often as a process refreshes what it cached of a key.
CREDENTIALS_CHECK_SECONDS: Final = KEY_CACHE_SECONDS
#: RFC 6455's "Try Again Later": the database could not be read to open the socket.
CLOSE_TRY_AGAIN_LATER: Final = 1013
_MAX_REASON_BYTES: Final = 123
#: Series resolutions one socket may watch at once.
MAX_SUBSCRIPTIONS: Final = 64


class ChartSocketApp:
    """The ASGI app of ``/ws/charts/{chart_id}``.

    An ASGI app rather than a FastAPI route (Starlette routes an object that is not a function
    as plain ASGI): every update to every socket goes through ``send``, and here that is the
    server's own, without the per-message wrappers a route adds.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FastAPI records the matched route for its own route classes only; the access log and
        # the metrics name the socket by this one's template.
        scope["route"] = ROUTE
        websocket = WebSocket(scope, receive, send)
        state = websocket.app.state
        hub: Hub = state.hub
        chart_id: str = scope["path_params"]["chart_id"]
        principal = await open_socket(websocket, chart_id, hub)
        if principal is None:
            return
        task = asyncio.current_task()
        if task is not None:
            hub.track(task)
        max_bytes = state.settings.websocket_max_message_bytes
        sequence = -1
        if not hub.follows(chart_id):
            sequence = await annotation_sequence(state.annotations, chart_id)
        try:
            version = await chart_version(state.charts, chart_id)
        except Exception as exc:
            refusal = as_unavailable(exc)
            if refusal is None:
                raise
            logger.warning("refusing a socket of chart %s: %s", chart_id, refusal.detail)
            await websocket.send(
                error_message(refusal.detail, refusal.error_code, retry_after=refusal.retry_after)
            )
            await close_socket(websocket, CLOSE_TRY_AGAIN_LATER, "database unavailable; reconnect")
            return
        # Reading the version and joining in one step: no event can fall between them.
        conn = hub.join(
            chart_id, version, principal.sub, annotation_sequence=sequence, principal=principal
        )
        session = ChartSession(websocket, send, chart_id, state.charts, hub, conn, max_bytes)
        session.limiter = state.rate_limiter
        session.metrics = state.metrics
        session.authenticator = state.authenticator
        await session.run(principal)


router = APIRouter()
ROUTE: Final = WebSocketRoute(PATH, ChartSocketApp(), name="chart_socket")
router.routes.append(ROUTE)


async def open_socket(websocket: WebSocket, chart_id: str, hub: Hub) -> Principal | None:
    """The handshake: the caller when the socket is accepted and may follow ``chart_id``.

    Credentials are checked before anything is sent (``Authenticator.websocket_grant``); a refused
    socket is closed with 1008 and the reason (1013 when the database could not be asked). Other
    refusals after ``accept`` carry an ``error`` frame and a close reason a browser can read.
    """
    authenticator: Authenticator = websocket.app.state.authenticator
    try:
        grant = await authenticator.websocket_grant(
            websocket.headers, websocket.query_params, chart_id
        )
    except Exception as exc:
        refusal = exc if isinstance(exc, ChartsError) else as_unavailable(exc)
        if refusal is None:
            raise
        await refuse_websocket(websocket, refusal)
        return None
    await websocket.accept(subprotocol=grant.subprotocol)
    if hub.closed:
        await close_socket(websocket, CLOSE_GOING_AWAY, "server shutting down")
        return None
    try:
        check_id(chart_id, "chartId")
    except InvalidRequest as exc:
        await websocket.send(error_message(exc.detail, exc.error_code))
        await close_socket(websocket, CLOSE_POLICY_VIOLATION, "invalid chartId")
        return None
    return grant.principal


def _disconnect_reason(code: int, reason: str) -> str:
    if reason.startswith("slow consumer"):
        return "slow_consumer"
    if code == CLOSE_IDLE:
        return "idle_timeout"
    if reason == TOKEN_EXPIRED:
        return "token_expired"
    if reason in REVOCATIONS:
        return "credentials_revoked"
    return close_reason(code)


async def close_revoked_sockets(
    hub: Hub, authenticator: Authenticator, interval: float = CREDENTIALS_CHECK_SECONDS
) -> None:
    """Every ``interval``, close (1008 and the reason) the open sockets whose API key, or the key
    their token was issued for, has been revoked or deleted since they opened. Each key is looked
    up once per pass, in the key store's cache; a key revoked by another process (the command
    line, another worker) is seen within the cache's lifetime, so such sockets close within
    ``interval`` plus ``KEY_CACHE_SECONDS``. Runs in every worker, for its own sockets."""
    while True:
        await asyncio.sleep(interval)
        refusals: dict[Principal, ChartsError | None] = {}
        for conn in list(hub.connections()):
            principal = conn.principal
            if principal is None or principal.key_id is None:
                continue
            try:
                if principal not in refusals:
                    refusals[principal] = await authenticator.recheck(principal)
            except Exception:
                logger.exception("checking the API key %s of open sockets failed", principal.key_id)
                refusals[principal] = None
            refusal = refusals[principal]
            if refusal is not None:
                logger.info("closing a socket of chart %s: %s", conn.chart_id, refusal.detail)
                conn.close(CLOSE_POLICY_VIOLATION, refusal.detail)


async def close_socket(websocket: WebSocket, code: int, reason: str) -> None:
    """Send the close frame unless the client is gone; bounded for clients that do not read."""
    encoded = reason.encode()[:_MAX_REASON_BYTES].decode(errors="ignore")
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError, TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await websocket.close(code, encoded)


async def chart_version(charts: ChartsService, chart_id: str) -> int:
    """The chart's version now; 0 for a chart that does not exist (yet).

    The last step reads the loaded chart without awaiting, so a caller that joins the hub right
    after the return sees every later event and none before.
    """
    try:
        chart = await charts.get_chart_or_raise(chart_id)
    except ChartNotFound:
        return 0
    return chart.version


async def annotation_sequence(annotations: AnnotationsService, chart_id: str) -> int:
    """The number of the chart's last annotation change; -1 when the database cannot say."""
    try:
        return await annotations.sequence(chart_id)
    except DatabaseUnavailable:
        return -1


Handler = Callable[["ChartSession", dict[str, Any], object], Awaitable[None]]


class ChartSession:
    """The protocol of one accepted socket."""

    def __init__(
        self,
        websocket: WebSocket,
        send: Send,
        chart_id: str,
        charts: ChartsService,
        hub: Hub,
        conn: Connection,
        max_message_bytes: int,
    ) -> None:
        self.websocket = websocket
        self.send = send
        self.chart_id = chart_id
        self.charts = charts
        self.hub = hub
        self.max_message_bytes = max_message_bytes
        self.conn = conn
        self.limiter: RateLimiter | None = None
        self.metrics = Metrics(enabled=False)
        self.authenticator: Authenticator | None = None
        self.principal = ANONYMOUS

    async def run(self, principal: Principal = ANONYMOUS) -> None:
        """Serve the socket until it ends; a token's expiry ends it with 1008, and so does the
        revocation of its API key, found on a client frame or by ``close_revoked_sockets``."""
        self.principal = principal
        conn = self.conn
        left = principal.seconds_left()
        expiry = (
            None
            if left is None
            else asyncio.get_running_loop().call_later(
                max(left, 0.0), conn.close, CLOSE_POLICY_VIOLATION, TOKEN_EXPIRED
            )
        )
        conn.send(
            frame_message(
                {
                    "type": "connected",
                    "chartId": self.chart_id,
                    "version": conn.baseline,
                    "timeoutSeconds": self.hub.limits.timeout_seconds,
                }
            )
        )
        pump = asyncio.create_task(self._pump())
        receiver = asyncio.create_task(self._receive())
        closing = asyncio.create_task(conn.closing.wait())
        tasks = (pump, receiver, closing)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if expiry is not None:
                expiry.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.hub.leave(conn)
        if pump.done() and not pump.cancelled():
            error = pump.exception()
            if error is not None and not isinstance(error, WebSocketDisconnect | OSError):
                logger.error(
                    "sending to a socket of chart %s failed", self.chart_id, exc_info=error
                )
        if conn.close_request is not None:
            code, reason = conn.close_request
            # The label of websocket_disconnects_total (the middleware counts the close).
            self.websocket.state.disconnect_reason = _disconnect_reason(code, reason)
            if code != CLOSE_GOING_AWAY:
                logger.info("closing a socket of chart %s: %s (%d)", self.chart_id, reason, code)
            await close_socket(self.websocket, code, reason)

    async def _pump(self) -> None:
        outbox = self.conn.outbox
        send = self.send  # the server's own send: no state checks per message
        while True:
            await send(await outbox.get())

    async def _receive(self) -> None:
        receive = self.websocket.receive
        conn = self.conn
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            conn.touch()
            if not await self._still_admitted():
                return
            await self.handle(message.get("text"), message.get("bytes"))

    async def _still_admitted(self) -> bool:
        """Check the socket's credentials again before answering a frame; closes the socket
        (1008 and the reason) when they admit it no more."""
        if self.authenticator is None or self.principal.kind == "anonymous":
            return True
        refusal = await self.authenticator.recheck(self.principal)
        if refusal is None:
            return True
        self.conn.close(CLOSE_POLICY_VIOLATION, refusal.detail)
        return False

    async def handle(self, text: str | None, data: bytes | None) -> None:
        """Answer one client frame. Never raises for anything the client sent."""
        message = request_id = None
        try:
            message = decode_frame(text, data, self.max_message_bytes)
            request_id = request_id_of(message)
            kind, fields = message_fields(message)
            await _HANDLERS[kind](self, fields, request_id)
        except Exception as exc:
            refusal = exc if isinstance(exc, ChartsError) else as_unavailable(exc)
            if refusal is None:
                logger.exception("a message on a socket of chart %s failed", self.chart_id)
                detail = "The server failed to handle this message."
                self.conn.send(
                    refusal_message(message, self.chart_id, detail, "INTERNAL_ERROR", request_id)
                )
                return
            self.conn.send(
                refusal_message(
                    message,
                    self.chart_id,
                    refusal.detail,
                    refusal.error_code,
                    request_id,
                    refusal.retry_after,
                )
            )

    async def _ping(self, fields: dict[str, Any], request_id: object) -> None:
        self.conn.send(pong_message(request_id))

    async def _pong(self, fields: dict[str, Any], request_id: object) -> None:
        return None  # receiving it was the point: the socket is alive

    async def _count_read(self) -> None:
        """Count a frame that reads chart data against the client's history limit: a socket
        reads no more than REST allows. Frames are answered one at a time, so a socket has at
        most one read in progress."""
        if self.limiter is not None:
            limiter = self.limiter
            decision = await limiter.hit_history(limiter.client_address(self.websocket.scope))
            if not decision.allowed:
                self.metrics.rate_limited("history")
                raise RateLimited(decision.message("history requests"), decision.retry_after)

    async def _request_history(self, fields: dict[str, Any], request_id: object) -> None:
        await self._count_read()
        pane_id = check_pane(fields.get("pane_id", 0))
        series_id = _series_id(fields.get("series_id"))
        resolution = None
        if fields.get("resolution") is not None:
            chunk, parsed = await self.charts.history_at(
                self.chart_id,
                pane_id,
                series_id,
                fields["resolution"],
                before_time=fields.get("before_time"),
                after_time=fields.get("after_time"),
                count=fields.get("count"),
                min_version=fields.get("min_version"),
            )
            resolution = parsed.text
        else:
            chunk = await self.charts.history(
                self.chart_id,
                pane_id,
                series_id,
                before_time=fields.get("before_time"),
                after_time=fields.get("after_time"),
                count=fields.get("count"),
                min_version=fields.get("min_version"),
            )
        head: dict[str, object] = {
            "type": "history_response",
            "chartId": self.chart_id,
            "paneId": pane_id,
        }
        if request_id is not None:
            head["requestId"] = request_id
        self.metrics.history_served("websocket", chunk.count)
        body = render.history_json(series_id, chunk, head, resolution)
        self.conn.send(text_message(body))

    async def _get_initial_data(self, fields: dict[str, Any], request_id: object) -> None:
        await self._count_read()
        head: dict[str, object] = {"type": "initial_data_response"}
        if request_id is not None:
            head["requestId"] = request_id
        if "series_id" not in fields:
            if fields.get("resolution") is not None:
                raise InvalidRequest("resolution needs a seriesId: bars are served per series.")
            pane_id = None if "pane_id" not in fields else check_pane(fields["pane_id"])
            snapshot = await self.charts.get_chart(
                self.chart_id,
                pane_id=pane_id,
                min_version=check_min_version(fields.get("min_version")),
            )
            if pane_id is not None:
                head["paneId"] = pane_id
            head["version"] = snapshot.version
            self.conn.snapshot_sent(snapshot.version)
            body = render.chart_json(snapshot.chart, snapshot.series, pane_id)
            self.conn.send(prefixed_message(head, body))
            return
        pane_id = check_pane(fields.get("pane_id", 0))
        series_id = _series_id(fields["series_id"])
        resolution = None
        if fields.get("resolution") is not None:
            view, parsed = await self.charts.series_at(
                self.chart_id,
                pane_id,
                series_id,
                fields["resolution"],
                min_version=check_min_version(fields.get("min_version")),
            )
            resolution = parsed.text
        else:
            view = await self.charts.get_series(
                self.chart_id,
                pane_id,
                series_id,
                min_version=check_min_version(fields.get("min_version")),
            )
        head |= {"chartId": self.chart_id, "paneId": pane_id, "version": view.version}
        self.conn.snapshot_sent(view.version)
        self.conn.send(prefixed_message(head, render.series_json(view, resolution)))

    async def _subscribe(self, fields: dict[str, Any], request_id: object) -> None:
        pane_id, series_id, resolution = await self._watched(fields)
        conn = self.conn
        if (pane_id, series_id, resolution) not in conn.watching:
            if len(conn.watching) >= MAX_SUBSCRIPTIONS:
                raise InvalidRequest(
                    f"A socket may watch at most {MAX_SUBSCRIPTIONS} series resolutions; "
                    "unsubscribe from one first."
                )
            # computed now, so that the first live update costs only its own buckets
            await self.charts.bars_at(self.chart_id, pane_id, series_id, resolution, [])
        chart = await self.charts.get_chart_or_raise(self.chart_id)
        self.hub.watch(conn, pane_id, series_id, resolution)  # same step as reading the version
        conn.send(
            frame_message(
                self._watch_reply("subscribed", fields, resolution, chart.version, request_id)
            )
        )

    async def _unsubscribe(self, fields: dict[str, Any], request_id: object) -> None:
        pane_id = check_pane(fields.get("pane_id", 0))
        series_id = _series_id(fields.get("series_id"))
        resolution = parse_resolution(fields.get("resolution")).text
        self.hub.unwatch(self.conn, pane_id, series_id, resolution)
        version = await chart_version(self.charts, self.chart_id)
        self.conn.send(
            frame_message(
                self._watch_reply("unsubscribed", fields, resolution, version, request_id)
            )
        )

    async def _watched(self, fields: dict[str, Any]) -> tuple[int, str, str]:
        """The series and resolution a subscribe names, checked (the series can have bars)."""
        pane_id = check_pane(fields.get("pane_id", 0))
        series_id = _series_id(fields.get("series_id"))
        if fields.get("resolution") is None:
            raise InvalidRequest('Field resolution is required (such as "1", "60" or "1D").')
        chart = await self.charts.get_chart_or_raise(self.chart_id)
        series = chart.get_series_or_raise(pane_id, series_id)
        return pane_id, series_id, self.charts.check_resolution(series, fields["resolution"]).text

    def _watch_reply(
        self, kind: str, fields: dict[str, Any], resolution: str, version: int, request_id: object
    ) -> dict[str, object]:
        reply: dict[str, object] = {
            "type": kind,
            "chartId": self.chart_id,
            "paneId": fields.get("pane_id", 0),
            "seriesId": fields.get("series_id"),
            "resolution": resolution,
            "version": version,
        }
        if request_id is not None:
            reply["requestId"] = request_id
        return reply

    async def _resume(self, fields: dict[str, Any], request_id: object) -> None:
        since = fields.get("since_version")
        if type(since) is not int or since < 0:
            raise InvalidRequest(f"sinceVersion must be an integer >= 0; got {since!r:.40}.")
        conn = self.conn
        head: dict[str, object] = {"chartId": self.chart_id, "sinceVersion": since}
        if request_id is not None:
            head["requestId"] = request_id
        missed = await self.hub.recall(conn, since)
        if missed is None or len(missed) >= conn.outbox.free:
            head["version"] = await chart_version(self.charts, self.chart_id)
            head["reason"] = "the updates after that version cannot be replayed; fetch the chart"
            conn.send(frame_message({"type": "resync_required", **head}))
            return
        for message in missed:
            conn.send(message)
        if conn.watching:
            for bars in await self._missed_bars(missed):
                conn.send(bars)
        version = since + len(missed)
        conn.snapshot_sent(version)
        conn.send(
            frame_message({"type": "resumed", **head, "version": version, "replayed": len(missed)})
        )

    async def _missed_bars(self, missed: list[Message]) -> list[Message]:
        """The bars that the replayed changes of watched series changed, one update per watched
        resolution (its bars as they are now), or, after a replace or delete of the series, an
        update without data (fetch the series at that resolution again)."""
        changes: dict[tuple[int, str], tuple[list[int], bool, int]] = {}
        for message in missed:
            frame = orjson.loads(message["text"])
            if frame.get("type") != "data_update" or frame.get("seriesId") is None:
                continue
            key = (frame["paneId"], frame["seriesId"])
            times, rewritten, _ = changes.get(key, ([], False, 0))
            if frame["op"] == "upsert":
                times.extend(point["time"] for point in frame.get("data") or ())
            else:
                rewritten = True
            changes[key] = (times, rewritten, frame["version"])
        out = []
        for pane_id, series_id, resolution in sorted(self.conn.watching):
            change = changes.get((pane_id, series_id))
            if change is None:
                continue
            times, rewritten, version = change
            event = ChartEvent(self.chart_id, version, "upsert", pane_id, series_id)
            data = None
            count = 0
            if not rewritten:
                with contextlib.suppress(ChartsError):
                    data, count = await self.charts.bars_at(
                        self.chart_id, pane_id, series_id, resolution, times
                    )
            op = "upsert" if data is not None else "replace"
            out.append(bars_message(event, resolution, op, count, data))
        return out


def _series_id(value: object) -> str:
    if value is None:
        raise InvalidRequest("Field seriesId is required.")
    if not isinstance(value, str):
        raise InvalidRequest(f"seriesId must be a string; got {value!r:.40}.")
    return check_id(value, "seriesId")


_HANDLERS: Final[dict[str, Handler]] = {
    "ping": ChartSession._ping,
    "pong": ChartSession._pong,
    "request_history": ChartSession._request_history,
    "get_initial_data": ChartSession._get_initial_data,
    "resume": ChartSession._resume,
    "subscribe": ChartSession._subscribe,
    "unsubscribe": ChartSession._unsubscribe,
}

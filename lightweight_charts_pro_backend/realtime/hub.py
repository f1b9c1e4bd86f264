"""The sockets of each chart, the chart's recent events, and the fan-out between them.

One bus subscription per chart with sockets (not one per socket), so an event is encoded once and
each socket receives it exactly once. Each socket has a bounded outbox drained by its own task; a
socket whose outbox is full is closed, and the event goes on to the others without waiting.
A chart's recent events are kept, bounded in count and bytes, so a client that reconnects can
``resume`` from the version it last saw; they outlive the chart's last socket by the resume window.

Annotation changes are ordered by the chart's annotation sequence (apart from its versions) and
go only to the sockets whose viewer may see them: a private annotation's changes reach its
owner's sockets alone.

A socket may also ``watch`` a series at a resolution (timeframes): each change of that series then
also reaches it as a ``data_update`` of the bars whose buckets changed, computed once per
resolution by ``BarSource`` (the charts service) and sent in version order after the raw update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Final

import orjson

from ..annotations.events import AnnotationEvent
from ..charts.events import ChartEvent
from ..errors import ChartsError
from .bus import BusEvent, EventBus, Unsubscribe
from .protocol import (
    Message,
    annotation_message,
    bars_message,
    event_message,
    frame_message,
    ping_message,
    withdrawal_message,
)

if TYPE_CHECKING:
    from ..auth import Principal

logger = logging.getLogger(__name__)

#: Close codes (RFC 6455 section 7.4.1) with the reasons sent beside them.
CLOSE_IDLE: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_SLOW_CONSUMER: Final = 1008
#: The frames of versions ``since + 1 .. upto`` of a chart from a store shared by processes,
#: or None when it does not hold them all (``RedisEventBus.recent``).
RecentEvents = Callable[[str, int, int], Awaitable[list[str] | None]]
#: The bars at a resolution whose buckets hold any of the given times, as a JSON array and
#: its length: ``(chart_id, pane_id, series_id, resolution, times)`` (``ChartsService.bars_at``).
BarSource = Callable[[str, int, str, str, list[int]], Awaitable[tuple[bytes, int]]]
#: The same without waiting, when the bars are at hand (else None): ``ChartsService.bars_now``.
BarsAtHand = Callable[[str, int, str, str, list[int]], tuple[bytes, int] | None]
#: A series at a resolution, as a socket watches it.
Watch = tuple[int, str, str]


@dataclass(frozen=True, slots=True)
class HubLimits:
    send_queue_size: int = 1024
    resume_events: int = 500
    resume_max_bytes: int = 16 * 2**20
    resume_window_seconds: float = 60.0
    ping_interval_seconds: float = 30.0
    timeout_seconds: float = 300.0
    #: How long an event that arrived ahead of its predecessor (from another process, through
    #: a shared bus) waits for it before the chart's sockets are told to resync.
    gap_wait_seconds: float = 2.0


class Outbox:
    """A bounded FIFO of ASGI messages with one consumer."""

    __slots__ = ("_items", "_limit", "_waiter")

    def __init__(self, limit: int) -> None:
        self._items: deque[Message] = deque()
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def free(self) -> int:
        return self._limit - len(self._items)

    def put(self, message: Message) -> bool:
        """Queue ``message``; False, and nothing queued, when the outbox is full."""
        if len(self._items) >= self._limit:
            return False
        self._items.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def clear(self) -> None:
        self._items.clear()

    async def get(self) -> Message:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


class Connection:
    """One socket as the hub sees it: its chart, outbox, liveness and close request.

    ``baseline`` is the chart's version when the socket joined: every later event reaches the
    socket live, earlier ones only through ``resume``; ``epoch`` tells which life of the chart
    that version belongs to. ``viewer`` is the caller's identity (``Principal.sub``): the owner
    whose private annotations the socket receives; ``principal`` the credentials it was opened
    with, checked again while it stays open (``websocket.close_revoked_sockets``). ``known`` is
    the version the client holds as far as the socket's stream tells (-1 after a
    ``resync_required``, until a snapshot or a replay): an event beyond the next one is not sent
    to it, a ``resync_required`` is.
    """

    __slots__ = (
        "_hub",
        "baseline",
        "chart_id",
        "close_request",
        "closing",
        "epoch",
        "known",
        "last_seen",
        "outbox",
        "principal",
        "viewer",
        "watching",
    )

    def __init__(
        self,
        hub: Hub,
        chart_id: str,
        baseline: int,
        epoch: int,
        queue_size: int,
        viewer: str | None = None,
        principal: Principal | None = None,
    ) -> None:
        self._hub = hub
        self.viewer = viewer
        self.principal = principal
        self.chart_id = chart_id
        self.baseline = baseline
        self.known = baseline
        self.epoch = epoch
        self.outbox = Outbox(queue_size)
        self.last_seen = asyncio.get_running_loop().time()
        self.close_request: tuple[int, str] | None = None
        self.closing = asyncio.Event()
        #: The series, at a resolution, whose bars this socket receives live.
        self.watching: set[Watch] = set()

    def send(self, message: Message) -> bool:
        """Queue ``message``; a full outbox closes the socket as a slow consumer (False)."""
        if self.close_request is not None:
            return False
        if self.outbox.put(message):
            return True
        self.close(
            CLOSE_SLOW_CONSUMER,
            f"slow consumer: {len(self.outbox)} messages waiting to be sent",
        )
        return False

    def snapshot_sent(self, version: int) -> None:
        """The client was sent the chart at ``version`` (a snapshot, or the replay of
        ``resume``): the updates it needs next start after it."""
        self.known = version

    def touch(self) -> None:
        self.last_seen = asyncio.get_running_loop().time()

    def close(self, code: int, reason: str) -> None:
        """Ask the socket's handler to close with ``code``; the socket leaves the hub now and
        whatever it had not sent yet is dropped."""
        if self.close_request is not None:
            return
        self.close_request = (code, reason)
        self.outbox.clear()
        self._hub.leave(self)
        self.closing.set()


class ChartChannel:
    """The sockets of one chart and the chart's recent events."""

    __slots__ = (
        "aggregating",
        "annotation_gap",
        "annotation_pending",
        "annotation_sequence",
        "bar_task",
        "chart_id",
        "connections",
        "epoch",
        "gap",
        "history",
        "history_bytes",
        "linger",
        "pending",
        "unsubscribe",
        "version",
        "watchers",
    )

    def __init__(self, chart_id: str, version: int, annotation_sequence: int = -1) -> None:
        self.chart_id = chart_id
        #: The version of the latest event fanned out (the chart's version when it was created);
        #: -1 after the bus lost events: the next one is taken as it comes.
        self.version = version
        #: Events that arrived ahead of their predecessor, by version, and the timer that stops
        #: waiting for it.
        self.pending: dict[int, ChartEvent] = {}
        self.gap: asyncio.TimerHandle | None = None
        self.connections: dict[Connection, None] = {}
        # Entries have consecutive versions, so a range is held when both of its ends are.
        self.history: deque[tuple[int, Message]] = deque()
        self.history_bytes = 0
        # Deleting a chart restarts its versions; the epoch tells the two lives apart.
        self.epoch = 0
        self.linger: asyncio.TimerHandle | None = None
        self.unsubscribe: Unsubscribe | None = None
        #: Sockets watching each series, by resolution.
        self.watchers: dict[tuple[int, str], dict[str, dict[Connection, None]]] = {}
        #: Changes of watched series whose bars are still to be sent, in version order.
        self.aggregating: deque[ChartEvent] = deque()
        self.bar_task: asyncio.Task[None] | None = None
        #: The sequence number of the latest annotation change fanned out (the chart's when the
        #: channel was created); -1 when unknown (after a loss): the next one is taken as it comes.
        self.annotation_sequence = annotation_sequence
        self.annotation_pending: dict[int, AnnotationEvent] = {}
        self.annotation_gap: asyncio.TimerHandle | None = None

    def reset_annotations(self, sequence: int = -1) -> None:
        self.annotation_sequence = sequence
        self.annotation_pending.clear()
        if self.annotation_gap is not None:
            self.annotation_gap.cancel()
            self.annotation_gap = None


class Hub:
    """Registry of the process's sockets, per chart, subscribed to ``bus`` while needed.

    Example::

        hub = Hub(bus, HubLimits())
        await hub.start()
        conn = hub.join("demo", baseline=charts_version)  # then drain conn.outbox
        ...
        await hub.close()  # every socket is asked to close with 1001
    """

    def __init__(
        self,
        bus: EventBus,
        limits: HubLimits,
        *,
        recent: RecentEvents | None = None,
        bars: BarSource | None = None,
        bars_now: BarsAtHand | None = None,
    ) -> None:
        self._bus = bus
        self.limits = limits
        self._recent = recent
        self.bars = bars
        self.bars_now = bars_now
        self._channels: dict[str, ChartChannel] = {}
        self._liveness: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Future[None]] = set()
        self.closed = False

    async def start(self) -> None:
        self._liveness = asyncio.create_task(self._keep_alive(), name="websocket-liveness")

    def connections(self) -> Iterator[Connection]:
        for channel in tuple(self._channels.values()):
            yield from tuple(channel.connections)

    @property
    def connection_count(self) -> int:
        return sum(len(channel.connections) for channel in self._channels.values())

    @property
    def chart_count(self) -> int:
        return sum(1 for channel in self._channels.values() if channel.connections)

    def follows(self, chart_id: str) -> bool:
        """Whether the chart has a channel (sockets, or had them within the resume window):
        a socket joining it needs no ``annotation_sequence``."""
        return chart_id in self._channels

    def join(
        self,
        chart_id: str,
        baseline: int,
        viewer: str | None = None,
        *,
        annotation_sequence: int = -1,
        principal: Principal | None = None,
    ) -> Connection:
        """Add a socket of ``viewer`` to ``chart_id``. Must run in the same step of the event
        loop as reading ``baseline`` from the service, so that no event falls between the two.

        ``annotation_sequence`` is the number of the chart's last annotation change as the
        service knows it, read before (used when the chart has no channel yet): changes after it
        are sent in order, however late they arrive, and a gap after it is waited for, then
        reported (-1: unknown, the first change heard starts the sequence)."""
        channel = self._channels.get(chart_id)
        if channel is None:
            channel = self._channels[chart_id] = ChartChannel(
                chart_id, baseline, annotation_sequence
            )
            channel.unsubscribe = self._bus.subscribe(
                chart_id, lambda event: self._dispatch(channel, event)
            )
        if channel.linger is not None:
            channel.linger.cancel()
            channel.linger = None
        conn = Connection(
            self, chart_id, baseline, channel.epoch, self.limits.send_queue_size, viewer, principal
        )
        channel.connections[conn] = None
        return conn

    def watch(self, conn: Connection, pane_id: int, series_id: str, resolution: str) -> None:
        """Send ``conn`` the bars of the series at ``resolution`` for every later change."""
        channel = self._channels.get(conn.chart_id)
        if channel is None or conn not in channel.connections:
            return
        by_resolution = channel.watchers.setdefault((pane_id, series_id), {})
        by_resolution.setdefault(resolution, {})[conn] = None
        conn.watching.add((pane_id, series_id, resolution))

    def unwatch(self, conn: Connection, pane_id: int, series_id: str, resolution: str) -> bool:
        """Stop ``watch``; False when the socket was not watching that."""
        if (pane_id, series_id, resolution) not in conn.watching:
            return False
        conn.watching.discard((pane_id, series_id, resolution))
        channel = self._channels.get(conn.chart_id)
        if channel is not None:
            by_resolution = channel.watchers.get((pane_id, series_id), {})
            sockets = by_resolution.get(resolution, {})
            sockets.pop(conn, None)
            if not sockets:
                by_resolution.pop(resolution, None)
            if not by_resolution:
                channel.watchers.pop((pane_id, series_id), None)
        return True

    def leave(self, conn: Connection) -> None:
        for pane_id, series_id, resolution in list(conn.watching):
            self.unwatch(conn, pane_id, series_id, resolution)
        channel = self._channels.get(conn.chart_id)
        if channel is None or conn not in channel.connections:
            return
        del channel.connections[conn]
        if channel.connections:
            return
        # Stay subscribed for a while: a client that reconnects then resumes needs the events
        # published while it was away.
        window = self.limits.resume_window_seconds
        if window > 0 and not self.closed:
            loop = asyncio.get_running_loop()
            channel.linger = loop.call_later(window, self._drop, channel)
        else:
            self._drop(channel)

    def _drop(self, channel: ChartChannel) -> None:
        if channel.connections or self._channels.get(channel.chart_id) is not channel:
            return
        del self._channels[channel.chart_id]
        if channel.linger is not None:
            channel.linger.cancel()
        if channel.gap is not None:
            channel.gap.cancel()
        if channel.bar_task is not None:
            channel.bar_task.cancel()
        channel.reset_annotations()
        if channel.unsubscribe is not None:
            channel.unsubscribe()

    def _dispatch(self, channel: ChartChannel, event: BusEvent) -> None:
        if isinstance(event, AnnotationEvent):
            self._fan_out_annotation(channel, event)
        else:
            self._fan_out(channel, event)

    def _fan_out_annotation(self, channel: ChartChannel, event: AnnotationEvent) -> None:
        """Send each annotation change once, in sequence order, to the sockets allowed to see
        it; like chart events, those from other processes may come late, twice or early."""
        latest = channel.annotation_sequence
        pending = channel.annotation_pending
        if latest >= 0:
            if event.sequence <= latest:
                return
            if event.sequence > latest + 1:
                pending[event.sequence] = event
                if len(pending) > max(self.limits.resume_events, 100):
                    self._skip_annotation_gap(channel)
                elif channel.annotation_gap is None:
                    channel.annotation_gap = asyncio.get_running_loop().call_later(
                        self.limits.gap_wait_seconds, self._skip_annotation_gap, channel
                    )
                return
        self._send_annotation(channel, event)
        while pending:
            following = pending.pop(channel.annotation_sequence + 1, None)
            if following is None:
                break
            self._send_annotation(channel, following)
        if not pending and channel.annotation_gap is not None:
            channel.annotation_gap.cancel()
            channel.annotation_gap = None

    def _send_annotation(self, channel: ChartChannel, event: AnnotationEvent) -> None:
        channel.annotation_sequence = event.sequence
        message = annotation_message(event)
        audience = event.audience
        others = withdrawal_message(event) if event.withdrawn else None
        for conn in tuple(channel.connections):
            if audience is None or conn.viewer == audience:
                conn.send(message)
            elif others is not None:
                conn.send(others)

    def _skip_annotation_gap(self, channel: ChartChannel) -> None:
        """An annotation change never came: send those held after it, and have every socket
        refetch the chart's annotations."""
        if channel.annotation_gap is not None:
            channel.annotation_gap.cancel()
            channel.annotation_gap = None
        held = [channel.annotation_pending[n] for n in sorted(channel.annotation_pending)]
        channel.annotation_pending.clear()
        for event in held:
            self._send_annotation(channel, event)
        message = frame_message(
            {
                "type": "resync_required",
                "chartId": channel.chart_id,
                "scope": "annotations",
                "reason": "annotation updates were lost between servers; fetch the annotations",
            }
        )
        for conn in tuple(channel.connections):
            conn.send(message)

    def _fan_out(self, channel: ChartChannel, event: ChartEvent) -> None:
        """Send each event once, in version order: events from other processes can arrive
        late, twice (already in a snapshot) or ahead of their predecessor."""
        if event.op != "chart_deleted" and channel.version >= 0:
            if event.version <= channel.version:
                return
            if event.version > channel.version + 1:
                channel.pending[event.version] = event
                if len(channel.pending) > max(self.limits.resume_events, 100):
                    self._give_up(channel)  # waiting longer would only hold more memory
                elif channel.gap is None:
                    loop = asyncio.get_running_loop()
                    channel.gap = loop.call_later(
                        self.limits.gap_wait_seconds, self._give_up, channel
                    )
                return
        pending = channel.pending
        if event.op == "chart_deleted":
            pending.clear()
        self._send_event(channel, event)
        while pending and channel.version >= 0:
            following = pending.pop(channel.version + 1, None)
            if following is None:
                break
            self._send_event(channel, following)
        if not pending and channel.gap is not None:
            channel.gap.cancel()
            channel.gap = None

    def _send_event(self, channel: ChartChannel, event: ChartEvent) -> None:
        message = event_message(event)
        version, epoch = event.version, channel.epoch
        deleted = event.op == "chart_deleted"
        behind: Message | None = None
        watched = channel.watchers.get((event.pane_id or 0, event.series_id or ""))
        bars = self._bars_at_hand(channel, event) if watched else None
        for conn in tuple(channel.connections):
            # a socket that joined after this change got it in its snapshot
            if conn.baseline < version or conn.epoch != epoch or deleted:
                known = conn.known
                if deleted:
                    conn.known = 0
                elif known >= 0 and version > known + 1:
                    # Versions after the client's snapshot never came (after the bus was
                    # interrupted, another process may not have announced its changes yet).
                    if behind is None:
                        behind = frame_message(
                            {
                                "type": "resync_required",
                                "chartId": channel.chart_id,
                                "version": version,
                                "reason": "updates were lost between servers; fetch the chart",
                            }
                        )
                    conn.known = -1
                    conn.send(behind)
                    continue
                elif version > known >= 0:
                    conn.known = version
                conn.send(message)
                if bars and conn.watching and watched is not None:
                    # the bars right behind the update, in the same turn of the socket's sender
                    for resolution, frame in bars.items():
                        if conn in watched.get(resolution, ()):
                            conn.send(frame)
        self._remember(channel, event, message)
        if watched and bars is None:
            channel.aggregating.append(event)
            if channel.bar_task is None or channel.bar_task.done():
                channel.bar_task = asyncio.create_task(self._send_bars(channel))
                channel.bar_task.add_done_callback(_report_failure)

    def _bars_at_hand(self, channel: ChartChannel, event: ChartEvent) -> dict[str, Message] | None:
        """The bars messages of ``event`` for each watched resolution, when every one can be
        had without waiting and no earlier change's bars are still on their way; else None (they
        are sent by ``_send_bars``, in order)."""
        if self.bars_now is None or (channel.bar_task is not None and not channel.bar_task.done()):
            return None
        pane_id, series_id = event.pane_id or 0, event.series_id or ""
        times: list[int] | None = None
        out: dict[str, Message] = {}
        for resolution in channel.watchers.get((pane_id, series_id), {}):
            if event.op != "upsert" or event.data is None:
                out[resolution] = bars_message(event, resolution, event.op, event.count, None)
                continue
            if times is None:
                times = [point["time"] for point in orjson.loads(event.data)]
            found = self.bars_now(channel.chart_id, pane_id, series_id, resolution, times)
            if found is None:
                return None
            out[resolution] = bars_message(event, resolution, "upsert", found[1], found[0])
        return out

    async def _send_bars(self, channel: ChartChannel) -> None:
        """Send the watched series' bars of each change in ``channel.aggregating``, in order."""
        while channel.aggregating:
            event = channel.aggregating.popleft()
            key = (event.pane_id or 0, event.series_id or "")
            for resolution, sockets in list(channel.watchers.get(key, {}).items()):
                message = await self._bars_message(channel.chart_id, event, resolution)
                for conn in tuple(sockets):
                    if conn.baseline < event.version and conn.epoch == channel.epoch:
                        conn.send(message)

    async def _bars_message(self, chart_id: str, event: ChartEvent, resolution: str) -> Message:
        """The bars ``event`` changed at ``resolution``; without data (refetch the series at
        that resolution) for a replace or delete, or when they cannot be computed."""
        data = None
        count = event.count
        if event.op == "upsert" and event.data is not None and self.bars is not None:
            times = [point["time"] for point in orjson.loads(event.data)]
            try:
                data, count = await self.bars(
                    chart_id, event.pane_id or 0, event.series_id or "", resolution, times
                )
            except ChartsError as exc:
                logger.info("no bars at %s for a change of chart %s: %s", resolution, chart_id, exc)
        op = event.op if data is not None or event.op != "upsert" else "replace"
        return bars_message(event, resolution, op, count, data)

    def _give_up(self, channel: ChartChannel) -> None:
        """The missing event never came: skip to the newest one held and have every socket of
        the chart refetch it."""
        if channel.gap is not None:
            channel.gap.cancel()
            channel.gap = None
        if not channel.pending:
            return
        version = max(channel.pending)
        channel.pending.clear()
        self._resync(channel, version, "updates were lost between servers; fetch the chart")

    def resync_all(self) -> None:
        """Events may have been lost (the shared bus was down): every socket is told to refetch
        its chart, and the next event of each chart is taken as it comes."""
        self.resync_charts(None)

    def resync_charts(self, chart_ids: list[str] | None) -> None:
        """:meth:`resync_all` for the sockets of ``chart_ids`` only (``None``: all charts)."""
        if chart_ids is None:
            channels = tuple(self._channels.values())
        else:
            channels = tuple(c for i in chart_ids if (c := self._channels.get(i)) is not None)
        for channel in channels:
            channel.pending.clear()
            if channel.gap is not None:
                channel.gap.cancel()
                channel.gap = None
            channel.reset_annotations()
            self._resync(channel, -1, "the event bus was interrupted; fetch the chart")

    def _resync(self, channel: ChartChannel, version: int, reason: str) -> None:
        channel.version = version
        channel.history.clear()
        channel.history_bytes = 0
        fields: dict[str, object] = {"type": "resync_required", "chartId": channel.chart_id}
        if version >= 0:
            fields["version"] = version
        fields["reason"] = reason
        message = frame_message(fields)
        for conn in tuple(channel.connections):
            conn.known = -1
            conn.send(message)

    def _remember(self, channel: ChartChannel, event: ChartEvent, message: Message) -> None:
        history = channel.history
        if event.op == "chart_deleted":
            history.clear()
            channel.history_bytes = 0
            channel.epoch += 1
            channel.version = 0
            channel.reset_annotations(0)  # a new chart under this id numbers them from 1
            return
        channel.version = event.version
        size = len(message["text"])
        limits = self.limits
        if history and history[-1][0] + 1 != event.version:
            history.clear()
            channel.history_bytes = 0
        if size > limits.resume_max_bytes or limits.resume_events == 0:
            history.clear()
            channel.history_bytes = 0
            return
        history.append((event.version, message))
        channel.history_bytes += size
        while (
            len(history) > limits.resume_events or channel.history_bytes > limits.resume_max_bytes
        ):
            channel.history_bytes -= len(history.popleft()[1]["text"])

    def missed(self, conn: Connection, since: int) -> list[Message] | None:
        """Every event of the socket's chart after version ``since``, in order, including those
        already sent live since the socket joined; None when they are no longer all held, or
        when ``since`` is not a version of the chart as the socket knows it (refetch)."""
        channel = self._channels.get(conn.chart_id)
        if channel is None or channel.epoch != conn.epoch or since > channel.version:
            return None
        if since == channel.version:
            return []
        history = channel.history
        if not history or history[0][0] > since + 1 or history[-1][0] != channel.version:
            return None
        return [message for _, message in islice(history, since + 1 - history[0][0], None)]

    async def recall(self, conn: Connection, since: int) -> list[Message] | None:
        """``missed``, completed from the store shared by processes when this process does not
        hold the events (the client was connected to another worker)."""
        local = self.missed(conn, since)
        if local is not None or self._recent is None:
            return local
        for _ in range(3):
            channel = self._channels.get(conn.chart_id)
            if channel is None or channel.epoch != conn.epoch or not 0 <= since <= channel.version:
                return None
            upto = channel.version
            frames = await self._recent(conn.chart_id, since, upto)
            if frames is None:
                return None
            if self._channels.get(conn.chart_id) is channel and channel.version == upto:
                return [{"type": "websocket.send", "text": frame} for frame in frames]
        return None

    def track(self, handler: asyncio.Future[None]) -> None:
        """Count a socket handler as running until it completes (``close`` waits for them)."""
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)

    async def close_sockets(
        self,
        code: int = CLOSE_GOING_AWAY,
        reason: str = "server shutting down",
        grace_seconds: float = 5.0,
    ) -> None:
        """Stop taking sockets, ask every open one to close with ``code`` and wait (up to
        ``grace_seconds``) for their handlers to finish."""
        self.closed = True
        for conn in self.connections():
            conn.close(code, reason)
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=grace_seconds)

    async def close(self, grace_seconds: float = 5.0) -> None:
        """Close every socket with 1001, stop the pings and drop every subscription."""
        await self.close_sockets(grace_seconds=grace_seconds)
        if self._liveness is not None:
            self._liveness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._liveness
        for channel in tuple(self._channels.values()):
            self._drop(channel)

    async def _keep_alive(self) -> None:
        """Ping every socket each ping interval; close those silent for the timeout."""
        limits = self.limits
        loop = asyncio.get_running_loop()
        tick = min(limits.ping_interval_seconds, limits.timeout_seconds / 4)
        next_ping = loop.time() + limits.ping_interval_seconds
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            silent_since = now - limits.timeout_seconds
            ping = None
            if now >= next_ping:
                ping = ping_message()
                next_ping = now + limits.ping_interval_seconds
            idle = f"idle timeout: nothing received for {limits.timeout_seconds:g} s"
            for conn in self.connections():
                if conn.last_seen < silent_since:
                    conn.close(CLOSE_IDLE, idle)
                elif ping is not None:
                    conn.send(ping)


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("sending bars to watching sockets failed", exc_info=task.exception())

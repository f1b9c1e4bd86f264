"""The Redis event bus: every process of every replica hears every committed change.

A change is delivered to the publishing process's own listeners at once (no round trip, and its
own sockets keep updating while Redis is down), then published on one Redis channel; each other
process receives it there and fans it out to its own listeners. Messages from the process itself
are recognized by their origin id and skipped, so every process delivers each change once.

Annotation changes travel on the same channel, so that with the chart changes they reach every
process in one order; they carry their own sequence and are not kept for ``resume`` (a client
that reconnects refetches the annotations it shows).

Each chart's recent ``data_update`` frames also go to a capped Redis stream, so a socket that
reconnects to another worker can ``resume`` from it (:meth:`RedisEventBus.recent`).

Redis going away does not stop the service: publishing is skipped while the subscriber is
disconnected, the subscriber reconnects with exponential backoff, and once it is back every
``on_reset`` callback runs, because changes made meanwhile were not heard (caches are stale,
sockets must resync). The charts whose changes this process could not publish are named in its
next heartbeat, so that the other processes stop trusting their copies of them too.

Each process publishes a heartbeat on the same channel every ``heartbeat_seconds`` and listens
for its own. Redis delivers a channel's messages in the order it received them, so hearing its
own heartbeat tells a process that every change published before it has been delivered:
:meth:`RedisEventBus.current` is true while that happened within the last two and a half
intervals, and caches kept by the bus can then be trusted without asking the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..annotations.events import AnnotationEvent
from ..charts.events import ChartEvent
from .bus import BusEvent, InProcessEventBus
from .protocol import event_message

logger = logging.getLogger(__name__)

CHANNEL: Final = "lwc:events"
STREAM_PREFIX: Final = "lwc:recent:"
BACKOFF_FIRST_SECONDS: Final = 0.1
BACKOFF_MAX_SECONDS: Final = 5.0
_WARN_EVERY_SECONDS: Final = 30.0
#: Heartbeats missed (in intervals) before the bus is no longer current.
_SILENT_INTERVALS: Final = 2.5
#: Charts named in one heartbeat at most; beyond, the heartbeat says "all of them".
_LOST_CHARTS_MAX: Final = 1000
_HEARTBEAT_PREFIX: Final = b'{"hb"'

ResetCallback = Callable[[], None]
LostCallback = Callable[[list[str] | None], None]


def encode_heartbeat(origin: str, lost: list[str] | None, lost_all: bool) -> bytes:
    """A heartbeat: the origin, and the charts whose changes it could not publish (``lost``;
    ``lost_all`` when it lost track of which)."""
    head: dict[str, Any] = {"hb": 1, "o": origin}
    if lost_all:
        head["lostAll"] = True
    elif lost:
        head["lost"] = lost
    return orjson.dumps(head)


ChartListener = Callable[[ChartEvent], None]


def encode_event(event: BusEvent, origin: str) -> bytes:
    """One line of JSON fields, then the upsert's points or the annotation as they were encoded
    (not re-encoded)."""
    if isinstance(event, AnnotationEvent):
        return _encode_annotation(event, origin)
    head: dict[str, Any] = {"o": origin, "c": event.chart_id, "v": event.version, "op": event.op}
    if event.series_id is not None:
        head["p"] = event.pane_id
        head["s"] = event.series_id
        head["n"] = event.count
    if event.options is not None:
        head["opt"] = event.options
    if event.total is not None:
        head["t"] = event.total
    # orjson never writes a raw newline, so the first one ends the header.
    return orjson.dumps(head) + b"\n" + (event.data or b"")


def _encode_annotation(event: AnnotationEvent, origin: str) -> bytes:
    head: dict[str, Any] = {
        "o": origin,
        "k": "a",
        "c": event.chart_id,
        "q": event.sequence,
        "op": event.op,
        "id": event.annotation_id,
        "v": event.version,
    }
    if event.audience is not None:
        head["aud"] = event.audience
    if event.withdrawn:
        head["w"] = True
    return orjson.dumps(head) + b"\n" + (event.data or b"")


def decode_event(payload: bytes) -> tuple[str, BusEvent]:
    """The origin and the event of a payload written by :func:`encode_event`."""
    line, _, data = payload.partition(b"\n")
    head = orjson.loads(line)
    if head.get("k") == "a":
        return head["o"], AnnotationEvent(
            chart_id=head["c"],
            sequence=head["q"],
            op=head["op"],
            annotation_id=head["id"],
            version=head["v"],
            audience=head.get("aud"),
            withdrawn=head.get("w", False),
            data=data or None,
        )
    event = ChartEvent(
        chart_id=head["c"],
        version=head["v"],
        op=head["op"],
        pane_id=head.get("p"),
        series_id=head.get("s"),
        count=head.get("n", 0),
        data=data if head["op"] == "upsert" else None,
        options=head.get("opt"),
        total=head.get("t"),
    )
    return head["o"], event


class RedisEventBus(InProcessEventBus):
    """Listeners of this process, fed by this process's changes and by Redis pub/sub.

    ``recent_events`` caps each chart's stream (0: no stream, ``recent`` always misses);
    ``recent_seconds`` is how long a stream outlives its chart's last change.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        recent_events: int = 500,
        recent_max_bytes: int = 16 * 2**20,
        recent_seconds: float = 60.0,
        heartbeat_seconds: float = 1.0,
    ) -> None:
        super().__init__()
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._redis: Redis = Redis.from_url(
            redis_url,
            socket_connect_timeout=1.0,
            socket_timeout=2.0,
            client_name=f"charts-bus-{os.getpid()}",
        )
        self._recent_events = recent_events
        self._recent_max_bytes = recent_max_bytes
        self._recent_ms = max(1, int(recent_seconds * 1000))
        self._remote: list[ChartListener] = []
        self._resets: list[ResetCallback] = []
        self._lost_listeners: list[LostCallback] = []
        self._reader: asyncio.Task[None] | None = None
        self._beater: asyncio.Task[None] | None = None
        self.heartbeat_seconds = heartbeat_seconds
        self._silent_after = heartbeat_seconds * _SILENT_INTERVALS
        self._heard_at = -math.inf
        # Charts with a change this process could not publish, for the next heartbeat.
        self._unannounced: set[str] = set()
        self._unannounced_all = False
        self._subscribed = asyncio.Event()
        self.connected = False
        self._lost = False
        self._warned_at = 0.0

    @property
    def redis(self) -> Redis:
        return self._redis

    def on_remote(self, listener: ChartListener) -> None:
        """Call ``listener`` with every chart change made by another process (any chart; not
        the annotation changes, which reach the chart's subscribers only)."""
        self._remote.append(listener)

    def on_reset(self, callback: ResetCallback) -> None:
        """Call ``callback`` when the subscription comes back after a loss (changes were missed)."""
        self._resets.append(callback)

    def on_lost(self, callback: LostCallback) -> None:
        """Call ``callback`` with the charts another process changed without announcing the
        change (``None``: any chart may be concerned)."""
        self._lost_listeners.append(callback)

    def current(self) -> bool:
        """Whether every change published by any process up to a moment ago (at most about
        two and a half heartbeat intervals) has been delivered to this process."""
        return self.connected and time.monotonic() - self._heard_at <= self._silent_after

    async def start(self, wait_seconds: float = 5.0) -> None:
        """Start the subscriber; waits up to ``wait_seconds`` for it (Redis down: it keeps
        retrying in the background and the service starts anyway)."""
        self._reader = asyncio.create_task(self._read(), name="redis-event-bus")
        self._beater = asyncio.create_task(self._beat(), name="redis-event-bus-heartbeat")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), wait_seconds)
        if not self.connected:
            logger.warning("Redis is not reachable yet; live updates stay in this process")

    async def close(self) -> None:
        for task in (self._beater, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await super().close()
        await self._redis.aclose()

    async def ping(self) -> dict[str, Any]:
        """Readiness: Redis answers and the subscriber is connected; raises otherwise."""
        await self._redis.ping()
        if not self.connected:
            raise ConnectionError("the event subscriber is reconnecting")
        return {"subscribed": True}

    async def publish(self, event: BusEvent) -> None:
        await super().publish(event)
        if not self.connected:
            self._lost = True  # peers miss this one: they resync when the bus is back
            self._unannounced_change(event.chart_id)
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.publish(CHANNEL, encode_event(event, self.origin))
                if isinstance(event, ChartEvent):
                    self._remember(pipe, event)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._lost = True
            self._unannounced_change(event.chart_id)
            self._warn(f"could not publish chart {event.chart_id} v{event.version}: {exc}")

    def _unannounced_change(self, chart_id: str) -> None:
        if len(self._unannounced) >= _LOST_CHARTS_MAX:
            self._unannounced_all = True
        else:
            self._unannounced.add(chart_id)

    async def _beat(self) -> None:
        """Publish a heartbeat every interval, naming the charts with unannounced changes."""
        while True:
            if self.connected:
                lost, lost_all = sorted(self._unannounced), self._unannounced_all
                try:
                    await self._redis.publish(
                        CHANNEL, encode_heartbeat(self.origin, lost, lost_all)
                    )
                except (RedisError, OSError) as exc:
                    self._warn(f"could not publish a heartbeat: {exc}")
                else:
                    self._unannounced.difference_update(lost)
                    self._unannounced_all = self._unannounced_all and not lost_all
            await asyncio.sleep(self.heartbeat_seconds)

    def _remember(self, pipe: Any, event: ChartEvent) -> None:
        key = STREAM_PREFIX + event.chart_id
        if event.op == "chart_deleted":
            pipe.delete(key)
            return
        if self._recent_events <= 0:
            return
        text = event_message(event)["text"]
        if len(text) > self._recent_max_bytes:
            # too big to keep: a resume across it must refetch, so the stream starts over
            pipe.delete(key)
            return
        pipe.xadd(key, {"v": event.version, "m": text}, maxlen=self._recent_events)
        pipe.pexpire(key, self._recent_ms)

    async def claim(self, name: str, seconds: float) -> bool:
        """Take the lock ``name`` for ``seconds`` unless another process holds it (SET NX PX);
        False when Redis cannot be reached, so that a task guarded by it waits for Redis."""
        try:
            taken = await self._redis.set(
                f"lwc:lock:{name}", self.origin, nx=True, px=max(1, int(seconds * 1000))
            )
        except (RedisError, OSError) as exc:
            self._warn(f"could not take the lock {name}: {exc}")
            return False
        return bool(taken)

    async def recent(self, chart_id: str, since: int, upto: int) -> list[str] | None:
        """The frames of versions ``since + 1 .. upto`` of the chart, in order; None when the
        stream no longer holds all of them (or Redis cannot say)."""
        if upto <= since:
            return []
        try:
            entries = await self._redis.xrevrange(
                STREAM_PREFIX + chart_id, count=self._recent_events
            )
        except (RedisError, OSError) as exc:
            self._warn(f"could not read the recent events of chart {chart_id}: {exc}")
            return None
        frames: dict[int, str] = {}
        for _, fields in entries or ():
            if not fields:
                continue
            version = int(fields[b"v"])
            if since < version <= upto:
                text = fields[b"m"]
                frames[version] = text.decode() if isinstance(text, bytes) else text
        if len(frames) != upto - since:
            return None
        return [frames[v] for v in range(since + 1, upto + 1)]

    async def _read(self) -> None:
        backoff = BACKOFF_FIRST_SECONDS
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self.connected = True
                self._subscribed.set()
                backoff = BACKOFF_FIRST_SECONDS
                if self._lost:
                    self._lost = False
                    logger.warning("Redis event bus is back; resynchronizing")
                    self._reset()
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self._deliver(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.connected:
                    logger.warning("Redis event bus lost: %s; reconnecting", exc)
                self.connected = False
                self._lost = True
                self._subscribed.set()  # start() stops waiting: the service runs without it
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    def _deliver(self, payload: bytes) -> None:
        if payload.startswith(_HEARTBEAT_PREFIX):
            self._heartbeat(payload)
            return
        try:
            origin, event = decode_event(payload)
        except Exception:
            logger.exception("ignoring an event the bus cannot read")
            return
        if origin == self.origin:
            return
        if isinstance(event, ChartEvent):
            for remote in self._remote:
                try:
                    remote(event)
                except Exception:
                    logger.exception("remote event listener failed for chart %s", event.chart_id)
        for listener in tuple(self._listeners.get(event.chart_id, ())):
            try:
                listener(event)
            except Exception:
                logger.exception("event listener failed for chart %s", event.chart_id)

    def _heartbeat(self, payload: bytes) -> None:
        try:
            head = orjson.loads(payload)
            origin = head["o"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            logger.warning("ignoring a heartbeat the bus cannot read")
            return
        if origin == self.origin:
            self._heard_at = time.monotonic()
            return
        lost: list[str] | None
        if head.get("lostAll"):
            lost = None
        elif isinstance(head.get("lost"), list):
            lost = [chart_id for chart_id in head["lost"] if isinstance(chart_id, str)]
        else:
            return
        for callback in self._lost_listeners:
            try:
                callback(lost)
            except Exception:
                logger.exception("event bus lost-changes callback failed")

    def _reset(self) -> None:
        for callback in self._resets:
            try:
                callback()
            except Exception:
                logger.exception("event bus reset callback failed")

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_SECONDS:
            self._warned_at = now
            logger.warning("%s", message)

"""The annotations service: who may see and change which annotation, limits, versions.

Nothing here knows about HTTP or SQL. The caller is a :class:`Principal`; an annotation's owner is
its ``sub`` (``apikey:<name>`` for an API key, so that a key cannot pass for a user of the same
name). ``private`` annotations exist only for their owner: to anyone else they are absent (404,
never 403, so that their existence does not leak). ``chart`` annotations are read by anyone who
may read the chart and changed by anyone who may write it. Drawing a private annotation needs
only read access: a viewer may keep their own drawings on a chart they cannot change.

Each change of an annotation raises its ``version``; a PATCH names the version it read and fails
with 409 ``ANNOTATION_CONFLICT`` when that is not the current one. Writes of one chart are
serialized in this process by a lock and across processes by the store, which numbers them; each
committed change is then published on the bus as an :class:`AnnotationEvent` with that number.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from ..auth import WRITE, Principal
from ..charts.events import ChartEvent
from ..charts.service import ChartsService, check_id
from ..errors import Forbidden
from ..locks import KeyedLocks
from ..realtime.bus import BusEvent, EventBus, Unsubscribe
from .cache import AnnotationCache
from .errors import AnnotationConflict, AnnotationNotFound
from .events import AnnotationEvent, AnnotationOp
from .repository import AnnotationQuery, AnnotationStore
from .schemas import (
    AnnotationRecord,
    apply_patch,
    build_record,
    check_identifier,
    parse_draft,
    parse_patch,
)

#: The fields of a marker as ``createSeriesMarkers`` takes them, from the annotation's style.
_MARKER_STYLE = ("position", "shape", "color")


class AnnotationsService:
    """Annotations of the charts of ``charts``, kept in ``store``.

    Example::

        service = AnnotationsService(charts, bus, MemoryAnnotations())
        drawn = await service.create("demo", ANONYMOUS, {"kind": "trend_line", "points": [
            {"time": 1_700_000_000, "price": 100}, {"time": 1_700_086_400, "price": 110}]})
        listing = await service.listing("demo", ANONYMOUS, start=1_699_000_000)

    ``forget_with_chart`` (memory mode): the store drops a chart's annotations when the chart is
    deleted, heard on ``bus``; a database deletes them with the chart by itself. ``cache``
    (database mode) answers listings from this process's copies of the annotations.
    """

    def __init__(
        self,
        charts: ChartsService,
        bus: EventBus,
        store: AnnotationStore,
        *,
        max_per_chart: int = 10_000,
        max_bytes: int = 16 * 1024,
        forget_with_chart: bool = False,
        cache: AnnotationCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._charts = charts
        self._bus = bus
        self._store = store
        self._reader: AnnotationCache | AnnotationStore = cache or store
        self.max_per_chart = max_per_chart
        self.max_bytes = max_bytes
        self._forget_with_chart = forget_with_chart
        self._clock = clock
        self._locks = KeyedLocks()
        self._watched: dict[str, Unsubscribe] = {}

    async def close(self) -> None:
        for unsubscribe in self._watched.values():
            unsubscribe()
        self._watched.clear()

    # ---------------------------------------------------------------- reads

    async def get(self, chart_id: str, annotation_id: str, caller: Principal) -> AnnotationRecord:
        record = await self._store.get(chart_id, check_identifier(annotation_id, "annotationId"))
        if record is None or not record.visible_to(caller.sub):
            await self._charts.get_chart_or_raise(chart_id)
            raise AnnotationNotFound(chart_id, annotation_id)
        return record

    async def listing(
        self,
        chart_id: str,
        caller: Principal,
        *,
        start: int | None = None,
        end: int | None = None,
        pane_id: int | None = None,
        series_id: str | None = None,
    ) -> list[bytes]:
        """The JSON of the caller's annotations of the chart whose anchors' time span overlaps
        ``[start, end)``, ordered by their first time."""
        await self._charts.get_chart_or_raise(chart_id)
        query = AnnotationQuery(
            chart_id, caller.sub, start=start, end=end, pane_id=pane_id, series_id=series_id
        )
        return await self._reader.query(query)

    async def sequence(self, chart_id: str) -> int:
        """The number of the chart's last annotation change (0 before the first, or when there
        is no such chart): what a socket joining now has seen."""
        return await self._reader.sequence(chart_id)

    async def markers(
        self,
        chart_id: str,
        pane_id: int,
        series_id: str,
        caller: Principal,
        *,
        start: int | None = None,
        end: int | None = None,
        resolution: str | None = None,
    ) -> list[dict[str, Any]]:
        """The caller's markers of one series in ``[start, end)`` as ``createSeriesMarkers``
        takes them, sorted by time. With ``resolution``, each time is that of the bar it is
        drawn on, as the series' bars at that resolution carry it (by the series' market; one
        outside the sessions on the nearest session's bar: ``ChartsService.snap_to_bars``);
        ``start`` and ``end`` still select markers by their own time."""
        check_id(series_id, "seriesId")
        await self._charts.get_chart_or_raise(chart_id)
        query = AnnotationQuery(
            chart_id,
            caller.sub,
            start=start,
            end=end,
            pane_id=pane_id,
            series_id=series_id,
            kind="marker",
        )
        markers = []
        for body in await self._reader.query(query):
            wire = orjson.loads(body)
            point = wire["points"][0]
            style = wire["style"]
            marker = {"id": wire["annotationId"], "time": point["time"]}
            marker |= {name: style[name] for name in _MARKER_STYLE}
            marker["text"] = wire.get("text", "")
            if "size" in style:
                marker["size"] = style["size"]
            if "price" in point:
                marker["price"] = point["price"]
            markers.append(marker)
        if resolution is not None:
            times = [marker["time"] for marker in markers]
            snapped = await self._charts.snap_to_bars(
                chart_id, pane_id, series_id, resolution, times
            )
            for marker, time in zip(markers, snapped, strict=True):
                marker["time"] = time
        markers.sort(key=lambda m: m["time"])
        return markers

    # ---------------------------------------------------------------- writes

    async def create(
        self, chart_id: str, caller: Principal, body: dict[str, Any]
    ) -> AnnotationRecord:
        draft = parse_draft(body)
        if draft.visibility == "chart":
            caller.check(chart_id, WRITE)
        now = self._clock()
        record = build_record(
            chart_id,
            draft.annotation_id or uuid.uuid4().hex,
            draft,
            owner=caller.sub,
            version=1,
            created_at=now,
            updated_at=now,
            max_bytes=self.max_bytes,
        )
        async with self._locks.hold(chart_id):
            await self._charts.get_chart_or_raise(chart_id)
            sequence = await self._store.insert(record, self.max_per_chart)
            self._watch(chart_id)
            await self._announce(record, sequence, "create")
        return record

    async def update(
        self, chart_id: str, annotation_id: str, caller: Principal, body: dict[str, Any]
    ) -> AnnotationRecord:
        patch = parse_patch(body)
        async with self._locks.hold(chart_id):
            current = await self._changeable(chart_id, annotation_id, caller)
            if "visibility" in patch.changes and patch.changes["visibility"] != current.visibility:
                if caller.sub != current.owner:
                    raise Forbidden("Only the owner of an annotation may change its visibility.")
                caller.check(chart_id, WRITE)  # shown to the chart, or taken from it
            if current.version != patch.version:
                raise _conflict(current, patch.version)
            draft = apply_patch(current, patch.changes)
            record = build_record(
                chart_id,
                current.annotation_id,
                draft,
                owner=current.owner,
                version=current.version + 1,
                created_at=current.created_at,
                updated_at=max(self._clock(), current.updated_at),
                max_bytes=self.max_bytes,
            )
            sequence = await self._store.replace(record, current.version)
            if sequence is None:
                raise AnnotationConflict(
                    f"Annotation '{annotation_id}' changed while this update was applied; "
                    "read it again."
                )
            withdrawn = current.visibility == "chart" and record.visibility == "private"
            await self._announce(record, sequence, "update", withdrawn=withdrawn)
        return record

    async def delete(
        self, chart_id: str, annotation_id: str, caller: Principal, version: int | None = None
    ) -> None:
        """Delete the annotation; with ``version``, only if it is still that version."""
        async with self._locks.hold(chart_id):
            current = await self._changeable(chart_id, annotation_id, caller)
            if version is not None and current.version != version:
                raise _conflict(current, version)
            sequence = await self._store.delete(chart_id, annotation_id, current.version)
            if sequence is None:
                raise AnnotationConflict(
                    f"Annotation '{annotation_id}' changed while it was being deleted; read it "
                    "again."
                )
            await self._announce(current, sequence, "delete")

    async def _changeable(
        self, chart_id: str, annotation_id: str, caller: Principal
    ) -> AnnotationRecord:
        """The annotation as stored now, if the caller may change it (404 when they may not
        see it, 403 when they may see but not write it)."""
        current = await self.get(chart_id, annotation_id, caller)
        if current.visibility == "chart":
            caller.check(chart_id, WRITE)
        return current

    async def _announce(
        self,
        record: AnnotationRecord,
        sequence: int,
        op: AnnotationOp,
        *,
        withdrawn: bool = False,
    ) -> None:
        """Publish a committed change (under the chart's lock: in sequence order)."""
        deleted = op == "delete"
        await self._bus.publish(
            AnnotationEvent(
                chart_id=record.chart_id,
                sequence=sequence,
                op=op,
                annotation_id=record.annotation_id,
                version=record.version + 1 if deleted else record.version,
                audience=record.owner if record.visibility == "private" else None,
                withdrawn=withdrawn,
                data=None if deleted else record.body,
            )
        )

    # ---------------------------------------------------------------- charts going away

    def _watch(self, chart_id: str) -> None:
        if not self._forget_with_chart or chart_id in self._watched:
            return

        def on_chart_event(event: BusEvent) -> None:
            if isinstance(event, ChartEvent) and event.op == "chart_deleted":
                self._store.forget(chart_id)
                unsubscribe = self._watched.pop(chart_id, None)
                if unsubscribe is not None:
                    unsubscribe()

        self._watched[chart_id] = self._bus.subscribe(chart_id, on_chart_event)


def _conflict(current: AnnotationRecord, version: int) -> AnnotationConflict:
    return AnnotationConflict(
        f"Annotation '{current.annotation_id}' is at version {current.version}, not {version}: "
        "it changed since you read it. Read it again and reapply your change."
    )

"""The charts service: charts, panes and series, their versions, and the events they emit.

Business rules live here; nothing in this module knows about HTTP. Each chart has its own
``asyncio.Lock`` serializing its writes, created and dropped with the chart, so writers of
different charts never wait for each other. Validation and encoding of a batch happen before the
lock is taken, and a batch is fully checked before anything is stored.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import ChartNotFound, InvalidRequest, SeriesNotFound, SeriesTypeConflict
from ..realtime.bus import EventBus
from .events import ChartEvent, EventOp
from .points import EncodedPoints, normalize_series_type, normalize_time, prepare_points
from .store import Chunk, SeriesStore

ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MAX_PANE: Final = 100
MAX_CHUNK: Final = 10_000


def check_id(value: str, what: str) -> str:
    if not ID_PATTERN.fullmatch(value) or ".." in value:
        raise InvalidRequest(
            f"{what} {value[:140]!r} is invalid: use 1-128 letters, digits, '_', '-' or '.', "
            "without '..'."
        )
    return value


def check_pane(pane_id: object) -> int:
    if type(pane_id) is not int or not 0 <= pane_id <= MAX_PANE:
        raise InvalidRequest(f"paneId must be an integer from 0 to {MAX_PANE}; got {pane_id!r}.")
    return pane_id


def check_count(count: object) -> int:
    if type(count) is not int or not 1 <= count <= MAX_CHUNK:
        raise InvalidRequest(f"count must be an integer from 1 to {MAX_CHUNK}; got {count!r}.")
    return count


@dataclass(slots=True)
class Series:
    pane_id: int
    series_id: str
    series_type: str
    options: dict[str, Any]
    store: SeriesStore


@dataclass(slots=True)
class Chart:
    chart_id: str
    options: dict[str, Any]
    created_at: float
    updated_at: float
    version: int = 0
    series: dict[tuple[int, str], Series] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def get_series_or_raise(self, pane_id: int, series_id: str) -> Series:
        try:
            return self.series[(pane_id, series_id)]
        except KeyError:
            check_id(series_id, "seriesId")
            raise SeriesNotFound(self.chart_id, pane_id, series_id) from None


@dataclass(frozen=True, slots=True)
class SeriesView:
    """A series as a chart first loads it: all points, or the newest chunk when it is large."""

    series: Series
    chunk: Chunk
    chunked: bool


@dataclass(frozen=True, slots=True)
class UpsertResult:
    count: int
    total_count: int
    version: int


class ChartsService:
    """Charts held in memory, announced on ``bus``.

    Example::

        service = ChartsService(InProcessEventBus())
        await service.replace_series("demo", 0, "price", "line", [{"time": 1, "value": 2.5}])
        chunk = await service.history("demo", 0, "price", before_time=None, count=500)
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        default_chunk_size: int = 500,
        chunk_size_threshold: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bus = bus
        self._charts: dict[str, Chart] = {}
        self._clock = clock
        self.default_chunk_size = default_chunk_size
        self.chunk_size_threshold = chunk_size_threshold

    def charts(self) -> Iterable[Chart]:
        return self._charts.values()

    def get_chart_or_raise(self, chart_id: str) -> Chart:
        try:
            return self._charts[chart_id]
        except KeyError:
            check_id(chart_id, "chartId")
            raise ChartNotFound(chart_id) from None

    def _get_or_create(self, chart_id: str) -> Chart:
        chart = self._charts.get(chart_id)
        if chart is None:
            check_id(chart_id, "chartId")
            now = self._clock()
            chart = self._charts[chart_id] = Chart(chart_id, {}, now, now)
        return chart

    async def _commit(self, chart: Chart, op: EventOp, **fields: Any) -> int:
        chart.version += 1
        chart.updated_at = self._clock()
        await self._bus.publish(ChartEvent(chart.chart_id, chart.version, op, **fields))
        return chart.version

    async def create_chart(
        self, chart_id: str, options: dict[str, Any] | None = None
    ) -> tuple[Chart, bool]:
        """Create the chart, or return it as it is; given ``options`` replace the stored ones."""
        check_id(chart_id, "chartId")
        created = chart_id not in self._charts
        chart = self._get_or_create(chart_id)
        if options is not None and options != chart.options:
            async with chart.lock:
                chart.options = options
                await self._commit(chart, "options", options=options)
        return chart, created

    async def delete_chart(self, chart_id: str) -> None:
        chart = self.get_chart_or_raise(chart_id)
        async with chart.lock:
            if self._charts.get(chart_id) is not chart:
                raise ChartNotFound(chart_id)
            del self._charts[chart_id]
            await self._commit(chart, "chart_deleted")

    async def replace_series(
        self,
        chart_id: str,
        pane_id: int,
        series_id: str,
        series_type: str,
        data: object,
        options: dict[str, Any] | None = None,
        *,
        from_json: bool = False,
    ) -> Series:
        """Replace the whole series (creating chart and series when missing)."""
        check_id(chart_id, "chartId")
        check_id(series_id, "seriesId")
        check_pane(pane_id)
        series_type = normalize_series_type(series_type)
        points = await _prepare(data, series_type, from_json)
        chart = self._get_or_create(chart_id)
        async with chart.lock:
            series = Series(pane_id, series_id, series_type, options or {}, SeriesStore(points))
            chart.series[(pane_id, series_id)] = series
            await self._commit(
                chart, "replace", pane_id=pane_id, series_id=series_id, count=len(points)
            )
        return series

    async def upsert_points(
        self,
        chart_id: str,
        pane_id: int,
        series_id: str,
        data: object,
        *,
        series_type: str | None = None,
        from_json: bool = False,
    ) -> UpsertResult:
        """Append new points, replace points at stored times, insert corrections in order."""
        chart = self.get_chart_or_raise(chart_id)
        series = chart.get_series_or_raise(check_pane(pane_id), series_id)
        if series_type is not None and normalize_series_type(series_type) != series.series_type:
            raise SeriesTypeConflict(
                f"Series '{series_id}' is a {series.series_type} series; an update cannot change "
                f"it to {series_type}. Replace the series with POST to change its type."
            )
        points = await _prepare(data, series.series_type, from_json)
        async with chart.lock:
            if chart.series.get((pane_id, series_id)) is not series:
                raise SeriesNotFound(chart_id, pane_id, series_id)
            series.store.upsert(points)
            version = await self._commit(
                chart,
                "upsert",
                pane_id=pane_id,
                series_id=series_id,
                count=len(points),
                data=points.json_array(),
            )
        return UpsertResult(len(points), len(series.store), version)

    async def delete_series(self, chart_id: str, pane_id: int, series_id: str) -> None:
        chart = self.get_chart_or_raise(chart_id)
        async with chart.lock:
            chart.get_series_or_raise(pane_id, series_id)
            del chart.series[(pane_id, series_id)]
            await self._commit(chart, "delete", pane_id=pane_id, series_id=series_id)

    async def get_series(self, chart_id: str, pane_id: int, series_id: str) -> SeriesView:
        series = self.get_chart_or_raise(chart_id).get_series_or_raise(pane_id, series_id)
        return self._view(series)

    async def get_chart(self, chart_id: str) -> tuple[Chart, list[SeriesView]]:
        chart = self.get_chart_or_raise(chart_id)
        return chart, [self._view(s) for s in chart.series.values()]

    def _view(self, series: Series) -> SeriesView:
        store = series.store
        if len(store) >= self.chunk_size_threshold:
            return SeriesView(series, store.newest(self.default_chunk_size), True)
        return SeriesView(series, store.newest(max(len(store), 1)), False)

    async def history(
        self,
        chart_id: str,
        pane_id: int,
        series_id: str,
        *,
        before_time: object = None,
        after_time: object = None,
        count: int | None = None,
    ) -> Chunk:
        """Up to ``count`` points strictly before ``before_time`` or strictly after
        ``after_time``; with neither, the newest points."""
        count = self.default_chunk_size if count is None else check_count(count)
        store = self.get_chart_or_raise(chart_id).get_series_or_raise(pane_id, series_id).store
        if before_time is not None and after_time is not None:
            raise InvalidRequest("Give beforeTime or afterTime, not both.")
        if before_time is not None:
            return store.chunk_before(_query_time(before_time, "beforeTime"), count)
        if after_time is not None:
            return store.chunk_after(_query_time(after_time, "afterTime"), count)
        return store.newest(count)


def _query_time(value: object, name: str) -> int:
    try:
        return normalize_time(value)
    except Exception as exc:
        raise InvalidRequest(f"{name}: {getattr(exc, 'detail', exc)}") from None


_THREAD_ABOVE = 50_000


async def _prepare(data: object, series_type: str, from_json: bool) -> EncodedPoints:
    """Validate off the event loop when the batch is large, so other requests keep moving."""
    if isinstance(data, list) and len(data) > _THREAD_ABOVE:
        return await asyncio.to_thread(prepare_points, data, series_type, from_json=from_json)
    return prepare_points(data, series_type, from_json=from_json)

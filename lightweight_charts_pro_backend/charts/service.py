"""The charts service: charts, panes and series, their versions, and the events they emit.

Business rules live here; nothing in this module knows about HTTP or SQL. Each chart has its own
``asyncio.Lock`` serializing its writes, created and dropped with the chart, so writers of
different charts never wait for each other. Validation and encoding of a batch happen before the
lock is taken, and a batch is fully checked before anything is stored.

Without a repository the charts live in memory only. With one (``ENABLE_PERSISTENCE=true``) the
database is the source of truth: a write commits before the call returns, and only then the
in-memory state changes and the event goes out. Charts are read from the database on first use;
a series' points are loaded into a ``SeriesStore`` in the background once a read or write touches
it, within the ``SeriesCache`` budget, and until then (or once evicted) reads are keyset queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from array import array
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar, overload

import numpy as np
import orjson

from ..errors import (
    ChartNotFound,
    ChartsError,
    DatabaseUnavailable,
    InvalidRequest,
    SeriesNotFound,
    SeriesTypeConflict,
)
from ..locks import KeyedLocks
from ..realtime.bus import EventBus
from .arrays import ArrayBars, ArrayWindow
from .bars import BarCache, Frames, array_bars, build_bars
from .cache import SAMPLE_STEP, SeriesCache, TimeSamples
from .events import ChartEvent, EventOp
from .market import Market, parse_market
from .points import (
    OHLC_TYPES,
    EncodedPoints,
    StagedPoints,
    normalize_series_type,
    normalize_time,
    prepare_points,
    stage_points,
)
from .repository import (
    ChartRecord,
    ChartsRepository,
    ChartSummary,
    SeriesMarket,
    SeriesRecord,
    Versioned,
    encoded_from_rows,
)
from .store import Chunk, SeriesStore
from .timeframes import (
    Columns,
    Kind,
    Resolution,
    aggregate,
    blocks_of,
    bucket_keys,
    check_aggregatable,
    check_aggregation,
    coarsest_fit,
    encode_bars,
    extremes,
    parse_resolution,
    snap_to_bars,
    value_rule,
)

logger = logging.getLogger(__name__)

ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MAX_PANE: Final = 100
MAX_CHUNK: Final = 10_000
#: Charts removed per cleanup pass at most; the next pass takes the rest.
EXPIRE_BATCH: Final = 1000
#: How long a read carrying ``min_version`` waits for the event bus to bring its chart up to
#: that version before it reads the database instead.
CATCH_UP_SECONDS: Final = 0.1
#: Charts whose versions one query of :meth:`ChartsService.check_versions` compares.
_VERSION_BATCH: Final = 500
#: The most recently used charts :meth:`ChartsService.warm` loads, at most.
WARM_CHARTS: Final = 50
#: Points a range view returns at most, by default and at the most.
DEFAULT_RANGE_POINTS: Final = 2000
MAX_RANGE_POINTS: Final = 20_000

Query = Literal["newest", "before", "after"]
T = TypeVar("T")


def is_valid_id(value: str) -> bool:
    """Whether ``value`` may name a chart or a series: 1-128 of ``A-Z a-z 0-9 _ - .``, without
    ``..`` and not made of dots alone (``.`` is a path's "here" as ``..`` is its "up")."""
    return ID_PATTERN.fullmatch(value) is not None and ".." not in value and value.strip(".") != ""


def check_id(value: str, what: str) -> str:
    if not is_valid_id(value):
        raise InvalidRequest(
            f"{what} {value[:140]!r} is invalid: use 1-128 letters, digits, '_', '-' or '.', "
            "without '..' and not only dots."
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


@dataclass(slots=True, eq=False)
class Series:
    """A series; ``store`` holds its points in memory, or is None while they are only in the
    database (persistence on, not loaded yet or evicted). ``count`` is always the point count."""

    pane_id: int
    series_id: str
    series_type: str
    options: dict[str, Any]
    store: SeriesStore | None
    count: int = 0
    first_time: int | None = None
    last_time: int | None = None
    key: int = 0
    samples: TimeSamples | None = None
    loading: bool = False
    # Upserts made while the series loads, replayed onto the loaded store.
    backlog: list[EncodedPoints] = field(default_factory=list)
    market: Market | None = None
    aggregation: str | None = None

    def record(self) -> SeriesRecord:
        return SeriesRecord(
            self.key,
            self.pane_id,
            self.series_id,
            self.series_type,
            self.options,
            self.count,
            self.first_time,
            self.last_time,
            None if self.market is None else self.market.to_json(),
            self.aggregation,
        )


@dataclass(slots=True, eq=False)
class Chart:
    chart_id: str
    options: dict[str, Any]
    created_at: float
    updated_at: float
    version: int = 0
    series: dict[tuple[int, str], Series] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    accessed_at: float = 0.0
    # Odd while a write is between its database commit and its memory update; readers that
    # query the database compare it before and after (see ChartsService._db_chunk).
    generation: int = 0
    # Memory may disagree with the database (a write failed mid-way, or another process wrote):
    # reload before relying on it. ``marks`` counts the times it was found so, so that a reload
    # that overlapped a newer finding leaves the chart stale.
    stale: bool = False
    marks: int = 0

    def mark_stale(self) -> None:
        self.stale = True
        self.marks += 1

    def get_series_or_raise(self, pane_id: int, series_id: str) -> Series:
        try:
            return self.series[(pane_id, series_id)]
        except KeyError:
            check_id(series_id, "seriesId")
            raise SeriesNotFound(self.chart_id, pane_id, series_id) from None


@dataclass(frozen=True, slots=True)
class SeriesView:
    """A series as a chart first loads it: all points, or the newest chunk when it is large, as
    of the chart's ``version``: every change up to it is in them, none after."""

    series: Series
    chunk: Chunk
    chunked: bool
    version: int


@dataclass(frozen=True, slots=True)
class ChartView:
    """A chart as a client first loads it: a view of each of its series (of one pane, when
    asked), all read at the chart's ``version``."""

    chart: Chart
    series: list[SeriesView]
    version: int


@dataclass(slots=True)
class RangeView:
    """A zoomed-out view of ``[start, end)``: ``data`` is a JSON array of stored points
    (``downsampled`` false, or a value series' extremes) or of bars at ``resolution``;
    ``source_count`` is the number of stored points in the range."""

    data: bytes
    resolution: str | None
    downsampled: bool
    source_count: int
    start: int | None
    end: int | None


@dataclass(frozen=True, slots=True)
class ReplaceResult:
    series: Series
    version: int


@dataclass(frozen=True, slots=True)
class UpsertResult:
    count: int
    total_count: int
    version: int


class ChartsService:
    """Charts in memory, or in the database behind ``repository``, announced on ``bus``.

    Example::

        service = ChartsService(InProcessEventBus())
        await service.replace_series("demo", 0, "price", "line", [{"time": 1, "value": 2.5}])
        chunk = await service.history("demo", 0, "price", before_time=None, count=500)

    ``cache_bytes`` bounds the memory of loaded series when a repository is given (the memory
    store is the only copy otherwise and is not bounded). ``bar_cache_bytes`` bounds the numeric
    columns and bars kept for series read at other resolutions.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        repository: ChartsRepository | None = None,
        cache_bytes: int = 256 << 20,
        default_chunk_size: int = 500,
        chunk_size_threshold: int = 500,
        clock: Callable[[], float] = time.time,
        validate_reads: bool = False,
        bus_current: Callable[[], bool] | None = None,
        bar_cache_bytes: int = 256 << 20,
    ) -> None:
        self._bus = bus
        self._bars = BarCache(bar_cache_bytes)
        # Other processes write the same database (``validate_reads``): a cached chart is
        # current only while ``bus_current`` says that every change committed elsewhere has
        # reached ``observe``; otherwise its version is checked against the database per read.
        self._validate = validate_reads and repository is not None
        self._bus_current: Callable[[], bool] = bus_current or _never
        # Readers waiting for a chart to reach the version they were promised, by chart id.
        self._waiters: dict[str, asyncio.Future[None]] = {}
        # Newest version heard from the bus for charts being opened (read from the database).
        self._heard: dict[str, int] = {}
        self._repo = repository
        self._cache = SeriesCache(cache_bytes) if repository is not None else None
        self._charts: dict[str, Chart] = {}
        self._opening = KeyedLocks()
        self._accessed: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._clock = clock
        self.default_chunk_size = default_chunk_size
        self.chunk_size_threshold = chunk_size_threshold
        # One series loads at a time, pausing this many times as long as each page took.
        self._load_turn = asyncio.Lock()
        self.load_pause_ratio = 1.0

    @property
    def persistent(self) -> bool:
        return self._repo is not None

    @property
    def cache(self) -> SeriesCache | None:
        return self._cache

    async def close(self) -> None:
        """Stop background loads; pending access times are flushed by the caller if wanted."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ charts

    async def series_markets(self) -> list[SeriesMarket]:
        """Every series that has a ``market``, ordered by chart, pane and series id (from the
        database when persistence is on: charts not in memory are listed too)."""
        if self._repo is not None:
            return await self._repo.series_markets()
        found = [
            SeriesMarket(
                chart.chart_id,
                series.pane_id,
                series.series_id,
                series.series_type,
                series.aggregation,
                series.market.to_json(),
            )
            for chart in list(self._charts.values())
            for series in chart.series.values()
            if series.market is not None
        ]
        found.sort(key=lambda s: (s.chart_id, s.pane_id, s.series_id))
        return found

    async def charts(self) -> list[ChartSummary]:
        """Every chart, without points (from the database when persistence is on)."""
        if self._repo is not None:
            return await self._repo.list_charts()
        return [
            ChartSummary(
                chart.chart_id,
                chart.options,
                len(chart.series),
                chart.version,
                chart.created_at,
                chart.updated_at,
            )
            for chart in self._charts.values()
        ]

    def invalidate(self, chart_id: str) -> None:
        """Forget what memory holds about the chart, because another process changed it (for
        the cross-process event bus): the next access reloads it from the database."""
        chart = self._charts.get(chart_id)
        if chart is not None and self._repo is not None:
            chart.mark_stale()
            self._wake(chart_id)

    def invalidate_all(self) -> None:
        """Mark every chart in memory as possibly behind the database (changes were missed)."""
        if self._repo is not None:
            for chart in self._charts.values():
                chart.mark_stale()
            for chart_id in list(self._waiters):
                self._wake(chart_id)

    def invalidate_charts(self, chart_ids: list[str] | None) -> None:
        """:meth:`invalidate` for each of ``chart_ids``; ``None``: :meth:`invalidate_all`."""
        if chart_ids is None:
            self.invalidate_all()
        else:
            for chart_id in chart_ids:
                self.invalidate(chart_id)

    def _wake(self, chart_id: str) -> None:
        waiter = self._waiters.pop(chart_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def observe(self, event: ChartEvent) -> None:
        """Take note of a change committed by another process.

        The next version's upsert of a series held in memory is applied to it; anything else
        newer than the cached chart (a gap, another kind of change, a write of this process in
        progress) marks the chart stale, reloaded from the database on next use, so nothing is
        ever applied out of order.
        """
        if self._repo is None:
            return
        chart = self._charts.get(event.chart_id)
        if chart is None:
            if self._opening.held(event.chart_id):
                # Being read from the database: that read may or may not include this change.
                heard = self._heard.get(event.chart_id, -1)
                self._heard[event.chart_id] = max(heard, event.version)
            return
        if event.op != "chart_deleted" and event.version <= chart.version:
            return  # already known: this process read or wrote it
        if not (
            event.op == "upsert"
            and event.version == chart.version + 1
            and not chart.stale
            and not chart.lock.locked()
            and self._apply_remote_upsert(chart, event)
        ):
            chart.mark_stale()
        self._wake(event.chart_id)

    def _apply_remote_upsert(self, chart: Chart, event: ChartEvent) -> bool:
        """Apply another process's upsert to the series in memory; False when it cannot be
        (points that do not decode, or a series not loaded and no total to go by)."""
        series = chart.series.get((event.pane_id or 0, event.series_id or ""))
        if series is None or event.data is None:
            return False
        if series.store is None and event.total is None:
            return False
        try:
            points = _decode_points(event.data)
        except (ValueError, TypeError, KeyError):
            return False
        store = series.store
        self._bars.discard(series)
        if store is None:
            if len(points):
                assert event.total is not None
                self._count_upsert(series, points, event.total)
                if series.loading:
                    series.backlog.append(points)
                chart.generation += 2  # a database read that overlapped this is recomputed
        elif len(points):
            before = len(store)
            appended = series.last_time is None or points.times[0] > series.last_time
            store.upsert(points)
            assert self._cache is not None
            self._cache.resized(series)
            if series.samples is not None:
                if appended:
                    series.samples.extend(points.times)
                elif len(store) != before:
                    series.samples = None  # positions after the first new time moved
            series.count = len(store)
            series.first_time = store.first_time
            series.last_time = store.last_time
        chart.version = event.version
        chart.updated_at = self._clock()
        return True

    def loaded_charts(self) -> int:
        """Charts currently held in memory."""
        return len(self._charts)

    def memory_totals(self) -> tuple[int, int]:
        """Charts and points currently held in memory (the ``charts`` and ``series_points``
        gauges)."""
        points = sum(
            len(series.store)
            for chart in self._charts.values()
            for series in chart.series.values()
            if series.store is not None
        )
        return len(self._charts), points

    async def get_chart_or_raise(self, chart_id: str, min_version: int | None = None) -> Chart:
        """The chart, current as far as this process can tell without asking the database
        (see :meth:`history`), and at ``min_version`` or newer when given."""
        chart = self._charts.get(chart_id)
        if chart is None:
            chart, _ = await self._open(chart_id, create=False)
            if chart is None:
                check_id(chart_id, "chartId")
                raise ChartNotFound(chart_id)
        elif self._validate and not chart.stale and not self._bus_current():
            await self._check_version(chart)
        if chart.stale:
            await self._refresh_for_read(chart)
        if min_version is not None and chart.version < min_version:
            await self._catch_up(chart, min_version)
        return chart

    async def _catch_up(self, chart: Chart, min_version: int) -> None:
        """Bring ``chart`` to ``min_version``: wait briefly for the bus to deliver the changes
        another process committed, then read the database. Raises rather than serve a version
        older than promised (:class:`DatabaseUnavailable` when the database cannot be read).
        A token newer than the database (forged, or of a deleted chart) gets the database's
        newest state."""
        if self._repo is None:
            return  # memory only: this process holds every version there is
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CATCH_UP_SECONDS
        while chart.version < min_version and not chart.stale and self._bus_current():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            waiter = self._waiters.get(chart.chart_id)
            if waiter is None or waiter.done():
                waiter = self._waiters[chart.chart_id] = loop.create_future()
            try:
                async with asyncio.timeout(remaining):
                    await asyncio.shield(waiter)
            except TimeoutError:
                if self._waiters.get(chart.chart_id) is waiter:
                    del self._waiters[chart.chart_id]
        if chart.version >= min_version:
            return
        async with chart.lock:
            if chart.version < min_version or chart.stale:
                await self._refresh(chart)

    async def _check_version(self, chart: Chart) -> None:
        """Mark the chart stale when the database holds a newer version (another process wrote
        it); a write of this process in flight is left to finish (its commit is ahead)."""
        assert self._repo is not None
        try:
            version = await self._repo.chart_version(chart.chart_id)
        except DatabaseUnavailable:
            return  # served from memory, as when a reload fails
        if (version is None or version > chart.version) and chart.generation % 2 == 0:
            chart.mark_stale()

    async def _open(self, chart_id: str, *, create: bool) -> tuple[Chart | None, bool]:
        """The chart from memory, else from the database; created when missing and asked to."""
        chart = self._charts.get(chart_id)
        if chart is not None:
            return chart, False
        check_id(chart_id, "chartId")
        if self._repo is None:
            if not create:
                return None, False
            now = self._clock()
            chart = self._charts[chart_id] = Chart(chart_id, {}, now, now, accessed_at=now)
            return chart, True
        async with self._opening.hold(chart_id):
            chart = self._charts.get(chart_id)
            if chart is not None:
                return chart, False
            try:
                record = await self._repo.load_chart(chart_id)
                created = False
                if record is None and create:
                    record = await self._repo.insert_chart(chart_id, {}, self._clock())
                    created = record is not None
                    if record is None:  # another process created it just now
                        record = await self._repo.load_chart(chart_id)
            finally:
                heard = self._heard.pop(chart_id, None)
            if record is None:
                return None, False
            chart = self._charts[chart_id] = _chart_from(record)
            # A change announced while the chart was being read may be missing from it.
            chart.stale = heard is not None and heard > chart.version
            return chart, created

    async def _refresh_for_read(self, chart: Chart) -> None:
        async with chart.lock:
            if not chart.stale:
                return
            try:
                await self._refresh(chart)
            except DatabaseUnavailable:
                logger.warning("serving chart %s from memory: the database is down", chart.chart_id)

    async def _refresh(self, chart: Chart) -> None:
        """Reload the chart's metadata from the database (caller holds ``chart.lock``)."""
        assert self._repo is not None
        marks = chart.marks
        record = await self._repo.load_chart(chart.chart_id)
        if record is None:
            self._forget(chart)
            raise ChartNotFound(chart.chart_id)
        fresh = _chart_from(record)
        chart.generation += 1
        self._drop_series(chart)
        chart.options = fresh.options
        chart.version = fresh.version
        chart.updated_at = fresh.updated_at
        chart.series = fresh.series
        # A change heard while the database was read may be missing from what it answered.
        chart.stale = chart.marks != marks
        chart.generation += 1

    def _forget(self, chart: Chart) -> None:
        if self._charts.get(chart.chart_id) is chart:
            del self._charts[chart.chart_id]
        self._accessed.pop(chart.chart_id, None)
        self._drop_series(chart)

    def _drop_series(self, chart: Chart) -> None:
        for series in chart.series.values():
            self._bars.discard(series)
        if self._cache is not None:
            for series in chart.series.values():
                self._cache.discard(series)

    def _touch(self, chart: Chart) -> None:
        now = self._clock()
        chart.accessed_at = now
        if self._repo is not None:
            self._accessed[chart.chart_id] = now

    @asynccontextmanager
    async def _writing(self, chart: Chart) -> AsyncIterator[None]:
        """Hold the chart for a write: current, fresh, and marked as being written.

        A write that fails after reaching the database may or may not have committed, so the
        chart is then reloaded before it is trusted again.
        """
        async with chart.lock:
            if self._charts.get(chart.chart_id) is not chart:
                raise ChartNotFound(chart.chart_id)
            if chart.stale:
                await self._refresh(chart)
            chart.generation += 1
            try:
                yield
            except ChartNotFound:
                self._forget(chart)
                raise
            except BaseException as exc:
                if self._repo is not None and (
                    isinstance(exc, DatabaseUnavailable) or not isinstance(exc, ChartsError)
                ):
                    chart.mark_stale()
                raise
            finally:
                chart.generation += 1

    async def _committed(
        self, chart: Chart, versioned: Versioned | None, op: EventOp, **fields: Any
    ) -> int:
        """Record a committed change in memory and announce it. Returns the new version."""
        now = self._clock()
        if versioned is None:
            chart.version += 1
        else:
            if versioned.previous != chart.version:
                # another process wrote in between: this memory state is behind
                chart.mark_stale()
            chart.version = versioned.version
        chart.updated_at = now
        chart.accessed_at = now
        await self._bus.publish(ChartEvent(chart.chart_id, chart.version, op, **fields))
        return chart.version

    async def create_chart(
        self, chart_id: str, options: dict[str, Any] | None = None
    ) -> tuple[Chart, bool]:
        """Create the chart, or return it as it is; given ``options`` replace the stored ones."""
        check_id(chart_id, "chartId")
        chart, created = await self._open(chart_id, create=True)
        assert chart is not None
        if options is not None and options != chart.options:
            async with self._writing(chart):
                versioned = None
                if self._repo is not None:
                    versioned = await self._repo.set_chart_options(chart_id, options, self._clock())
                chart.options = options
                await self._committed(chart, versioned, "options", options=options)
        return chart, created

    async def delete_chart(self, chart_id: str) -> int:
        """Delete the chart; returns its last version (that of the deletion)."""
        chart = await self.get_chart_or_raise(chart_id)
        async with chart.lock:
            if self._charts.get(chart_id) is not chart:
                raise ChartNotFound(chart_id)
            if self._repo is not None and not await self._repo.delete_chart(chart_id):
                self._forget(chart)
                raise ChartNotFound(chart_id)
            self._forget(chart)
            chart.version += 1
            await self._bus.publish(ChartEvent(chart_id, chart.version, "chart_deleted"))
            return chart.version

    # ------------------------------------------------------------------ writes

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
        market: object = None,
        aggregation: object = None,
    ) -> ReplaceResult:
        """Replace the whole series (creating chart and series when missing).

        ``market`` (timezone, session, symbol metadata) and ``aggregation`` (the rule for a value
        series' ``value`` at other resolutions) are stored with the series.
        """
        check_id(chart_id, "chartId")
        check_id(series_id, "seriesId")
        check_pane(pane_id)
        series_type = normalize_series_type(series_type)
        calendar = None if market is None else parse_market(market)
        rule = check_aggregation(series_type, aggregation)
        streams = self._repo is not None and self._repo.streams_points
        staged = await _prepare(data, series_type, from_json, staged=streams)
        chart, _ = await self._open(chart_id, create=True)
        assert chart is not None
        options = options or {}
        async with self._writing(chart):
            versioned = None
            key = 0
            if self._repo is not None:
                written = await self._repo.replace_series(
                    chart_id,
                    pane_id,
                    series_id,
                    series_type,
                    options,
                    staged,
                    self._clock(),
                    market=None if calendar is None else calendar.to_json(),
                    aggregation=rule,
                )
                versioned, key = Versioned(written.previous, written.version), written.series.key
            points = staged.encoded() if isinstance(staged, StagedPoints) else staged
            series = Series(
                pane_id,
                series_id,
                series_type,
                options,
                None,
                count=len(points),
                first_time=points.times[0] if len(points) else None,
                last_time=points.times[-1] if len(points) else None,
                key=key,
                market=calendar,
                aggregation=rule,
            )
            old = chart.series.get((pane_id, series_id))
            if old is not None:
                self._bars.discard(old)
            if self._cache is None:
                series.store = SeriesStore(points)
            else:
                if old is not None:
                    self._cache.discard(old)
                series.samples = TimeSamples.of(points.times)
                if self._cache.fits(len(points)):
                    self._cache.add(series, SeriesStore(points))
            chart.series[(pane_id, series_id)] = series
            version = await self._committed(
                chart, versioned, "replace", pane_id=pane_id, series_id=series_id, count=len(points)
            )
        return ReplaceResult(series, version)

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
        chart = await self.get_chart_or_raise(chart_id)
        series = chart.get_series_or_raise(check_pane(pane_id), series_id)
        if series_type is not None and normalize_series_type(series_type) != series.series_type:
            raise SeriesTypeConflict(
                f"Series '{series_id}' is a {series.series_type} series; an update cannot change "
                f"it to {series_type}. Replace the series with POST to change its type."
            )
        points = await _prepare(data, series.series_type, from_json)
        async with self._writing(chart):
            current = chart.series.get((pane_id, series_id))
            if current is None:
                raise SeriesNotFound(chart_id, pane_id, series_id)
            if current.series_type != series.series_type:
                raise SeriesTypeConflict(
                    f"Series '{series_id}' was replaced by a {current.series_type} series while "
                    "this update was being checked; send it again."
                )
            series = current
            versioned = None
            if self._repo is not None and len(points):
                try:
                    written = await self._repo.upsert_points(
                        chart_id, series.record(), points, self._clock()
                    )
                except SeriesNotFound:
                    chart.mark_stale()  # deleted by another process
                    raise
                versioned = Versioned(written.previous, written.version)
                self._apply_upsert(series, points, written.series, written.added)
            elif self._repo is not None:  # nothing to store, but a change of version all the same
                versioned = await self._repo.bump_version(chart_id, self._clock())
            elif len(points):
                assert series.store is not None
                series.store.upsert(points)
                series.count = len(series.store)
                series.first_time = series.store.first_time
                series.last_time = series.store.last_time
            self._bars.upserted(series, points, _point_source(series.store))
            version = await self._committed(
                chart,
                versioned,
                "upsert",
                pane_id=pane_id,
                series_id=series_id,
                count=len(points),
                data=points.json_array(),
                total=series.count,
            )
            total = series.count
        self._schedule_load(chart, series)
        return UpsertResult(len(points), total, version)

    def _apply_upsert(
        self, series: Series, points: EncodedPoints, stored: SeriesRecord, added: int
    ) -> None:
        appended = series.last_time is None or points.times[0] > series.last_time
        store = series.store
        if store is not None:
            store.upsert(points)
            assert self._cache is not None
            self._cache.resized(series)
        elif series.loading:
            series.backlog.append(points)
        samples = series.samples
        if samples is not None:
            if appended:
                samples.extend(points.times)
            elif added:
                series.samples = None  # positions after the first new time moved
        series.count = stored.count
        series.first_time = stored.first_time
        series.last_time = stored.last_time

    @staticmethod
    def _count_upsert(series: Series, points: EncodedPoints, total: int) -> None:
        """Account for an upsert of a series whose points are not in memory."""
        appended = series.last_time is None or points.times[0] > series.last_time
        if series.samples is not None:
            if appended:
                series.samples.extend(points.times)
            elif total != series.count:
                series.samples = None
        series.count = total
        first, last = points.times[0], points.times[-1]
        series.first_time = first if series.first_time is None else min(first, series.first_time)
        series.last_time = last if series.last_time is None else max(last, series.last_time)

    async def delete_series(self, chart_id: str, pane_id: int, series_id: str) -> int:
        """Delete the series; returns the chart's version after it."""
        chart = await self.get_chart_or_raise(chart_id)
        async with self._writing(chart):
            series = chart.get_series_or_raise(pane_id, series_id)
            versioned = None
            if self._repo is not None:
                versioned = await self._repo.delete_series(chart_id, series.key, self._clock())
            del chart.series[(pane_id, series_id)]
            self._bars.discard(series)
            if self._cache is not None:
                self._cache.discard(series)
            return await self._committed(
                chart, versioned, "delete", pane_id=pane_id, series_id=series_id
            )

    # ------------------------------------------------------------------ reads

    async def get_series(
        self, chart_id: str, pane_id: int, series_id: str, *, min_version: int | None = None
    ) -> SeriesView:
        chart = await self.get_chart_or_raise(chart_id, check_min_version(min_version))
        chart.get_series_or_raise(pane_id, series_id)
        self._touch(chart)
        snapshot = await self._snapshot(chart, lambda key: key == (pane_id, series_id))
        if not snapshot.series:
            raise SeriesNotFound(chart_id, pane_id, series_id)  # deleted by another process
        return snapshot.series[0]

    async def get_chart(
        self, chart_id: str, *, pane_id: int | None = None, min_version: int | None = None
    ) -> ChartView:
        """The chart and a view of each of its series; with ``pane_id``, of that pane's only.
        The views are all of one version of the chart, the one reported."""
        chart = await self.get_chart_or_raise(chart_id, check_min_version(min_version))
        self._touch(chart)
        return await self._snapshot(chart, lambda key: pane_id in (None, key[0]))

    async def _snapshot(self, chart: Chart, wanted: Callable[[tuple[int, str]], bool]) -> ChartView:
        """Views of the chart's series that are ``wanted`` (by pane and series id), and the
        version they were all read at: every change up to it is in them, none after.

        Series not in memory are read from the database, and a write can land between those
        reads: they are read without the chart's lock, then checked against the chart's version
        and generation; when a change overlapped, they are read again under the lock, where none
        can. With other processes writing the database, points read from it may hold changes
        this process has not heard of yet: then the chart and its points come from one snapshot
        of the database, at the database's version.
        """

        def members(chart: Chart) -> list[Series]:
            return [s for key, s in chart.series.items() if wanted(key)]

        series = members(chart)
        if self._validate and any(s.store is None for s in series):
            view = await self._database_snapshot(chart, wanted)
            for member in series:
                self._schedule_load(chart, member)  # as a read of its points would
            return view
        version, generation = chart.version, chart.generation
        if generation % 2 == 0:
            with contextlib.suppress(SeriesNotFound):  # deleted meanwhile: read again
                views = [await self._view(chart, s, version) for s in series]
                if chart.version == version and chart.generation == generation:
                    return ChartView(chart, views, version)
        async with chart.lock:
            if self._charts.get(chart.chart_id) is not chart:
                raise ChartNotFound(chart.chart_id)
            version = chart.version
            views = [await self._view(chart, s, version) for s in members(chart)]
            return ChartView(chart, views, version)

    async def _database_snapshot(
        self, chart: Chart, wanted: Callable[[tuple[int, str]], bool]
    ) -> ChartView:
        """As ``_snapshot``, read from the database alone, in one snapshot of it (the series
        held in memory too, whose points may be of another version)."""
        assert self._repo is not None

        def newest(record: SeriesRecord) -> int | None:
            if not wanted((record.pane_id, record.series_id)):
                return None
            chunked = record.count >= self.chunk_size_threshold
            return self.default_chunk_size if chunked else max(record.count, 1)

        found = await self._repo.snapshot(chart.chart_id, newest)
        if found is None:
            raise ChartNotFound(chart.chart_id)  # deleted by another process
        # Changes not heard of yet reach this process's copy through the bus, or the periodic
        # version check.
        record, chunks = found
        read = _chart_from(record)
        views = []
        for key, series in read.series.items():
            rows = chunks.get(series.key)
            if rows is None or not wanted(key):
                continue
            chunk = Chunk(
                data=rows.data,
                start=series.count - rows.count,
                end=series.count,
                start_time=rows.first_time,
                end_time=rows.last_time,
                total=series.count,
                direction="before",
            )
            chunked = series.count >= self.chunk_size_threshold
            views.append(SeriesView(series, chunk, chunked, record.version))
        return ChartView(read, views, record.version)

    async def _view(self, chart: Chart, series: Series, version: int) -> SeriesView:
        chunked = series.count >= self.chunk_size_threshold
        count = self.default_chunk_size if chunked else max(series.count, 1)
        store = series.store
        if store is not None:
            if self._cache is not None:
                self._cache.touch(series)
            return SeriesView(series, store.newest(count), chunked, version)
        chunk = await self._db_chunk(chart, series, "newest", 0, count)
        return SeriesView(series, chunk, chunked, version)

    async def history(
        self,
        chart_id: str,
        pane_id: int,
        series_id: str,
        *,
        before_time: object = None,
        after_time: object = None,
        count: int | None = None,
        min_version: object = None,
    ) -> Chunk:
        """Up to ``count`` points strictly before ``before_time`` or strictly after
        ``after_time``; with neither, the newest points.

        Served from memory without a database query while the chart is current: with other
        processes writing the same database, that is while the event bus is healthy (changes
        arrive at most the bus delay after their commit). A read carrying ``min_version`` (the
        version a write answered) never sees an older version of the chart.
        """
        count = self.default_chunk_size if count is None else check_count(count)
        chart = self._charts.get(chart_id)
        if (
            chart is None
            or chart.stale
            or min_version is not None
            or (self._validate and not self._bus_current())
        ):
            chart = await self.get_chart_or_raise(chart_id, check_min_version(min_version))
        series = chart.get_series_or_raise(pane_id, series_id)
        if before_time is not None and after_time is not None:
            raise InvalidRequest("Give beforeTime or afterTime, not both.")
        query: Query = "newest"
        at = 0
        if before_time is not None:
            query, at = "before", _query_time(before_time, "beforeTime")
        elif after_time is not None:
            query, at = "after", _query_time(after_time, "afterTime")
        self._touch(chart)
        store = series.store
        if store is None:
            return await self._db_chunk(chart, series, query, at, count)
        if self._cache is not None:
            self._cache.touch(series)
        if query == "before":
            return store.chunk_before(at, count)
        if query == "after":
            return store.chunk_after(at, count)
        return store.newest(count)

    async def _db_chunk(
        self, chart: Chart, series: Series, query: Query, at: int, count: int
    ) -> Chunk:
        """A chunk of a series that is not in memory, by keyset queries.

        Without taking the lock when no write is in progress: if the chart's generation moved
        while the queries ran, a write overlapped and the answer is recomputed under the lock.
        """
        generation = chart.generation
        if generation % 2 == 0:
            chunk = await self._query_chunk(chart, series, query, at, count, generation)
            if chart.generation == generation:
                self._schedule_load(chart, series)
                return chunk
        async with chart.lock:
            current = chart.get_series_or_raise(series.pane_id, series.series_id)
            store = current.store
            if store is not None:
                if query == "before":
                    return store.chunk_before(at, count)
                if query == "after":
                    return store.chunk_after(at, count)
                return store.newest(count)
            return await self._query_chunk(chart, current, query, at, count, chart.generation)

    async def _query_chunk(
        self, chart: Chart, series: Series, query: Query, at: int, count: int, generation: int
    ) -> Chunk:
        assert self._repo is not None
        total = series.count
        known, anchor = 0, None
        if query != "newest":
            samples = series.samples
            if samples is None:
                times, sampled = await self._repo.sample_times(series.key, SAMPLE_STEP)
                samples = TimeSamples(times, sampled)
                if chart.generation == generation:
                    series.samples = samples
            known, anchor = samples.below(at) if query == "before" else samples.up_to(at)
        rows = await self._repo.chunk(series.key, query, at, count, anchor)
        if query == "after":
            start = known + rows.counted if rows.count else total
            end = start + rows.count
        else:
            end = total if query == "newest" else (known + rows.counted if rows.count else 0)
            start = end - rows.count
        return Chunk(
            data=rows.data,
            start=start,
            end=end,
            start_time=rows.first_time,
            end_time=rows.last_time,
            total=total,
            direction="after" if query == "after" else "before",
        )

    # ------------------------------------------------------------------ timeframes

    async def history_at(
        self,
        chart_id: str,
        pane_id: int,
        series_id: str,
        resolution: object,
        *,
        before_time: object = None,
        after_time: object = None,
        count: int | None = None,
        min_version: int | None = None,
    ) -> tuple[Chunk, Resolution]:
        """As ``history``, in bars at ``resolution``: times are bar times, counts are bars."""
        parsed = parse_resolution(resolution)
        count = self.default_chunk_size if count is None else check_count(count)
        if before_time is not None and after_time is not None:
            raise InvalidRequest("Give beforeTime or afterTime, not both.")
        chart = await self.get_chart_or_raise(chart_id, min_version)
        series = chart.get_series_or_raise(pane_id, series_id)
        bars = await self._bars_of(chart, series, parsed)
        self._touch(chart)
        if before_time is not None:
            return bars.chunk_before(_query_time(before_time, "beforeTime"), count), parsed
        if after_time is not None:
            return bars.chunk_after(_query_time(after_time, "afterTime"), count), parsed
        return bars.newest(count), parsed

    async def series_at(
        self,
        chart_id: str,
        pane_id: int,
        series_id: str,
        resolution: object,
        *,
        min_version: int | None = None,
    ) -> tuple[SeriesView, Resolution]:
        """As ``get_series``, in bars at ``resolution``."""
        parsed = parse_resolution(resolution)
        chart = await self.get_chart_or_raise(chart_id, min_version)
        series = chart.get_series_or_raise(pane_id, series_id)
        self._touch(chart)
        frames = self._bars.get(series)
        if (
            self._validate
            and series.store is None
            and (frames is None or parsed.text not in frames.bars)
        ):
            # Points read from the database may hold changes of other processes not heard of yet.
            series, bars, version = await self._database_bars(chart, series, parsed)
        else:
            bars = await self._bars_of(chart, series, parsed)
            # From the cache, or built under the chart's lock: either way no change can land
            # before this step ends, so the version is theirs.
            series, version = chart.get_series_or_raise(pane_id, series_id), chart.version
        chunked = len(bars) >= self.chunk_size_threshold
        count = self.default_chunk_size if chunked else max(len(bars), 1)
        return SeriesView(series, bars.newest(count), chunked, version), parsed

    async def bars_at(
        self, chart_id: str, pane_id: int, series_id: str, resolution: str, times: list[int]
    ) -> tuple[bytes, int]:
        """The bars at ``resolution`` whose buckets hold any of ``times``, as they are now (a
        JSON array and its length): what a live update at that resolution carries."""
        parsed = parse_resolution(resolution)
        chart = await self.get_chart_or_raise(chart_id)
        series = chart.get_series_or_raise(pane_id, series_id)
        bars = await self._bars_of(chart, series, parsed)
        keys, inside = bucket_keys(
            np.asarray(times, dtype=np.int64), parsed, series.market or Market()
        )
        return bars.points_at(np.unique(keys[inside]).tolist())

    def bars_now(
        self, chart_id: str, pane_id: int, series_id: str, resolution: str, times: list[int]
    ) -> tuple[bytes, int] | None:
        """As ``bars_at`` when the bars are in memory and current (a live update's bars go out
        with the update itself); None otherwise. ``resolution`` is in canonical form."""
        chart = self._charts.get(chart_id)
        series = None if chart is None or chart.stale else chart.series.get((pane_id, series_id))
        frames = None if series is None else self._bars.get(series)
        bars = None if frames is None else frames.bars.get(resolution)
        if frames is None or bars is None:
            return None
        parsed = frames.resolutions[resolution]
        keys, inside = bucket_keys(np.asarray(times, dtype=np.int64), parsed, frames.market)
        return bars.points_at(np.unique(keys[inside]).tolist())

    async def bar_arrays(
        self,
        chart_id: str,
        pane_id: int,
        series_id: str,
        resolution: object,
        *,
        end: int,
        start: int | None = None,
        count: int | None = None,
        limit: int = MAX_CHUNK,
        min_version: int | None = None,
    ) -> ArrayWindow:
        """The bars at ``resolution`` before ``end`` (exclusive): the last ``count`` of them,
        else those from ``start`` (inclusive) on, at most the newest ``limit``; as a JSON array
        per field, for front ends that take arrays rather than points (the UDF datafeed).
        Whitespace bars are left out. With ``min_version``, of that version of the chart or a
        newer one (``get_chart_or_raise``).

        The arrays are kept encoded beside the series' bars (``arrays.ArrayBars``), so a window
        is a slice of each; no bar becomes an object and no number is formatted.
        """
        parsed = parse_resolution(resolution)
        chart = await self.get_chart_or_raise(chart_id, min_version)
        series = chart.get_series_or_raise(pane_id, series_id)
        arrays = await self._arrays_of(chart, series, parsed)
        self._touch(chart)
        return arrays.window(end, start, count, limit)

    async def snap_to_bars(
        self, chart_id: str, pane_id: int, series_id: str, resolution: object, times: list[int]
    ) -> list[int]:
        """The time of the bar at ``resolution`` each of ``times`` is drawn on, by the series'
        market: the time the bars carry, and for a time outside the sessions the nearest
        session's bar (``timeframes.snap_to_bars``). A series not written yet has the default
        market (UTC, always open)."""
        parsed = parse_resolution(resolution)
        chart = await self.get_chart_or_raise(chart_id)
        series = chart.series.get((pane_id, series_id))
        market = series.market if series is not None and series.market is not None else Market()
        snapped = snap_to_bars(np.asarray(times, dtype=np.int64), parsed, market)
        found: list[int] = snapped.tolist()
        return found

    async def _arrays_of(self, chart: Chart, series: Series, resolution: Resolution) -> ArrayBars:
        """The series' bars at ``resolution`` as arrays, from the cache, else computed under the
        chart's lock (as ``_bars_of``)."""
        check_aggregatable(series.series_type, series.aggregation, series.series_id)
        frames = self._bars.get(series)
        if frames is not None and resolution.text in frames.arrays:
            return frames.arrays[resolution.text]
        async with chart.lock:
            series = chart.get_series_or_raise(series.pane_id, series.series_id)
            check_aggregatable(series.series_type, series.aggregation, series.series_id)
            frames, _ = await self._frames_locked(series)
            arrays = frames.arrays.get(resolution.text)
            if arrays is None:
                arrays = await _run(array_bars, frames, resolution)
                self._bars.resized(series)
            return arrays

    def check_resolution(self, series: Series, resolution: object) -> Resolution:
        """The parsed resolution, when the series can be shown at it (else 422)."""
        parsed = parse_resolution(resolution)
        check_aggregatable(series.series_type, series.aggregation, series.series_id)
        return parsed

    async def range_view(
        self,
        chart_id: str,
        pane_id: int,
        series_id: str,
        *,
        start: object = None,
        end: object = None,
        max_points: object = DEFAULT_RANGE_POINTS,
        min_version: object = None,
    ) -> RangeView:
        """At most ``max_points`` points of ``[start, end)`` for a zoomed-out view: the stored
        points when they fit; else bars of an OHLC series at the finest resolution of the
        ladder that fits, or each stretch's first, lowest, highest and last stored point of a
        value series."""
        if type(max_points) is not int or not 2 <= max_points <= MAX_RANGE_POINTS:
            raise InvalidRequest(
                f"max_points must be an integer from 2 to {MAX_RANGE_POINTS}; "
                f"got {max_points!r:.40}."
            )
        low = None if start is None else _query_time(start, "from")
        high = None if end is None else _query_time(end, "to")
        chart = await self.get_chart_or_raise(chart_id, check_min_version(min_version))
        series = chart.get_series_or_raise(pane_id, series_id)
        self._touch(chart)
        points = series.store
        if points is None:
            async with chart.lock:
                series = chart.get_series_or_raise(pane_id, series_id)
                points = await self._points_for_bars(series)
        lo = 0 if low is None else points.bisect(low)
        hi = len(points) if high is None else points.bisect(high)
        hi = max(lo, hi)
        view = RangeView(b"[]", None, False, hi - lo, low, high)
        if hi - lo <= max_points:
            view.data = points.slice_json(lo, hi)
            return view
        first, last = points.time_at(lo), points.time_at(hi - 1)
        frames, _ = await self._frames_of(chart, series)
        columns = frames.columns
        lo, hi = (int(i) for i in np.searchsorted(columns.times, [first, last + 1]))
        view.downsampled = True
        if frames.kind == "ohlc":
            resolution, keys, inside = await _run(
                coarsest_fit, columns, lo, hi, frames.market, max_points
            )
            bars = aggregate(columns, keys, inside, None, lo=lo)
            view.data = encode_bars(bars, columns, _points_by_time(points, columns)).json_array()
            view.resolution = resolution.text
        else:
            if frames.blocks is None:
                frames.blocks = blocks_of(columns)
            picked = extremes(columns, lo, hi, max_points, frames.blocks)
            view.data = points.points_at(columns.times[picked])[0]
        return view

    async def _bars_of(self, chart: Chart, series: Series, resolution: Resolution) -> SeriesStore:
        """The series' bars at ``resolution`` from the cache, else computed (under the chart's
        lock, so no write lands while the columns are read)."""
        check_aggregatable(series.series_type, series.aggregation, series.series_id)
        frames = self._bars.get(series)
        if frames is not None and resolution.text in frames.bars:
            return frames.bars[resolution.text]
        async with chart.lock:
            series = chart.get_series_or_raise(series.pane_id, series.series_id)
            check_aggregatable(series.series_type, series.aggregation, series.series_id)
            frames, points = await self._frames_locked(series)
            if resolution.text in frames.bars:
                return frames.bars[resolution.text]
            if points is None and frames.columns.extra.any():
                points = await self._points_for_bars(series)  # the bars' other fields
            bars = await _run(build_bars, frames, resolution, _point_source(points))
            self._bars.resized(series)
            return bars

    async def _database_bars(
        self, chart: Chart, series: Series, resolution: Resolution
    ) -> tuple[Series, SeriesStore, int]:
        """The series (as stored) and its bars at ``resolution``, built from its points read
        with the chart in one snapshot of the database, and the chart's version they are of.
        Kept in the cache when that is the version this process holds."""
        assert self._repo is not None
        key = (series.pane_id, series.series_id)
        found = await self._repo.snapshot(
            chart.chart_id,
            lambda record: (
                max(record.count, 1) if (record.pane_id, record.series_id) == key else None
            ),
        )
        if found is None:
            raise ChartNotFound(chart.chart_id)
        record, chunks = found
        stored = _chart_from(record).series.get(key)
        if stored is None:
            raise SeriesNotFound(chart.chart_id, *key)
        check_aggregatable(stored.series_type, stored.aggregation, stored.series_id)
        points = SeriesStore(_decode_points(chunks[stored.key].data))
        frames = await _frames_for(stored, points)
        bars = await _run(build_bars, frames, resolution, _point_source(points))
        current = chart.series.get(key)
        if (
            record.version == chart.version
            and current is not None
            and (current.key, current.count) == (stored.key, stored.count)
        ):
            self._bars.put(current, frames)
            return current, bars, record.version
        return stored, bars, record.version

    async def _frames_of(self, chart: Chart, series: Series) -> tuple[Frames, SeriesStore | None]:
        """The series' numeric columns, and its points when in memory."""
        frames = self._bars.get(series)
        if frames is not None:
            return frames, series.store
        async with chart.lock:
            current = chart.get_series_or_raise(series.pane_id, series.series_id)
            if current is not series:
                raise SeriesNotFound(chart.chart_id, series.pane_id, series.series_id)
            return await self._frames_locked(series)

    async def _frames_locked(self, series: Series) -> tuple[Frames, SeriesStore | None]:
        """As ``_frames_of``; the caller holds the chart's lock. Columns not in the cache are
        parsed from the points (and kept when they fit the budget)."""
        frames = self._bars.get(series)
        if frames is not None:
            return frames, series.store
        points = await self._points_for_bars(series)
        frames = await _frames_for(series, points)
        self._bars.put(series, frames)
        return frames, points

    async def _points_for_bars(self, series: Series) -> SeriesStore:
        """The series' points in a store: its own, or (persistence, not loaded) read now."""
        if series.store is not None:
            return series.store
        assert self._repo is not None
        store = SeriesStore()
        async for page in self._repo.load_points(series.key):
            store.upsert(page)
        return store

    # ------------------------------------------------------------------ loading

    def _schedule_load(self, chart: Chart, series: Series) -> asyncio.Task[None] | None:
        """Load the series into memory in the background, when it fits the budget; the task
        that does, if one was started."""
        cache = self._cache
        if cache is None or series.store is not None or series.loading:
            return None
        if not cache.fits(series.count):
            return None
        series.loading = True
        task = asyncio.create_task(self._load(chart, series))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _load(self, chart: Chart, series: Series) -> None:
        """Load the series' points page by page, without holding the chart: writes go on
        meanwhile and are replayed onto the loaded points (``Series.backlog``). Loads take
        turns, and each pauses as long as its last page took, so that warming a worker's
        cache takes at most half of its time from the requests it serves meanwhile (from
        the database)."""
        assert self._repo is not None and self._cache is not None
        try:
            async with self._load_turn:
                if chart.series.get((series.pane_id, series.series_id)) is not series:
                    return
                if series.store is not None:
                    return
                series.backlog = []
                store = SeriesStore()
                started = time.perf_counter()
                async for page in self._repo.load_points(series.key):
                    store.upsert(page)  # appends: pages come in ascending time
                    now = time.perf_counter()
                    await asyncio.sleep((now - started) * self.load_pause_ratio)
                    started = time.perf_counter()
                async with chart.lock:
                    if chart.series.get((series.pane_id, series.series_id)) is not series:
                        return  # replaced or deleted meanwhile
                    for points in series.backlog:
                        store.upsert(points)
                    if len(store) != series.count:
                        chart.mark_stale()  # the database moved on behind this process's back
                        return
                    if self._cache.add(series, store) and series.samples is None:
                        series.samples = TimeSamples.of(store.times())
        except DatabaseUnavailable as exc:
            logger.warning("could not load series %s/%s: %s", chart.chart_id, series.series_id, exc)
        except Exception:
            logger.exception("loading series %s/%s failed", chart.chart_id, series.series_id)
        finally:
            series.loading = False
            series.backlog = []

    async def warm(self, seconds: float, charts: int = WARM_CHARTS) -> int:
        """Load the series of the charts used most recently into memory, newest first, for at
        most ``seconds``; returns how many series were loaded. A new worker does this before
        it takes requests, while the others serve them, so that it never answers its first
        requests from a cold cache."""
        if self._repo is None or self._cache is None or seconds <= 0:
            return 0
        deadline = time.monotonic() + seconds
        loaded = 0
        try:
            recent = await self._repo.recent_charts(charts)
        except DatabaseUnavailable:
            return 0
        for chart_id in recent:
            try:
                chart, _ = await self._open(chart_id, create=False)
            except (ChartsError, DatabaseUnavailable):
                continue
            for series in list(chart.series.values()) if chart is not None else ():
                left = deadline - time.monotonic()
                if left <= 0:
                    return loaded
                assert chart is not None
                task = self._schedule_load(chart, series)
                if task is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(task), left)
                    loaded += series.store is not None
        return loaded

    async def wait_loaded(self) -> None:
        """Wait for the background loads started so far (tests and benchmarks use this)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def check_versions(self) -> int:
        """Compare the versions of the charts in memory with the database, a few queries in
        all, and mark those that are behind stale. A safety net under the event bus, for a
        change whose announcement was lost (its writer died between commit and publish).
        Returns how many charts were found behind."""
        if self._repo is None:
            return 0
        ids = [chart_id for chart_id, chart in self._charts.items() if not chart.stale]
        behind = 0
        for start in range(0, len(ids), _VERSION_BATCH):
            batch = ids[start : start + _VERSION_BATCH]
            generations = {
                chart_id: chart.generation
                for chart_id in batch
                if (chart := self._charts.get(chart_id)) is not None
            }
            versions = await self._repo.chart_versions(batch)
            for chart_id, generation in generations.items():
                chart = self._charts.get(chart_id)
                if chart is None or chart.generation != generation or generation % 2:
                    continue  # written meanwhile by this process: its memory is current
                version = versions.get(chart_id)
                if version is None or version > chart.version:
                    chart.mark_stale()
                    behind += 1
                    self._wake(chart_id)
        return behind

    # ------------------------------------------------------------------ expiry

    async def flush_access(self) -> int:
        """Write the read times gathered since the last flush, in one batch. Returns how many
        charts were recorded; on failure they are kept for the next flush."""
        if self._repo is None or not self._accessed:
            return 0
        accessed, self._accessed = self._accessed, {}
        try:
            await self._repo.record_access(accessed)
        except Exception:
            for chart_id, at in accessed.items():
                self._accessed[chart_id] = max(at, self._accessed.get(chart_id, at))
            raise
        return len(accessed)

    async def expire_idle(self, ttl_seconds: float) -> list[str]:
        """Delete charts neither read nor written for ``ttl_seconds``, announcing each deletion.
        Returns their ids."""
        cutoff = self._clock() - ttl_seconds
        if self._repo is not None:
            await self.flush_access()
            candidates = await self._repo.idle_charts(cutoff, EXPIRE_BATCH)
        else:
            candidates = [c.chart_id for c in self._charts.values() if c.accessed_at < cutoff]
        expired = []
        for chart_id in candidates:
            chart = self._charts.get(chart_id)
            if chart is None:
                if self._repo is not None and await self._repo.delete_chart(
                    chart_id, idle_before=cutoff
                ):
                    expired.append(chart_id)
                    await self._bus.publish(ChartEvent(chart_id, 0, "chart_deleted"))
                continue
            async with chart.lock:
                if self._charts.get(chart_id) is not chart or chart.accessed_at >= cutoff:
                    continue
                if self._repo is not None and not await self._repo.delete_chart(
                    chart_id, idle_before=cutoff
                ):
                    continue
                self._forget(chart)
                chart.version += 1
                expired.append(chart_id)
                await self._bus.publish(ChartEvent(chart_id, chart.version, "chart_deleted"))
        if expired:
            logger.info("removed %d idle chart(s)", len(expired))
        return expired


def check_min_version(value: object) -> int | None:
    """``min_version`` as given by a caller: None, or an integer >= 0."""
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise InvalidRequest(f"min_version must be an integer >= 0; got {value!r:.40}.")
    return value


def _never() -> bool:
    return False


def _chart_from(record: ChartRecord) -> Chart:
    chart = Chart(
        record.chart_id,
        record.options,
        record.created_at,
        record.updated_at,
        version=record.version,
        accessed_at=record.accessed_at,
    )
    for s in record.series:
        chart.series[(s.pane_id, s.series_id)] = Series(
            s.pane_id,
            s.series_id,
            s.series_type,
            s.options,
            None,
            count=s.count,
            first_time=s.first_time,
            last_time=s.last_time,
            key=s.key,
            market=_stored_market(s.market),
            aggregation=s.aggregation,
        )
    return chart


async def _frames_for(series: Series, points: SeriesStore) -> Frames:
    """The numeric columns of ``points``, a series' points, for building its bars."""
    kind: Kind = "ohlc" if series.series_type in OHLC_TYPES else "value"
    columns = await _run(Columns.of_store, kind, points)
    rule = value_rule(series.series_type, series.aggregation)
    return Frames(kind, rule, series.market or Market(), columns)


def _decode_points(data: bytes) -> EncodedPoints:
    """The points of an upsert event as the store holds them (``data`` is their JSON array as
    the writing process encoded it, with normalized times)."""
    values = orjson.loads(data)
    times = array("q", (int(point["time"]) for point in values))
    return encoded_from_rows(times, [orjson.dumps(point).decode() for point in values])


def _query_time(value: object, name: str) -> int:
    try:
        return normalize_time(value)
    except Exception as exc:
        raise InvalidRequest(f"{name}: {getattr(exc, 'detail', exc)}") from None


_THREAD_ABOVE = 50_000


@overload
async def _prepare(data: object, series_type: str, from_json: bool) -> EncodedPoints: ...


@overload
async def _prepare(
    data: object, series_type: str, from_json: bool, *, staged: bool
) -> EncodedPoints | StagedPoints: ...


async def _prepare(
    data: object, series_type: str, from_json: bool, *, staged: bool = False
) -> EncodedPoints | StagedPoints:
    """Validate off the event loop when the batch is large, so other requests keep moving;
    ``staged``: a large batch in time order may be left to check and encode as it is written."""
    prepare = stage_points if staged else prepare_points
    if isinstance(data, list) and len(data) > _THREAD_ABOVE:
        return await asyncio.to_thread(prepare, data, series_type, from_json=from_json)
    return prepare(data, series_type, from_json=from_json)


def _stored_market(value: dict[str, Any] | None) -> Market | None:
    if value is None:
        return None
    try:
        return parse_market(value)
    except ChartsError:
        logger.warning("ignoring a stored market that is no longer valid: %.200r", value)
        return None


def _point_source(
    store: SeriesStore | None,
) -> Callable[[Sequence[int]], Sequence[dict[str, Any]] | None]:
    """Stored points by index (the other fields of a bar's last point), when in memory."""

    def points(indexes: Sequence[int]) -> Sequence[dict[str, Any]] | None:
        if store is None:
            return None
        return [orjson.loads(store.point_json(i)) for i in indexes]

    return points


def _points_by_time(
    store: SeriesStore, columns: Columns
) -> Callable[[Sequence[int]], Sequence[dict[str, Any]]]:
    """Points by column index, found in ``store`` by their times."""

    def points(indexes: Sequence[int]) -> Sequence[dict[str, Any]]:
        found: list[dict[str, Any]] = orjson.loads(
            store.points_at(columns.times[list(indexes)].tolist())[0]
        )
        if len(found) != len(indexes):
            raise ChartsError("The series changed while it was read; ask again.")
        return found

    return points


async def _run(function: Callable[..., T], *args: Any) -> T:
    """Big computations (a series' columns, all its bars) off the event loop."""
    return await asyncio.to_thread(function, *args)

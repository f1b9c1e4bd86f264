"""Each worker's copy of the annotations of the charts it lists, kept current by the event bus.

Like the charts' cache (DESIGN.md section 9): the first listing of a chart starts loading its
annotations into an :class:`AnnotationIndex` in the background, and listings query the database
until it is there. Copies are bounded by ``budget_bytes``; the charts listed least recently leave
first. Every committed change reaches the copy as an ``AnnotationEvent`` on the bus (this
process's at once, other processes' through Redis) and is applied in sequence order. A change
that arrives ahead of its predecessor waits for it, the copy unused meanwhile (listings query the
database); when the predecessor does not come within ``GAP_WAIT_SECONDS``, when the chart is
deleted, when Redis comes back after a loss, or when another process names the chart among the
changes it could not announce, the copy is dropped and the next listing loads it again.

With other processes writing the same database (``validate``), a copy is trusted while the bus is
known to deliver (``bus_current``, Redis heartbeats); otherwise a listing first compares the
chart's sequence number in the database with the copy's, one primary-key read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from ..charts.events import ChartEvent
from ..errors import DatabaseUnavailable
from ..realtime.bus import BusEvent, EventBus, Unsubscribe
from .events import AnnotationEvent
from .index import AnnotationIndex
from .repository import AnnotationQuery
from .schemas import AnnotationRecord, record_from_body

logger = logging.getLogger(__name__)

#: How long a change that arrived ahead of its predecessor waits for it before the copy is
#: dropped (the hub waits as long before it asks the chart's sockets to refetch).
GAP_WAIT_SECONDS: Final = 2.0
#: Changes held waiting for a predecessor at most; beyond, the copy is dropped.
MAX_PENDING: Final = 1000
#: How long a chart whose annotations exceed the whole budget is not loaded again.
OVERSIZED_RETRY_SECONDS: Final = 60.0
#: Charts whose sequence numbers one query of :meth:`AnnotationCache.check` compares.
_CHECK_BATCH: Final = 500


class AnnotationLoader(Protocol):
    """What the cache reads from the database (``AnnotationsRepository``)."""

    async def snapshot(self, chart_id: str) -> tuple[int, list[AnnotationRecord]]: ...

    async def sequence(self, chart_id: str) -> int: ...

    async def sequences(self, chart_ids: list[str]) -> dict[str, int]: ...

    async def query(self, query: AnnotationQuery) -> list[bytes]: ...


@dataclass(slots=True, eq=False)
class _Entry:
    chart_id: str
    unsubscribe: Unsubscribe | None = None
    #: None while loading.
    index: AnnotationIndex | None = None
    #: Changes not applied yet, by sequence: heard while loading, or ahead of a predecessor.
    pending: dict[int, AnnotationEvent] = field(default_factory=dict)
    behind_since: float = 0.0
    nbytes: int = 0


class AnnotationCache:
    """Copies of charts' annotations in this process, read through :meth:`query`.

    Example::

        cache = AnnotationCache(AnnotationsRepository(database), bus, budget_bytes=64 << 20)
        bodies = await cache.query(AnnotationQuery("demo", "alice", start=0, end=86_400))
    """

    def __init__(
        self,
        loader: AnnotationLoader,
        bus: EventBus,
        *,
        budget_bytes: int = 64 << 20,
        validate: bool = False,
        bus_current: Callable[[], bool] | None = None,
    ) -> None:
        self._loader = loader
        self._bus = bus
        self.budget_bytes = budget_bytes
        self._validate = validate
        self._bus_current: Callable[[], bool] = bus_current or _never
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._oversized: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def nbytes(self) -> int:
        """Memory held by the loaded copies (an estimate)."""
        return self._bytes

    def loaded(self, chart_id: str) -> bool:
        """Whether the chart's copy is loaded and has every change heard applied."""
        entry = self._entries.get(chart_id)
        return entry is not None and entry.index is not None and not entry.pending

    async def query(self, query: AnnotationQuery) -> list[bytes]:
        """What :meth:`AnnotationIndex.query` answers, from the copy when it is current, else
        from the database."""
        index = await self._current(query.chart_id)
        if index is not None:
            return index.query(query)
        return await self._loader.query(query)

    async def sequence(self, chart_id: str) -> int:
        """The number of the chart's last annotation change that this process has heard of
        (from the database when the copy cannot tell)."""
        entry = self._entries.get(chart_id)
        if (
            entry is not None
            and entry.index is not None
            and not entry.pending
            and (not self._validate or self._bus_current())
        ):
            return entry.index.sequence
        return await self._loader.sequence(chart_id)

    async def _current(self, chart_id: str) -> AnnotationIndex | None:
        entry = self._entries.get(chart_id)
        if entry is None:
            self._load(chart_id)
            return None
        index = entry.index
        if index is None:
            return None
        if entry.pending:
            if time.monotonic() - entry.behind_since > GAP_WAIT_SECONDS:
                self._drop(entry)
            return None
        self._entries.move_to_end(chart_id)
        if not self._validate or self._bus_current():
            return index
        before = index.sequence
        try:
            stored = await self._loader.sequence(chart_id)
        except DatabaseUnavailable:
            return index  # the best there is, as the charts' cache does
        if self._entries.get(chart_id) is not entry or entry.index is not index:
            return None
        if before <= stored <= index.sequence:
            return index
        self._drop(entry)  # another process changed them, or the chart is another one now
        return None

    # ---------------------------------------------------------------- loading

    def _load(self, chart_id: str) -> None:
        refused = self._oversized.get(chart_id)
        if refused is not None:
            if time.monotonic() - refused < OVERSIZED_RETRY_SECONDS:
                return
            del self._oversized[chart_id]
        entry = self._entries[chart_id] = _Entry(chart_id)
        # Subscribed before the database is read: no change committed after it is missed.
        entry.unsubscribe = self._bus.subscribe(chart_id, lambda event: self._heard(entry, event))
        task = asyncio.create_task(self._fill(entry), name=f"annotations-load-{chart_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fill(self, entry: _Entry) -> None:
        try:
            sequence, records = await self._loader.snapshot(entry.chart_id)
        except Exception as exc:
            if self._entries.get(entry.chart_id) is entry:
                self._drop(entry)
            logger.warning("could not load the annotations of chart %s: %s", entry.chart_id, exc)
            return
        if self._entries.get(entry.chart_id) is not entry:
            return  # dropped meanwhile
        index = AnnotationIndex.of(records, sequence)
        if index.nbytes > self.budget_bytes:
            self._oversized[entry.chart_id] = time.monotonic()
            self._drop(entry)
            return
        entry.index = index
        for number in [n for n in entry.pending if n <= sequence]:
            del entry.pending[number]  # already in what the database answered
        entry.behind_since = time.monotonic()
        if self._catch_up(entry):
            self._resized(entry)

    async def wait_loaded(self) -> None:
        """Wait for the loads started so far (tests use this)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self.invalidate_all()

    # ---------------------------------------------------------------- changes

    def _heard(self, entry: _Entry, event: BusEvent) -> None:
        if isinstance(event, ChartEvent):
            if event.op == "chart_deleted":
                self._drop(entry)
            return
        index = entry.index
        if index is not None and event.sequence <= index.sequence:
            return  # already applied, or in what the database answered
        if index is not None and not entry.pending:
            entry.behind_since = time.monotonic()
        entry.pending[event.sequence] = event
        if len(entry.pending) > MAX_PENDING:
            self._drop(entry)
        elif index is not None and self._catch_up(entry):
            self._resized(entry)

    def _catch_up(self, entry: _Entry) -> bool:
        """Apply the pending changes that follow the copy's sequence; False when the copy had
        to be dropped."""
        index = entry.index
        assert index is not None
        while entry.pending:
            event = entry.pending.pop(index.sequence + 1, None)
            if event is None:
                break
            if not _apply(index, event):
                logger.warning(
                    "dropping the annotations of chart %s: change %d cannot be applied",
                    entry.chart_id,
                    event.sequence,
                )
                self._drop(entry)
                return False
            index.sequence = event.sequence
        return True

    def _resized(self, entry: _Entry) -> None:
        assert entry.index is not None
        self._bytes += entry.index.nbytes - entry.nbytes
        entry.nbytes = entry.index.nbytes
        if entry.nbytes > self.budget_bytes:
            self._oversized[entry.chart_id] = time.monotonic()
            self._drop(entry)
            return
        while self._bytes > self.budget_bytes:
            oldest = next(iter(self._entries.values()))
            self._drop(oldest)

    # ---------------------------------------------------------------- forgetting

    def _drop(self, entry: _Entry) -> None:
        if self._entries.get(entry.chart_id) is entry:
            del self._entries[entry.chart_id]
        self._bytes -= entry.nbytes
        entry.nbytes = 0
        entry.index = None
        entry.pending.clear()
        if entry.unsubscribe is not None:
            entry.unsubscribe()
            entry.unsubscribe = None

    def invalidate(self, chart_id: str) -> None:
        """Forget the chart's copy (changes to it may have been missed)."""
        entry = self._entries.get(chart_id)
        if entry is not None:
            self._drop(entry)

    def invalidate_all(self) -> None:
        """Forget every copy (the bus lost changes: Redis came back after a loss)."""
        for entry in list(self._entries.values()):
            self._drop(entry)
        self._oversized.clear()

    def invalidate_charts(self, chart_ids: list[str] | None) -> None:
        """:meth:`invalidate` for each of ``chart_ids``; ``None``: :meth:`invalidate_all`."""
        if chart_ids is None:
            self.invalidate_all()
        else:
            for chart_id in chart_ids:
                self.invalidate(chart_id)

    async def check(self) -> int:
        """Compare the copies' sequence numbers with the database, a few queries in all, and
        drop those that are behind or ahead (a change whose announcement was lost: its writer
        died between commit and publish). Returns how many were dropped."""
        ids = [chart_id for chart_id, entry in self._entries.items() if entry.index is not None]
        dropped = 0
        for start in range(0, len(ids), _CHECK_BATCH):
            batch = ids[start : start + _CHECK_BATCH]
            before = {
                chart_id: (entry, entry.index.sequence)
                for chart_id in batch
                if (entry := self._entries.get(chart_id)) is not None and entry.index is not None
            }
            stored = await self._loader.sequences(batch)
            for chart_id, (entry, sequence) in before.items():
                index = entry.index
                if self._entries.get(chart_id) is not entry or index is None or entry.pending:
                    continue
                if not sequence <= stored.get(chart_id, 0) <= index.sequence:
                    self._drop(entry)
                    dropped += 1
        return dropped


def _apply(index: AnnotationIndex, event: AnnotationEvent) -> bool:
    if event.op == "delete":
        index.remove(event.annotation_id)
        return True
    if event.data is None:
        return False
    try:
        record = record_from_body(event.chart_id, event.data)
    except (ValueError, KeyError, TypeError):
        return False
    index.put(record)
    return True


def _never() -> bool:
    return False

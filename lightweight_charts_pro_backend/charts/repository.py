"""Every SQL statement of the service: charts, series and points in the database.

Each public method is one unit of work in its own transaction; a write method commits before it
returns, so a caller that got an answer knows the change is durable. Writes lock the chart's row
first (``SELECT ... FOR UPDATE``; SQLite takes its write lock at ``BEGIN IMMEDIATE``), which
serializes writers of one chart across processes and yields the chart's version.

Bulk points go through the driver's fast path: binary ``COPY`` on PostgreSQL, ``executemany`` on
SQLite and MySQL/MariaDB, always inside the one transaction, so a failure leaves the previous
points in place.
"""

from __future__ import annotations

import re
import sqlite3
from array import array
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain, repeat
from typing import Any, Final, Literal

import numpy as np
from sqlalchemy import Integer, Text, cast, delete, func, insert, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select, bindparam
from sqlalchemy.sql.elements import TextClause

from ..database import Database, charts_table, points_table, series_table
from ..errors import ChartNotFound, SeriesNotFound
from .points import MIN_TIME, EncodedPoints, StagedPoints

charts = charts_table
series = series_table
points = points_table

#: Times per ``IN (...)`` list when checking which of a batch's times are already stored.
_IN_BATCH: Final = 2000
#: Points per query when loading a series into memory.
LOAD_PAGE: Final = 20_000
_PG_PAGE: Final = (
    "SELECT time, data::text FROM points WHERE series_pk = $1 AND time > $2 ORDER BY time LIMIT $3"
)
#: Non-append upserts at least this large go through a temporary table on PostgreSQL.
_PG_MERGE_ABOVE: Final = 5000

ChunkQuery = Literal["newest", "before", "after"]


@dataclass(frozen=True, slots=True)
class ChunkRows:
    """Points of a chunk as a JSON array, with their time range, count, and the count the
    caller asked for (see ``ChartsRepository.chunk``)."""

    data: bytes
    first_time: int | None
    last_time: int | None
    count: int
    counted: int


@dataclass(slots=True)
class SeriesRecord:
    key: int
    pane_id: int
    series_id: str
    series_type: str
    options: dict[str, Any]
    count: int
    first_time: int | None
    last_time: int | None
    market: dict[str, Any] | None = None
    aggregation: str | None = None


@dataclass(slots=True)
class ChartRecord:
    chart_id: str
    options: dict[str, Any]
    version: int
    created_at: float
    updated_at: float
    accessed_at: float
    series: list[SeriesRecord]


@dataclass(frozen=True, slots=True)
class ChartSummary:
    """A chart as listed: no points, no series detail."""

    chart_id: str
    options: dict[str, Any]
    series_count: int
    version: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class SeriesMarket:
    """A series that has a ``market``, named by its chart, pane and id (no points)."""

    chart_id: str
    pane_id: int
    series_id: str
    series_type: str
    aggregation: str | None
    market: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Versioned:
    """The chart's version before and after a write; ``previous`` differs from what the caller
    holds when another process changed the chart in between."""

    previous: int
    version: int


@dataclass(frozen=True, slots=True)
class SeriesWritten:
    previous: int
    version: int
    series: SeriesRecord
    added: int


def _texts(encoded: EncodedPoints) -> list[str]:
    """Each point's JSON as ``str`` (what the drivers bind to JSON/TEXT columns)."""
    starts = encoded.offsets[:-1].tolist()
    ends = (encoded.offsets[1:] - 1).tolist()
    body = encoded.body
    if body.isascii():
        text = body.decode("ascii")
        return [text[a:b] for a, b in zip(starts, ends, strict=True)]
    return [body[a:b].decode() for a, b in zip(starts, ends, strict=True)]


def _copy_rows(key: int, encoded: EncodedPoints) -> Iterator[tuple[int, int, str]]:
    return zip(repeat(key), encoded.times, _texts(encoded), strict=False)


def encoded_from_rows(times: Sequence[int], texts: Sequence[str]) -> EncodedPoints:
    """Rebuild the store's representation from ``(time, json)`` rows in ascending time."""
    if not texts:
        return EncodedPoints(array("q"), b"", np.zeros(1, dtype=np.int64))
    joined = ",".join(texts)
    body = ("[" + joined + "]").encode()
    if len(body) == len(joined) + 2:
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    else:
        lengths = np.fromiter((len(t.encode()) for t in texts), dtype=np.int64, count=len(texts))
    offsets = np.empty(len(texts) + 1, dtype=np.int64)
    offsets[0] = 1
    np.cumsum(lengths + 1, out=offsets[1:])
    offsets[1:] += 1
    return EncodedPoints(array("q", times), body, offsets)


class ChartsRepository:
    """The charts tables behind the service. All methods raise ``DatabaseUnavailable`` when the
    database cannot be reached, and then nothing was changed."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._dialect = database.dialect
        # PostgreSQL's driver codec parses json values; the store wants the text.
        self._data = cast(points.c.data, Text) if self._dialect == "postgresql" else points.c.data
        self._chunk_statements = {
            (query, counted): _chunk_statement(self._dialect, query, counted)
            for query in ("newest", "before", "after")
            for counted in (False, True)
        }
        self._pg_chunk_sql = {
            key: _numbered(statement) for key, statement in self._chunk_statements.items()
        }

    # ---------------------------------------------------------------- charts

    async def load_chart(self, chart_id: str) -> ChartRecord | None:
        async with self.database.transaction() as conn:
            return await self._chart_record(conn, chart_id)

    async def _chart_record(self, conn: AsyncConnection, chart_id: str) -> ChartRecord | None:
        row = (await conn.execute(select(charts).where(charts.c.id == chart_id))).first()
        if row is None:
            return None
        rows = await conn.execute(
            select(series).where(series.c.chart_id == chart_id).order_by(series.c.id)
        )
        return ChartRecord(
            chart_id=row.id,
            options=row.options,
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
            accessed_at=row.accessed_at,
            series=[_series_record(r) for r in rows],
        )

    async def snapshot(
        self, chart_id: str, newest: Callable[[SeriesRecord], int | None]
    ) -> tuple[ChartRecord, dict[int, ChunkRows]] | None:
        """The chart as ``load_chart`` reads it and, for each of its series that ``newest``
        gives a count, that many of its newest points (by series key), all read from one
        snapshot of the database: the points are those of the record's version exactly, however
        other processes write meanwhile. None when the chart does not exist."""
        statement = self._chunk_statements[("newest", False)]
        async with self.database.transaction(snapshot=True) as conn:
            record = await self._chart_record(conn, chart_id)
            if record is None:
                return None
            chunks: dict[int, ChunkRows] = {}
            for member in record.series:
                count = newest(member)
                if count is None:
                    continue
                row = (await conn.execute(statement, {"key": member.key, "n": count})).one()
                joined, first, last, n, _ = row
                body = b"[" + joined.encode() + b"]" if joined else b"[]"
                chunks[member.key] = ChunkRows(body, first, last, int(n), 0)
            return record, chunks

    async def chart_version(self, chart_id: str) -> int | None:
        """The chart's committed version, None when it does not exist: one indexed read, for
        checking a cached copy against the database."""
        rows = await self._all(select(charts.c.version).where(charts.c.id == chart_id))
        return int(rows[0][0]) if rows else None

    async def chart_versions(self, chart_ids: list[str]) -> dict[str, int]:
        """The committed versions of those of ``chart_ids`` that exist, in one query."""
        if not chart_ids:
            return {}
        rows = await self._all(
            select(charts.c.id, charts.c.version).where(charts.c.id.in_(chart_ids))
        )
        return {str(row[0]): int(row[1]) for row in rows}

    async def list_charts(self) -> list[ChartSummary]:
        counts = (
            select(func.count())
            .select_from(series)
            .where(series.c.chart_id == charts.c.id)
            .scalar_subquery()
        )
        query = select(
            charts.c.id,
            charts.c.options,
            counts,
            charts.c.version,
            charts.c.created_at,
            charts.c.updated_at,
        ).order_by(charts.c.id)
        rows = await self._all(query)
        return [ChartSummary(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def series_markets(self) -> list[SeriesMarket]:
        """Every series of every chart that has a market, ordered by chart, pane and id: one
        read of the series table."""
        query = (
            select(
                series.c.chart_id,
                series.c.pane_id,
                series.c.series_id,
                series.c.series_type,
                series.c.aggregation,
                series.c.market,
            )
            .where(series.c.market.is_not(None))
            .order_by(series.c.chart_id, series.c.pane_id, series.c.series_id)
        )
        rows = await self._all(query)
        return [
            SeriesMarket(r[0], int(r[1]), r[2], r[3], r[4], r[5])
            for r in rows
            if isinstance(r[5], dict)  # a JSON null is not a market
        ]

    async def insert_chart(
        self, chart_id: str, options: dict[str, Any], now: float
    ) -> ChartRecord | None:
        """Create the chart at version 0; ``None`` when it exists already."""
        try:
            async with self.database.transaction(write=True) as conn:
                await conn.execute(
                    insert(charts).values(
                        id=chart_id,
                        options=options,
                        version=0,
                        created_at=now,
                        updated_at=now,
                        accessed_at=now,
                    )
                )
        except sa_exc.IntegrityError:
            return None
        return ChartRecord(chart_id, options, 0, now, now, now, [])

    async def set_chart_options(
        self, chart_id: str, options: dict[str, Any], now: float
    ) -> Versioned:
        async with self.database.transaction(write=True) as conn:
            versioned = await self._bump(conn, chart_id, now)
            await conn.execute(
                update(charts).where(charts.c.id == chart_id).values(options=options)
            )
        return versioned

    async def bump_version(self, chart_id: str, now: float) -> Versioned:
        """Count a change that stores nothing (an empty update) in the chart's version."""
        async with self.database.transaction(write=True) as conn:
            return await self._bump(conn, chart_id, now)

    async def delete_chart(self, chart_id: str, *, idle_before: float | None = None) -> bool:
        """Delete the chart with its series and points. With ``idle_before``, only when it was
        not read or written since then (checked under the row lock). Returns whether it went."""
        async with self.database.transaction(write=True) as conn:
            row = (
                await conn.execute(
                    select(charts.c.accessed_at).where(charts.c.id == chart_id).with_for_update()
                )
            ).first()
            if row is None or (idle_before is not None and row.accessed_at >= idle_before):
                return False
            keys = select(series.c.id).where(series.c.chart_id == chart_id)
            await conn.execute(delete(points).where(points.c.series_pk.in_(keys)))
            await conn.execute(delete(series).where(series.c.chart_id == chart_id))
            await conn.execute(delete(charts).where(charts.c.id == chart_id))
        return True

    async def idle_charts(self, before: float, limit: int) -> list[str]:
        query = (
            select(charts.c.id)
            .where(charts.c.accessed_at < before)
            .order_by(charts.c.accessed_at)
            .limit(limit)
        )
        return [row[0] for row in await self._all(query)]

    async def recent_charts(self, limit: int) -> list[str]:
        """The ``limit`` charts read or written most recently (as far as recorded)."""
        query = select(charts.c.id).order_by(charts.c.accessed_at.desc()).limit(limit)
        return [row[0] for row in await self._all(query)]

    async def record_access(self, accessed: dict[str, float]) -> None:
        """Move ``accessed_at`` forward for many charts in one statement batch."""
        if not accessed:
            return
        statement = (
            update(charts)
            .where(charts.c.id == bindparam("chart"), charts.c.accessed_at < bindparam("at"))
            .values(accessed_at=bindparam("at"))
        )
        params = [{"chart": chart_id, "at": at} for chart_id, at in accessed.items()]
        async with self.database.transaction(write=True) as conn:
            await conn.execute(statement, params)

    async def _bump(self, conn: AsyncConnection, chart_id: str, now: float) -> Versioned:
        row = (
            await conn.execute(
                select(charts.c.version).where(charts.c.id == chart_id).with_for_update()
            )
        ).first()
        if row is None:
            raise ChartNotFound(chart_id)
        previous = int(row.version)
        await conn.execute(
            update(charts)
            .where(charts.c.id == chart_id)
            .values(version=previous + 1, updated_at=now, accessed_at=now)
        )
        return Versioned(previous, previous + 1)

    @property
    def streams_points(self) -> bool:
        """Whether a replace stores staged points as they are checked (PostgreSQL's COPY)."""
        return self._dialect == "postgresql"

    # ---------------------------------------------------------------- series

    async def replace_series(
        self,
        chart_id: str,
        pane_id: int,
        series_id: str,
        series_type: str,
        options: dict[str, Any],
        encoded: EncodedPoints | StagedPoints,
        now: float,
        *,
        market: dict[str, Any] | None = None,
        aggregation: str | None = None,
    ) -> SeriesWritten:
        """Create or overwrite the series and all its points in one transaction (staged points
        are checked as they are written: a chunk refused rolls the whole write back)."""
        count = len(encoded)
        first = encoded.times[0] if count else None
        last = encoded.times[-1] if count else None
        async with self.database.transaction(write=True) as conn:
            versioned = await self._bump(conn, chart_id, now)
            values = {
                "series_type": series_type,
                "options": options,
                "version": versioned.version,
                "point_count": count,
                "first_time": first,
                "last_time": last,
                "market": market,
                "aggregation": aggregation,
            }
            key = await conn.scalar(
                select(series.c.id).where(
                    series.c.chart_id == chart_id,
                    series.c.pane_id == pane_id,
                    series.c.series_id == series_id,
                )
            )
            if key is None:
                result = await conn.execute(
                    insert(series).values(
                        chart_id=chart_id, pane_id=pane_id, series_id=series_id, **values
                    )
                )
                inserted = result.inserted_primary_key
                assert inserted is not None
                key = int(inserted[0])
            else:
                await conn.execute(update(series).where(series.c.id == key).values(**values))
                await conn.execute(delete(points).where(points.c.series_pk == key))
            await self._insert_points(conn, key, encoded)
        record = SeriesRecord(
            key, pane_id, series_id, series_type, options, count, first, last, market, aggregation
        )
        return SeriesWritten(versioned.previous, versioned.version, record, count)

    async def upsert_points(
        self, chart_id: str, record: SeriesRecord, encoded: EncodedPoints, now: float
    ) -> SeriesWritten:
        """Insert the points, replacing those at stored times; keeps the count and range."""
        key = record.key
        async with self.database.transaction(write=True) as conn:
            versioned = await self._bump(conn, chart_id, now)
            row = (
                await conn.execute(
                    select(series.c.point_count, series.c.first_time, series.c.last_time).where(
                        series.c.id == key
                    )
                )
            ).first()
            if row is None:
                raise SeriesNotFound(chart_id, record.pane_id, record.series_id)
            count, first, last = int(row[0]), row[1], row[2]
            times = encoded.times
            appending = last is None or times[0] > last
            if appending:
                added = len(times)
                await self._insert_points(conn, key, encoded)
            else:
                added = len(times) - await self._count_stored(conn, key, times, first, last)
                await self._upsert_points(conn, key, encoded)
            first = times[0] if first is None else min(first, times[0])
            last = times[-1] if last is None else max(last, times[-1])
            await conn.execute(
                update(series)
                .where(series.c.id == key)
                .values(
                    point_count=count + added,
                    first_time=first,
                    last_time=last,
                    version=versioned.version,
                )
            )
        updated = SeriesRecord(
            key,
            record.pane_id,
            record.series_id,
            record.series_type,
            record.options,
            count + added,
            first,
            last,
            record.market,
            record.aggregation,
        )
        return SeriesWritten(versioned.previous, versioned.version, updated, added)

    async def delete_series(self, chart_id: str, key: int, now: float) -> Versioned:
        async with self.database.transaction(write=True) as conn:
            versioned = await self._bump(conn, chart_id, now)
            await conn.execute(delete(points).where(points.c.series_pk == key))
            await conn.execute(delete(series).where(series.c.id == key))
        return versioned

    # ---------------------------------------------------------------- points: writes

    async def _insert_points(
        self, conn: AsyncConnection, key: int, points: EncodedPoints | StagedPoints
    ) -> None:
        if not len(points):
            return
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        if self._dialect == "postgresql":
            # One COPY, fed chunk by chunk: the server stores a chunk while the next is prepared.
            chunks = points.chunks() if isinstance(points, StagedPoints) else (points,)
            await driver.copy_records_to_table(
                "points",
                records=chain.from_iterable(map(partial(_copy_rows, key), chunks)),
                columns=["series_pk", "time", "data"],
            )
            return
        encoded = points.encoded() if isinstance(points, StagedPoints) else points
        texts = _texts(encoded)
        if self._dialect == "sqlite":
            await driver.executemany(
                "INSERT INTO points (series_pk, time, data) VALUES (?, ?, ?)",
                zip(repeat(key), encoded.times, texts, strict=False),
            )
        else:
            await self._mysql_executemany(
                driver,
                "INSERT INTO points (series_pk, time, data) VALUES (%s, %s, %s)",
                key,
                encoded.times,
                texts,
            )

    async def _upsert_points(self, conn: AsyncConnection, key: int, encoded: EncodedPoints) -> None:
        texts = _texts(encoded)
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        if self._dialect == "postgresql":
            if len(texts) >= _PG_MERGE_ABOVE:
                await driver.execute(
                    "CREATE TEMPORARY TABLE IF NOT EXISTS points_incoming "
                    "(time bigint NOT NULL, data json NOT NULL) ON COMMIT DELETE ROWS"
                )
                await driver.copy_records_to_table(
                    "points_incoming",
                    records=zip(encoded.times, texts, strict=True),
                    columns=["time", "data"],
                )
                await driver.execute(
                    "INSERT INTO points (series_pk, time, data) "
                    "SELECT $1, time, data FROM points_incoming "
                    "ON CONFLICT (series_pk, time) DO UPDATE SET data = EXCLUDED.data",
                    key,
                )
            else:
                await driver.executemany(
                    "INSERT INTO points (series_pk, time, data) VALUES ($1, $2, $3) "
                    "ON CONFLICT (series_pk, time) DO UPDATE SET data = EXCLUDED.data",
                    zip(repeat(key), encoded.times, texts, strict=False),
                )
        elif self._dialect == "sqlite":
            await driver.executemany(
                "INSERT INTO points (series_pk, time, data) VALUES (?, ?, ?) "
                "ON CONFLICT (series_pk, time) DO UPDATE SET data = excluded.data",
                zip(repeat(key), encoded.times, texts, strict=False),
            )
        else:
            await self._mysql_executemany(
                driver,
                "INSERT INTO points (series_pk, time, data) VALUES (%s, %s, %s) "
                "ON DUPLICATE KEY UPDATE data = VALUES(data)",
                key,
                encoded.times,
                texts,
            )

    async def _mysql_executemany(
        self, driver: Any, statement: str, key: int, times: Sequence[int], texts: list[str]
    ) -> None:
        # The drivers turn executemany of an INSERT into multi-row INSERTs of about 1 MB each.
        batch = 50_000
        async with driver.cursor() as cursor:
            for start in range(0, len(texts), batch):
                end = start + batch
                rows = list(zip(repeat(key), times[start:end], texts[start:end], strict=False))
                await cursor.executemany(statement, rows)

    async def _count_stored(
        self,
        conn: AsyncConnection,
        key: int,
        times: Sequence[int],
        first: int | None,
        last: int | None,
    ) -> int:
        """How many of ``times`` the series holds already."""
        if first is None or last is None:
            return 0
        column = np.frombuffer(times, dtype=np.int64)  # type: ignore[call-overload]
        candidates = column[(column >= first) & (column <= last)].tolist()
        stored = 0
        for start in range(0, len(candidates), _IN_BATCH):
            batch = candidates[start : start + _IN_BATCH]
            stored += int(
                await conn.scalar(
                    select(func.count())
                    .select_from(points)
                    .where(points.c.series_pk == key, points.c.time.in_(batch))
                )
                or 0
            )
        return stored

    # ---------------------------------------------------------------- points: reads

    async def load_points(self, key: int, page: int = LOAD_PAGE) -> AsyncIterator[EncodedPoints]:
        """Every point of the series in ascending time, as consecutive pages (keyset queries),
        so that loading a large series leaves the event loop free between pages. The pages come
        from separate statements: the caller keeps writers out meanwhile."""
        after = MIN_TIME - 1
        while True:
            rows = await self._page(key, after, page)
            if not rows:
                return
            yield encoded_from_rows([r[0] for r in rows], [r[1] for r in rows])
            if len(rows) < page:
                return
            after = rows[-1][0]

    async def _page(self, key: int, after: int, limit: int) -> Sequence[Any]:
        if self._dialect == "postgresql":

            async def fetch(conn: AsyncConnection) -> Sequence[Any]:
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                rows: Sequence[Any] = await driver.fetch(_PG_PAGE, key, after, limit)
                return rows

            return await self.database.read(fetch)
        return await self._all(
            select(points.c.time, self._data)
            .where(points.c.series_pk == key, points.c.time > after)
            .order_by(points.c.time)
            .limit(limit)
        )

    async def chunk(
        self, key: int, query: ChunkQuery, at: int, count: int, counted_from: int | None
    ) -> ChunkRows:
        """Up to ``count`` points: the newest, strictly before ``at``, or strictly after
        ``at`` (keyset on the primary key, no OFFSET), and how many points lie in
        ``[counted_from, at)`` (``[counted_from, at]`` after; 0 without ``counted_from``).

        One statement, so the points and the count come from one snapshot; the database joins
        the points' JSON itself and ships one row.
        """
        statement = self._chunk_statements[(query, counted_from is not None)]
        params = {"key": key, "at": at, "n": count, "low": counted_from}

        async def fetch(conn: AsyncConnection) -> ChunkRows:
            if self._dialect == "postgresql":
                # the hot path of a series not in memory: asyncpg directly (its statement cache,
                # no result processing) saves a good part of the per-chunk overhead
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                sql, names = self._pg_chunk_sql[(query, counted_from is not None)]
                row = await driver.fetchrow(sql, *(params[name] for name in names))
                joined, first, last, n, counted = row
                body = b"[" + joined.encode() + b"]" if joined else b"[]"
                return ChunkRows(body, first, last, int(n), int(counted or 0))
            if self._dialect == "sqlite":
                # likewise: one hop to aiosqlite's thread, no SQLAlchemy result processing
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                rows = await driver.execute_fetchall(statement.text, params)
                joined, first, last, n, counted = rows[0]
                body = b"[" + joined.encode() + b"]" if joined else b"[]"
                return ChunkRows(body, first, last, int(n), int(counted or 0))
            row = (await conn.execute(statement, params)).one()
            joined, first, last, n, counted = row
            body = b"[" + joined.encode() + b"]" if joined else b"[]"
            return ChunkRows(body, first, last, int(n), int(counted or 0))

        return await self.database.read(fetch)

    async def sample_times(self, key: int, step: int) -> tuple[array[int], int]:
        """The times of points ``0, step, 2*step, ...`` and the number of points, in one
        statement (one snapshot), computed by the database: one pass over the series' index,
        only the samples shipped."""
        numbered = (
            select(
                points.c.time.label("time"),
                func.row_number().over(order_by=points.c.time).label("rn"),
                func.count().over().label("total"),
            )
            .where(points.c.series_pk == key)
            .subquery()
        )
        query = (
            select(numbered.c.time, numbered.c.total)
            .where((numbered.c.rn - 1) % step == 0)
            .order_by(numbered.c.time)
        )
        rows = await self._all(query)
        return array("q", (r[0] for r in rows)), int(rows[0][1]) if rows else 0

    async def _all(self, query: Select[Any]) -> Sequence[Any]:
        """The rows of one read statement (indexable like tuples)."""

        async def fetch(conn: AsyncConnection) -> Sequence[Any]:
            rows: Sequence[Any] = (await conn.execute(query)).all()
            return rows

        return await self.database.read(fetch)


def _chunk_statement(dialect: str, query: ChunkQuery, counted: bool) -> TextClause:
    """The SQL of ``ChartsRepository.chunk``, written out per dialect because the point is to
    let the database join the JSON (``string_agg``, ``group_concat``)."""
    where = {
        "newest": "series_pk = :key",
        "before": "series_pk = :key AND time < :at",
        "after": "series_pk = :key AND time > :at",
    }[query]
    order = "ASC" if query == "after" else "DESC"
    window = f"SELECT time, data FROM points WHERE {where} ORDER BY time {order} LIMIT :n"
    upper = "<=" if query == "after" else "<"
    count = (
        "(SELECT count(*) FROM points AS counted WHERE counted.series_pk = :key "
        f"AND counted.time >= :low AND counted.time {upper} :at)"
        if counted
        else "0"
    )
    if dialect == "postgresql":
        sql = (
            "SELECT string_agg(chunk.data::text, ',' ORDER BY chunk.time), min(chunk.time), "
            f"max(chunk.time), count(*), {count} FROM ({window}) AS chunk"
        )
    elif dialect == "sqlite":
        if sqlite3.sqlite_version_info >= (3, 44):
            joined = "group_concat(chunk.data, ',' ORDER BY chunk.time)"
        else:
            # before 3.44 group_concat takes no ORDER BY; it concatenates in the order the
            # ordered subquery produces its rows (checked against the memory store by the tests)
            joined = "group_concat(chunk.data, ',')"
            window = f"SELECT time, data FROM ({window}) ORDER BY time"
        sql = (
            f"SELECT {joined}, min(chunk.time), max(chunk.time), count(*), {count} "
            f"FROM ({window}) AS chunk"
        )
    else:  # MySQL/MariaDB; the connection raises group_concat_max_len (see database.py)
        sql = (
            "SELECT GROUP_CONCAT(chunk.data ORDER BY chunk.time SEPARATOR ','), "
            f"MIN(chunk.time), MAX(chunk.time), COUNT(*), {count} FROM ({window}) AS chunk"
        )
    statement = text(sql).bindparams(bindparam("n", type_=Integer))
    return statement


def _numbered(statement: TextClause) -> tuple[str, list[str]]:
    """``:name`` parameters turned into asyncpg's ``$1``..., and the names in that order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return re.sub(r"(?<!:):([a-z]+)\b", number, statement.text), names


def _series_record(row: Any) -> SeriesRecord:
    return SeriesRecord(
        key=int(row.id),
        pane_id=int(row.pane_id),
        series_id=row.series_id,
        series_type=row.series_type,
        options=row.options,
        count=int(row.point_count),
        first_time=row.first_time,
        last_time=row.last_time,
        market=row.market,
        aggregation=row.aggregation,
    )

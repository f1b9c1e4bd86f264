"""Every SQL statement of the annotations: the ``annotations`` and ``annotation_heads`` tables.

A write is one transaction that first locks the chart's row (``SELECT ... FOR UPDATE``; SQLite
takes its write lock at ``BEGIN IMMEDIATE``): annotation writers of one chart are serialized
across processes, so the count limit holds and each change gets the next number of the chart's
annotation sequence, the order in which every socket receives them. Deleting a chart deletes its
annotations through the foreign keys.

A listing is one statement on the ``(chart_id, end_time, start_time)`` index that returns the
annotations' stored JSON, not re-encoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..database import Database, annotation_heads_table, annotations_table, charts_table
from ..errors import ChartNotFound
from .errors import AnnotationExists, TooManyAnnotations
from .schemas import AnnotationRecord

stored = annotations_table
heads = annotation_heads_table
charts = charts_table


class AnnotationQuery:
    """What a listing asks for: a viewer's annotations of one chart whose span overlaps
    ``[start, end)`` (``None``: unbounded), optionally of one pane, series or kind."""

    __slots__ = ("chart_id", "end", "kind", "pane_id", "series_id", "start", "viewer")

    def __init__(
        self,
        chart_id: str,
        viewer: str,
        *,
        start: int | None = None,
        end: int | None = None,
        pane_id: int | None = None,
        series_id: str | None = None,
        kind: str | None = None,
    ) -> None:
        self.chart_id = chart_id
        self.viewer = viewer
        self.start = start
        self.end = end
        self.pane_id = pane_id
        self.series_id = series_id
        self.kind = kind

    def matches(self, record: AnnotationRecord) -> bool:
        return (
            record.visible_to(self.viewer)
            and (self.pane_id is None or record.pane_id == self.pane_id)
            and (self.series_id is None or record.series_id == self.series_id)
            and (self.kind is None or record.kind == self.kind)
        )


class AnnotationStore(Protocol):
    """Where annotations live: the database (:class:`AnnotationsRepository`) or memory
    (``memory.MemoryAnnotations``). Each write returns the chart's annotation sequence number
    after it, or ``None`` when ``expected_version`` no longer matches (changed or deleted)."""

    async def insert(self, record: AnnotationRecord, limit: int) -> int: ...

    async def get(self, chart_id: str, annotation_id: str) -> AnnotationRecord | None: ...

    async def replace(self, record: AnnotationRecord, expected_version: int) -> int | None: ...

    async def delete(
        self, chart_id: str, annotation_id: str, expected_version: int
    ) -> int | None: ...

    async def query(self, query: AnnotationQuery) -> list[bytes]: ...

    async def sequence(self, chart_id: str) -> int: ...

    def forget(self, chart_id: str) -> None: ...


class AnnotationsRepository:
    """The annotation tables. Methods raise ``DatabaseUnavailable`` when the database cannot be
    reached, and then nothing was changed."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def insert(self, record: AnnotationRecord, limit: int) -> int:
        """Store a new annotation; 413 when the chart holds ``limit`` already, 409 when its id
        is taken, 404 when the chart is gone."""
        async with self.database.transaction(write=True) as conn:
            sequence, count = await self._head(conn, record.chart_id)
            if count >= limit:
                raise TooManyAnnotations(
                    f"Chart '{record.chart_id}' holds {count} annotations, the most it may "
                    f"(MAX_ANNOTATIONS_PER_CHART={limit}); delete some first."
                )
            taken = await conn.scalar(
                select(stored.c.version).where(*_key(record.chart_id, record.annotation_id))
            )
            if taken is not None:
                raise AnnotationExists(
                    f"Chart '{record.chart_id}' already has an annotation "
                    f"'{record.annotation_id}'; PATCH it, or leave annotationId out."
                )
            await conn.execute(insert(stored).values(_row(record)))
            return await self._advance(conn, record.chart_id, sequence, count + 1)

    async def get(self, chart_id: str, annotation_id: str) -> AnnotationRecord | None:
        async def fetch(conn: AsyncConnection) -> Sequence[Any]:
            query = select(*_RECORD_COLUMNS).where(*_key(chart_id, annotation_id))
            rows: Sequence[Any] = (await conn.execute(query)).all()
            return rows

        rows = await self.database.read(fetch)
        return _record(rows[0]) if rows else None

    async def replace(self, record: AnnotationRecord, expected_version: int) -> int | None:
        async with self.database.transaction(write=True) as conn:
            sequence, count = await self._head(conn, record.chart_id)
            result = await conn.execute(
                update(stored)
                .where(
                    *_key(record.chart_id, record.annotation_id),
                    stored.c.version == expected_version,
                )
                .values(_row(record))
            )
            if result.rowcount != 1:
                return None
            return await self._advance(conn, record.chart_id, sequence, count)

    async def delete(self, chart_id: str, annotation_id: str, expected_version: int) -> int | None:
        async with self.database.transaction(write=True) as conn:
            sequence, count = await self._head(conn, chart_id)
            result = await conn.execute(
                delete(stored).where(
                    *_key(chart_id, annotation_id), stored.c.version == expected_version
                )
            )
            if result.rowcount != 1:
                return None
            return await self._advance(conn, chart_id, sequence, count - 1)

    async def query(self, query: AnnotationQuery) -> list[bytes]:
        conditions = [
            stored.c.chart_id == query.chart_id,
            or_(stored.c.visibility == "chart", stored.c.owner == query.viewer),
        ]
        if query.start is not None:
            conditions.append(stored.c.end_time >= query.start)
        if query.end is not None:
            conditions.append(stored.c.start_time < query.end)
        if query.pane_id is not None:
            conditions.append(stored.c.pane_id == query.pane_id)
        if query.series_id is not None:
            conditions.append(stored.c.series_id == query.series_id)
        if query.kind is not None:
            conditions.append(stored.c.kind == query.kind)
        statement = (
            select(stored.c.body)
            .where(*conditions)
            .order_by(stored.c.start_time, stored.c.annotation_id)
        )

        async def fetch(conn: AsyncConnection) -> list[bytes]:
            return [row[0].encode() for row in await conn.execute(statement)]

        return await self.database.read(fetch)

    async def sequence(self, chart_id: str) -> int:
        """The number of the chart's last annotation change (0 before its first)."""
        return (await self.sequences([chart_id])).get(chart_id, 0)

    async def sequences(self, chart_ids: list[str]) -> dict[str, int]:
        """:meth:`sequence` of each of ``chart_ids`` that has had an annotation."""
        statement = select(heads.c.chart_id, heads.c.sequence).where(
            heads.c.chart_id.in_(chart_ids)
        )

        async def fetch(conn: AsyncConnection) -> dict[str, int]:
            return {row[0]: int(row[1]) for row in await conn.execute(statement)}

        return await self.database.read(fetch)

    async def snapshot(self, chart_id: str) -> tuple[int, list[AnnotationRecord]]:
        """Every annotation of the chart, and a sequence number they include at least: the
        number is read first, so changes committed meanwhile may be there too (replaying their
        events on top changes nothing)."""

        async def fetch(conn: AsyncConnection) -> tuple[int, list[AnnotationRecord]]:
            sequence = await conn.scalar(
                select(heads.c.sequence).where(heads.c.chart_id == chart_id)
            )
            rows = await conn.execute(select(*_RECORD_COLUMNS).where(stored.c.chart_id == chart_id))
            return int(sequence or 0), [_record(row) for row in rows]

        return await self.database.read(fetch)

    def forget(self, chart_id: str) -> None:
        """Nothing to do: the database deletes a chart's annotations with the chart."""

    async def _head(self, conn: AsyncConnection, chart_id: str) -> tuple[int, int]:
        """Lock the chart's row; its annotation sequence number and count (0, 0 before its
        first annotation)."""
        locked = await conn.scalar(
            select(charts.c.id).where(charts.c.id == chart_id).with_for_update()
        )
        if locked is None:
            raise ChartNotFound(chart_id)
        row = (
            await conn.execute(
                select(heads.c.sequence, heads.c.count).where(heads.c.chart_id == chart_id)
            )
        ).first()
        if row is None:
            await conn.execute(insert(heads).values(chart_id=chart_id, sequence=0, count=0))
            return 0, 0
        return int(row[0]), int(row[1])

    async def _advance(
        self, conn: AsyncConnection, chart_id: str, sequence: int, count: int
    ) -> int:
        await conn.execute(
            update(heads)
            .where(heads.c.chart_id == chart_id)
            .values(sequence=sequence + 1, count=count)
        )
        return sequence + 1


_RECORD_COLUMNS = (
    stored.c.chart_id,
    stored.c.annotation_id,
    stored.c.kind,
    stored.c.pane_id,
    stored.c.series_id,
    stored.c.visibility,
    stored.c.owner,
    stored.c.version,
    stored.c.start_time,
    stored.c.end_time,
    stored.c.created_at,
    stored.c.updated_at,
    stored.c.body,
)


def _key(chart_id: str, annotation_id: str) -> tuple[Any, Any]:
    return stored.c.chart_id == chart_id, stored.c.annotation_id == annotation_id


def _row(record: AnnotationRecord) -> dict[str, Any]:
    return {
        "chart_id": record.chart_id,
        "annotation_id": record.annotation_id,
        "kind": record.kind,
        "pane_id": record.pane_id,
        "series_id": record.series_id,
        "visibility": record.visibility,
        "owner": record.owner,
        "version": record.version,
        "start_time": record.start_time,
        "end_time": record.end_time,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "body": record.body.decode(),
    }


def _record(row: Any) -> AnnotationRecord:
    return AnnotationRecord(
        chart_id=row[0],
        annotation_id=row[1],
        kind=row[2],
        pane_id=int(row[3]),
        series_id=row[4],
        visibility=row[5],
        owner=row[6],
        version=int(row[7]),
        start_time=int(row[8]),
        end_time=int(row[9]),
        created_at=float(row[10]),
        updated_at=float(row[11]),
        body=row[12].encode(),
    )

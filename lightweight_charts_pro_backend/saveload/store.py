"""Where saved layouts live: the ``saved_layouts`` table, or memory without persistence.

Every entry belongs to one ``(client, user)``. Chart layouts (kind ``chart``) are named freely
and found by their numeric id; templates (``study_template``, ``drawing_template`` with its
``tool``) by name, and saving one under a name it already has replaces it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..database import Database, saved_layouts_table

LayoutKind = Literal["chart", "study_template", "drawing_template"]
layouts = saved_layouts_table


@dataclass(frozen=True, slots=True)
class Owner:
    client: str
    user: str


@dataclass(frozen=True, slots=True)
class Layout:
    id: int
    kind: LayoutKind
    tool: str
    name: str
    symbol: str
    resolution: str
    timestamp: int
    content: str


class LayoutStore(Protocol):
    async def add(self, owner: Owner, layout: Layout) -> int: ...

    async def update(self, owner: Owner, layout: Layout) -> bool: ...

    async def put(self, owner: Owner, layout: Layout) -> None: ...

    async def get(
        self, owner: Owner, kind: LayoutKind, *, id: int | None = None, tool: str = "",
        name: str | None = None,
    ) -> Layout | None: ...  # fmt: skip

    async def listing(self, owner: Owner, kind: LayoutKind, tool: str = "") -> list[Layout]: ...

    async def remove(
        self, owner: Owner, kind: LayoutKind, *, id: int | None = None, tool: str = "",
        name: str | None = None,
    ) -> bool: ...  # fmt: skip


class LayoutsRepository:
    """The ``saved_layouts`` table; each method is one transaction."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def add(self, owner: Owner, layout: Layout) -> int:
        """Store a new chart layout; returns its id."""
        async with self.database.transaction(write=True) as conn:
            result = await conn.execute(insert(layouts).values(_row(owner, layout)))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    async def update(self, owner: Owner, layout: Layout) -> bool:
        """Overwrite the chart layout ``layout.id``; False when the owner has none by that id."""
        async with self.database.transaction(write=True) as conn:
            result = await conn.execute(
                update(layouts)
                .where(*_owned(owner, "chart"), layouts.c.id == layout.id)
                .values(
                    name=layout.name,
                    symbol=layout.symbol,
                    resolution=layout.resolution,
                    timestamp=layout.timestamp,
                    content=layout.content,
                )
            )
        return bool(result.rowcount == 1)

    async def put(self, owner: Owner, layout: Layout) -> None:
        """Save a template under its name, replacing one of that name: one statement on the
        unique template name, so that saves of one name that race leave one template."""
        row = _row(owner, layout)
        changed = {name: row[name] for name in ("symbol", "resolution", "timestamp", "content")}
        statement: Any
        if self.database.dialect == "mysql":
            statement = mysql.insert(layouts).values(row).on_duplicate_key_update(changed)
        else:
            dialect = postgresql if self.database.dialect == "postgresql" else sqlite
            statement = (
                dialect.insert(layouts)
                .values(row)
                .on_conflict_do_update(index_elements=_TEMPLATE_KEY, set_=changed)
            )
        async with self.database.transaction(write=True) as conn:
            await conn.execute(statement)

    async def get(
        self,
        owner: Owner,
        kind: LayoutKind,
        *,
        id: int | None = None,
        tool: str = "",
        name: str | None = None,
    ) -> Layout | None:
        query = select(*_COLUMNS, layouts.c.content).where(
            *_owned(owner, kind), *_which(id, tool, name)
        )
        rows = await self._all(query.order_by(layouts.c.id.desc()).limit(1))
        return _layout(rows[0]) if rows else None

    async def listing(self, owner: Owner, kind: LayoutKind, tool: str = "") -> list[Layout]:
        query = select(*_COLUMNS).where(*_owned(owner, kind))
        if kind == "drawing_template":
            query = query.where(layouts.c.tool == tool)
        return [_layout(row) for row in await self._all(query.order_by(layouts.c.id))]

    async def remove(
        self,
        owner: Owner,
        kind: LayoutKind,
        *,
        id: int | None = None,
        tool: str = "",
        name: str | None = None,
    ) -> bool:
        async with self.database.transaction(write=True) as conn:
            result = await conn.execute(
                delete(layouts).where(*_owned(owner, kind), *_which(id, tool, name))
            )
        return bool(result.rowcount)

    async def _all(self, query: Any) -> Sequence[Any]:
        async def fetch(conn: AsyncConnection) -> Sequence[Any]:
            rows: Sequence[Any] = (await conn.execute(query)).all()
            return rows

        return await self.database.read(fetch)


_COLUMNS = (
    layouts.c.id,
    layouts.c.kind,
    layouts.c.tool,
    layouts.c.name,
    layouts.c.symbol,
    layouts.c.resolution,
    layouts.c.timestamp,
)


_TEMPLATE_KEY = (
    layouts.c.client,
    layouts.c.user_id,
    layouts.c.kind,
    layouts.c.tool,
    layouts.c.template_name,
)


def _owned(owner: Owner, kind: LayoutKind) -> tuple[Any, ...]:
    return (
        layouts.c.client == owner.client,
        layouts.c.user_id == owner.user,
        layouts.c.kind == kind,
    )


def _which(id: int | None, tool: str, name: str | None) -> list[Any]:
    if id is not None:
        return [layouts.c.id == id]
    return [layouts.c.tool == tool, layouts.c.name == name]


def _row(owner: Owner, layout: Layout) -> dict[str, Any]:
    return {
        "client": owner.client,
        "user_id": owner.user,
        "kind": layout.kind,
        "tool": layout.tool,
        "name": layout.name,
        "symbol": layout.symbol,
        "resolution": layout.resolution,
        "timestamp": layout.timestamp,
        "content": layout.content,
        "template_name": None if layout.kind == "chart" else layout.name,
    }


def _layout(row: Any) -> Layout:
    return Layout(
        id=int(row[0]),
        kind=row[1],
        tool=row[2],
        name=row[3],
        symbol=row[4],
        resolution=row[5],
        timestamp=int(row[6]),
        content=row[7] if len(row) > 7 else "",
    )


class MemoryLayouts:
    """The same in this process's memory."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Owner, Layout]] = {}
        self._ids = itertools.count(1)

    async def add(self, owner: Owner, layout: Layout) -> int:
        key = next(self._ids)
        self._entries[key] = (owner, replace(layout, id=key))
        return key

    async def update(self, owner: Owner, layout: Layout) -> bool:
        found = self._entries.get(layout.id)
        if found is None or found[0] != owner or found[1].kind != "chart":
            return False
        self._entries[layout.id] = (owner, layout)
        return True

    async def put(self, owner: Owner, layout: Layout) -> None:
        found = self._matching(owner, layout.kind, None, layout.tool, layout.name)
        if found:
            self._entries[found[0].id] = (owner, replace(layout, id=found[0].id))
        else:
            await self.add(owner, layout)

    async def get(
        self,
        owner: Owner,
        kind: LayoutKind,
        *,
        id: int | None = None,
        tool: str = "",
        name: str | None = None,
    ) -> Layout | None:
        found = self._matching(owner, kind, id, tool, name)
        return found[-1] if found else None

    async def listing(self, owner: Owner, kind: LayoutKind, tool: str = "") -> list[Layout]:
        return [
            layout
            for who, layout in self._entries.values()
            if who == owner
            and layout.kind == kind
            and (kind != "drawing_template" or layout.tool == tool)
        ]

    async def remove(
        self,
        owner: Owner,
        kind: LayoutKind,
        *,
        id: int | None = None,
        tool: str = "",
        name: str | None = None,
    ) -> bool:
        found = self._matching(owner, kind, id, tool, name)
        for layout in found:
            del self._entries[layout.id]
        return bool(found)

    def _matching(
        self, owner: Owner, kind: LayoutKind, id: int | None, tool: str, name: str | None
    ) -> list[Layout]:
        return [
            layout
            for who, layout in self._entries.values()
            if who == owner
            and layout.kind == kind
            and (layout.id == id if id is not None else (layout.tool, layout.name) == (tool, name))
        ]

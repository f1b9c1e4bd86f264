"""The rules of the save/load API: whose entries a caller reaches, names, sizes.

TradingView's Charting Library names the user in every request (``user=``). With ``ENABLE_AUTH``
that must be the caller's own identity (the token's ``sub``, ``apikey:<name>`` for an API key),
else 403: a user's layouts are theirs alone. Without auth, the library's ``user`` is taken as it
comes, as in TradingView's own sample backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from ..auth import Principal
from ..errors import ChartsError, Forbidden, InvalidRequest, PayloadTooLarge
from .store import Layout, LayoutKind, LayoutStore, Owner

FIELD_LENGTHS: Final = {"client": 64, "user": 128, "name": 128, "tool": 64, "symbol": 128}
RESOLUTION_LENGTH: Final = 16


class LayoutNotFound(ChartsError):
    status_code = 404
    error_code = "LAYOUT_NOT_FOUND"


class LayoutTooLarge(PayloadTooLarge):
    error_code = "LAYOUT_TOO_LARGE"


class SaveLoadService:
    """Saved chart layouts, study templates and drawing templates per client and user.

    Example::

        service = SaveLoadService(MemoryLayouts())
        owner = service.owner(ANONYMOUS, "tv-client", "user-1", enforce=False)
        chart_id = await service.save_chart(owner, {"name": "BTC 1h", "content": "{...}",
                                                     "symbol": "BTCUSD", "resolution": "60"})
    """

    def __init__(
        self,
        store: LayoutStore,
        *,
        max_layout_bytes: int = 2 * 2**20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.max_layout_bytes = max_layout_bytes
        self._clock = clock

    def owner(
        self, caller: Principal, client: str | None, user: str | None, *, enforce: bool
    ) -> Owner:
        client = text_field(client, "client")
        user = text_field(user, "user")
        if enforce and user != caller.sub:
            raise Forbidden(
                f"user must be your own identity ({caller.sub[:128]!r}); the layouts of "
                "another user are not yours to read or change."
            )
        return Owner(client, user)

    # ---------------------------------------------------------------- chart layouts

    async def charts(self, owner: Owner) -> list[dict[str, Any]]:
        return [
            {
                "id": layout.id,
                "name": layout.name,
                "timestamp": layout.timestamp,
                "symbol": layout.symbol,
                "resolution": layout.resolution,
            }
            for layout in await self._store.listing(owner, "chart")
        ]

    async def chart(self, owner: Owner, chart_id: str) -> dict[str, Any]:
        layout = await self._store.get(owner, "chart", id=layout_id(chart_id))
        if layout is None:
            raise LayoutNotFound(f"There is no saved chart {chart_id[:40]!r} of this user.")
        return {
            "id": layout.id,
            "name": layout.name,
            "timestamp": layout.timestamp,
            "content": layout.content,
        }

    async def save_chart(self, owner: Owner, form: dict[str, str], chart_id: str | None) -> int:
        """Save a new layout (returns its id) or overwrite ``chart_id``."""
        layout = Layout(
            id=0 if chart_id is None else layout_id(chart_id),
            kind="chart",
            tool="",
            name=text_field(form.get("name"), "name"),
            symbol=text_field(form.get("symbol", ""), "symbol", required=False),
            resolution=_resolution(form.get("resolution", "")),
            timestamp=int(self._clock()),
            content=self._content(form.get("content")),
        )
        if chart_id is None:
            return await self._store.add(owner, layout)
        if not await self._store.update(owner, layout):
            raise LayoutNotFound(f"There is no saved chart {chart_id[:40]!r} of this user.")
        return layout.id

    async def delete_chart(self, owner: Owner, chart_id: str) -> None:
        if not await self._store.remove(owner, "chart", id=layout_id(chart_id)):
            raise LayoutNotFound(f"There is no saved chart {chart_id[:40]!r} of this user.")

    # ---------------------------------------------------------------- templates

    async def template_names(self, owner: Owner, kind: LayoutKind, tool: str = "") -> list[str]:
        names = [layout.name for layout in await self._store.listing(owner, kind, tool)]
        return list(dict.fromkeys(names))

    async def template(
        self, owner: Owner, kind: LayoutKind, name: str, tool: str = ""
    ) -> dict[str, str]:
        layout = await self._store.get(owner, kind, tool=tool, name=text_field(name, "name"))
        if layout is None:
            raise LayoutNotFound(f"There is no {_what(kind, tool)} named {name[:128]!r}.")
        return {"name": layout.name, "content": layout.content}

    async def save_template(
        self, owner: Owner, kind: LayoutKind, name: str | None, content: str | None, tool: str = ""
    ) -> None:
        layout = Layout(
            id=0,
            kind=kind,
            tool=tool,
            name=text_field(name, "name"),
            symbol="",
            resolution="",
            timestamp=int(self._clock()),
            content=self._content(content),
        )
        await self._store.put(owner, layout)

    async def delete_template(
        self, owner: Owner, kind: LayoutKind, name: str, tool: str = ""
    ) -> None:
        if not await self._store.remove(owner, kind, tool=tool, name=text_field(name, "name")):
            raise LayoutNotFound(f"There is no {_what(kind, tool)} named {name[:128]!r}.")

    def _content(self, content: str | None) -> str:
        if content is None:
            raise InvalidRequest("Field content is required.")
        size = len(content.encode())
        if size > self.max_layout_bytes:
            raise LayoutTooLarge(
                f"content is {size} bytes; the limit is {self.max_layout_bytes} (MAX_LAYOUT_BYTES)."
            )
        return content


def text_field(value: str | None, name: str, *, required: bool = True) -> str:
    limit = FIELD_LENGTHS[name]
    if value is None or (required and not value.strip()):
        raise InvalidRequest(f"{name} is required.")
    if len(value) > limit:
        raise InvalidRequest(f"{name} may have at most {limit} characters; got {len(value)}.")
    return value


def layout_id(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise InvalidRequest(f"chart must be the numeric id of a saved chart; got {value[:40]!r}.")
    return int(value)


def _resolution(value: str) -> str:
    if len(value) > RESOLUTION_LENGTH:
        raise InvalidRequest(
            f"resolution may have at most {RESOLUTION_LENGTH} characters; got {len(value)}."
        )
    return value


def _what(kind: LayoutKind, tool: str) -> str:
    return f"drawing template of {tool[:64]!r}" if kind == "drawing_template" else "study template"

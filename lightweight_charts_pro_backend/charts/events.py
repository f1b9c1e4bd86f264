"""What the charts service announces after each committed change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

EventOp = Literal["replace", "upsert", "delete", "options", "chart_deleted"]


@dataclass(frozen=True, slots=True)
class ChartEvent:
    """One change of one chart; ``version`` is the chart's version after the change.

    ``data`` holds the JSON array of the points an ``upsert`` wrote, encoded once so that every
    listener can forward the bytes without re-encoding. ``options`` holds the chart's new options
    on an ``options`` event; ``total`` the series' point count after an ``upsert``.
    """

    chart_id: str
    version: int
    op: EventOp
    pane_id: int | None = None
    series_id: str | None = None
    count: int = 0
    data: bytes | None = None
    options: dict[str, Any] | None = None
    total: int | None = None

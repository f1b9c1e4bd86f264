"""Wire shapes of the REST contract, camelCase on the wire, snake_case accepted in requests.

The data and history routes build their responses as bytes for speed; these models document
those responses in the OpenAPI schema and validate the small request bodies.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ErrorBody(WireModel):
    detail: str
    error_code: str
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


class ChartSummary(WireModel):
    chart_id: str
    options: dict[str, Any]
    series_count: int
    updated_at: str = Field(description="ISO-8601 UTC time of the last change")


class ChartList(WireModel):
    charts: list[ChartSummary]


class ChartCreated(WireModel):
    chart_id: str
    options: dict[str, Any]
    version: int = Field(
        description="The chart's version after the write: pass it as min_version to read it back."
    )


class Market(BaseModel):
    """A series' market: IANA timezone and TradingView session; other keys are kept as given."""

    model_config = ConfigDict(extra="allow")
    timezone: str = Field(default="Etc/UTC", examples=["America/New_York"])
    session: str = Field(
        default="24x7",
        description="HHMM-HHMM[,HHMM-HHMM...][:DAYS], days 1 = Sunday ... 7 = Saturday; a range "
        "ending before it starts crosses midnight (CME: 1700-1600:23456).",
        examples=["0930-1600:23456"],
    )


class SeriesWrite(WireModel):
    """Body of a series replace; ``data`` is a list of points keyed by ``time``."""

    pane_id: int = Field(default=0, ge=0, le=100)
    series_type: str
    data: list[dict[str, Any]]
    options: dict[str, Any] | None = None
    market: Market | None = Field(
        default=None,
        description="The market calendar bars at other resolutions follow, and symbol metadata.",
    )
    aggregation: Literal["last", "first", "max", "min", "sum", "mean"] | None = Field(
        default=None,
        description="How a value series' value aggregates into bars (default: last; histogram: "
        "sum; a custom series has bars only with one).",
    )


class PointsWrite(WireModel):
    """Body of an upsert: new bars are appended, bars at stored times replaced."""

    pane_id: int = Field(default=0, ge=0, le=100)
    data: list[dict[str, Any]]
    series_type: str | None = None


class SeriesWritten(WireModel):
    series_id: str
    series_type: str
    count: int
    version: int = Field(
        description="The chart's version after the write: pass it as min_version to read it back."
    )


class PointsWritten(WireModel):
    series_id: str
    count: int
    total_count: int
    version: int = Field(
        description="The chart's version after the write: pass it as min_version to read it back."
    )


class ChunkInfo(WireModel):
    start_index: int
    end_index: int = Field(description="Index after the last point of the chunk (exclusive).")
    start_time: int | None
    end_time: int | None
    count: int


class HistoryQuery(WireModel):
    pane_id: int = Field(default=0, ge=0, le=100)
    series_id: str
    before_time: int | float | str | dict[str, int] | None = None
    after_time: int | float | str | dict[str, int] | None = None
    count: int = Field(default=500, ge=1, le=10_000)
    min_version: int | None = Field(default=None, ge=0)
    resolution: str | None = Field(default=None, examples=["60", "1D"])


class HistoryChunk(WireModel):
    series_id: str
    data: list[dict[str, Any]]
    chunk_info: ChunkInfo
    has_more_before: bool
    has_more_after: bool
    total_count: int
    direction: Literal["before", "after"]
    resolution: str | None = Field(default=None, description="Present for a chunk of bars.")


class SeriesData(WireModel):
    series_id: str
    series_type: str
    options: dict[str, Any]
    market: Market | None = None
    aggregation: str | None = None
    resolution: str | None = None
    data: list[dict[str, Any]]
    chunked: bool
    total_count: int
    chunk_info: ChunkInfo | None = None
    has_more_before: bool | None = None
    has_more_after: bool | None = None


class ChartData(WireModel):
    chart_id: str
    options: dict[str, Any]
    panes: dict[str, dict[str, SeriesData]]


class RangeData(WireModel):
    """A zoomed-out view of a time range: at most ``max_points`` points."""

    series_id: str
    from_: int | None = Field(alias="from")
    to: int | None
    data: list[dict[str, Any]]
    resolution: str | None = Field(description="The bars' resolution, when data holds bars.")
    downsampled: bool
    source_count: int = Field(description="Stored points in the range.")

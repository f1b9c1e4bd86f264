"""Response bodies assembled from the store's pre-encoded point arrays, never re-encoding points."""

from __future__ import annotations

from collections import defaultdict

import orjson

from ..charts.service import Chart, RangeView, SeriesView
from ..charts.store import Chunk


def chunk_fields(chunk: Chunk) -> dict[str, object]:
    return {
        "chunkInfo": {
            "startIndex": chunk.start,
            "endIndex": chunk.end,
            "startTime": chunk.start_time,
            "endTime": chunk.end_time,
            "count": chunk.count,
        },
        "hasMoreBefore": chunk.has_more_before,
        "hasMoreAfter": chunk.has_more_after,
        "totalCount": chunk.total,
        "direction": chunk.direction,
    }


def history_json(
    series_id: str,
    chunk: Chunk,
    extra: dict[str, object] | None = None,
    resolution: str | None = None,
) -> bytes:
    """The history chunk ``H`` of the contract; ``extra`` fields come first (WebSocket ids);
    ``resolution`` is echoed for a chunk of bars."""
    head = dict(extra) if extra else {}
    head["seriesId"] = series_id
    tail = chunk_fields(chunk)
    if resolution is not None:
        tail["resolution"] = resolution
    return b"".join(
        (
            orjson.dumps(head)[:-1],
            b',"data":',
            chunk.data,
            b",",
            orjson.dumps(tail)[1:],
        )
    )


def series_json(view: SeriesView, resolution: str | None = None) -> bytes:
    """The series ``S``; its ``market`` and ``aggregation`` when it has them, and the
    ``resolution`` of its bars when asked at one."""
    series = view.series
    fields: dict[str, object] = {"chunked": view.chunked, "totalCount": view.chunk.total}
    if view.chunked:
        fields |= chunk_fields(view.chunk)
        del fields["direction"]
    if resolution is not None:
        fields["resolution"] = resolution
    described: dict[str, object] = {
        "seriesId": series.series_id,
        "seriesType": series.series_type,
        "options": series.options,
    }
    if series.market is not None:
        described["market"] = series.market.to_json()
    if series.aggregation is not None:
        described["aggregation"] = series.aggregation
    head = orjson.dumps(described)
    return b"".join((head[:-1], b',"data":', view.chunk.data, b",", orjson.dumps(fields)[1:]))


def chart_json(chart: Chart, views: list[SeriesView], pane_id: int | None = None) -> bytes:
    """The chart with ``views`` under ``panes``; ``pane_id`` is listed even when it has none."""
    panes: dict[int, list[SeriesView]] = defaultdict(list)
    if pane_id is not None:
        panes[pane_id] = []
    for view in views:
        panes[view.series.pane_id].append(view)
    pane_parts = []
    for pane in sorted(panes):
        members = b",".join(
            orjson.dumps(view.series.series_id) + b":" + series_json(view) for view in panes[pane]
        )
        pane_parts.append(b'"%d":{%s}' % (pane, members))
    head = orjson.dumps({"chartId": chart.chart_id, "options": chart.options})
    return b"".join((head[:-1], b',"panes":{', b",".join(pane_parts), b"}}"))


def range_json(series_id: str, view: RangeView) -> bytes:
    head = orjson.dumps({"seriesId": series_id, "from": view.start, "to": view.end})
    tail = orjson.dumps(
        {
            "resolution": view.resolution,
            "downsampled": view.downsampled,
            "sourceCount": view.source_count,
        }
    )
    return b"".join((head[:-1], b',"data":', view.data, b",", tail[1:]))

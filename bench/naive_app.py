"""The naive reference: the same routes, written the obvious way.

A series is a plain ``list`` of ``dict`` points kept sorted by time; every history request
scans the whole list; responses are returned as dicts and serialized by FastAPI's defaults
(``jsonable_encoder`` + ``json.dumps``); request bodies are parsed by FastAPI/pydantic. It
implements only what the benchmarks call:

- ``GET /health``
- ``POST /api/charts/{chart_id}`` (create, idempotent), ``DELETE /api/charts/{chart_id}``
- ``POST /api/charts/{chart_id}/data/{series_id}`` replace -> ``{seriesId, seriesType, count}``
- ``PATCH /api/charts/{chart_id}/data/{series_id}`` upsert -> ``{seriesId, count, totalCount}``
- ``DELETE /api/charts/{chart_id}/data/{pane_id}/{series_id}``
- ``GET /api/charts/{chart_id}/history/{pane_id}/{series_id}?before_time=&after_time=&count=``
- ``/ws/charts/{chart_id}``: a list of sockets per chart; an upsert awaits ``send_json`` of its
  update to each of them in turn, inside the request

Run: ``uvicorn bench.naive_app:app``
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, HTTPException, Query, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field

app = FastAPI(title="naive reference")

# chart id -> series id -> {"paneId", "seriesType", "data": [point, ...] sorted by time}
CHARTS: dict[str, dict[str, dict[str, Any]]] = {}
SOCKETS: dict[str, list[WebSocket]] = {}


class ReplaceRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    pane_id: int = Field(0, alias="paneId")
    series_type: str = Field("line", alias="seriesType")
    data: list[dict[str, Any]]
    options: dict[str, Any] = Field(default_factory=dict)


class UpsertRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    pane_id: int = Field(0, alias="paneId")
    data: list[dict[str, Any]]


def _check(points: list[dict[str, Any]]) -> None:
    seen: set[int] = set()
    for point in points:
        t = point.get("time")
        if not isinstance(t, int):
            raise HTTPException(400, f"bad time {t!r}")
        if t in seen:
            raise HTTPException(400, f"duplicate time {t}")
        seen.add(t)
        for key in ("open", "high", "low", "close", "value"):
            v = point.get(key)
            if v is not None and not (isinstance(v, int | float) and math.isfinite(v)):
                raise HTTPException(400, f"{key} must be a finite number at time {t}")
        if "high" in point and not (
            point["low"] <= point["open"] <= point["high"]
            and point["low"] <= point["close"] <= point["high"]
        ):
            raise HTTPException(400, f"OHLC out of order at time {t}")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "healthy", "version": "0.1.0"}


@app.post("/api/charts/{chart_id}")
async def create_chart(chart_id: str) -> dict[str, Any]:
    CHARTS.setdefault(chart_id, {})
    return {"chartId": chart_id, "options": {}}


@app.delete("/api/charts/{chart_id}", status_code=204)
async def delete_chart(chart_id: str) -> None:
    if CHARTS.pop(chart_id, None) is None:
        raise HTTPException(404, f"chart {chart_id} not found")


@app.post("/api/charts/{chart_id}/data/{series_id}")
async def replace_series(chart_id: str, series_id: str, body: ReplaceRequest) -> dict[str, Any]:
    _check(body.data)
    data = sorted(body.data, key=lambda p: p["time"])
    CHARTS.setdefault(chart_id, {})[series_id] = {
        "paneId": body.pane_id,
        "seriesType": body.series_type,
        "data": data,
    }
    return {"seriesId": series_id, "seriesType": body.series_type, "count": len(data)}


@app.patch("/api/charts/{chart_id}/data/{series_id}")
async def upsert_series(chart_id: str, series_id: str, body: UpsertRequest) -> dict[str, Any]:
    series = CHARTS.get(chart_id, {}).get(series_id)
    if series is None:
        raise HTTPException(404, f"series {series_id} not found")
    _check(body.data)
    data = series["data"]
    where = {p["time"]: i for i, p in enumerate(data)}
    appended = False
    for point in body.data:
        i = where.get(point["time"])
        if i is None:
            data.append(point)
            appended = True
        else:
            data[i] = point
    if appended:
        data.sort(key=lambda p: p["time"])
    update = {
        "type": "data_update",
        "chartId": chart_id,
        "op": "upsert",
        "paneId": body.pane_id,
        "seriesId": series_id,
        "count": len(body.data),
        "data": body.data,
    }
    for ws in list(SOCKETS.get(chart_id, ())):
        try:
            await ws.send_json(update)
        except Exception:
            SOCKETS[chart_id].remove(ws)
    return {"seriesId": series_id, "count": len(body.data), "totalCount": len(data)}


@app.delete("/api/charts/{chart_id}/data/{pane_id}/{series_id}", status_code=204)
async def delete_series(chart_id: str, pane_id: int, series_id: str) -> None:
    series = CHARTS.get(chart_id, {}).get(series_id)
    if series is None or series["paneId"] != pane_id:
        raise HTTPException(404, f"series {series_id} not found")
    del CHARTS[chart_id][series_id]


@app.websocket("/ws/charts/{chart_id}")
async def chart_socket(websocket: WebSocket, chart_id: str) -> None:
    await websocket.accept()
    SOCKETS.setdefault(chart_id, []).append(websocket)
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        if websocket in SOCKETS[chart_id]:
            SOCKETS[chart_id].remove(websocket)


@app.get("/api/charts/{chart_id}/history/{pane_id}/{series_id}")
async def history(
    chart_id: str,
    pane_id: int,
    series_id: str,
    before_time: int | None = None,
    after_time: int | None = None,
    count: int = Query(500, ge=1, le=10000),
) -> dict[str, Any]:
    series = CHARTS.get(chart_id, {}).get(series_id)
    if series is None or series["paneId"] != pane_id:
        raise HTTPException(404, f"series {series_id} not found")
    data = series["data"]
    total = len(data)
    if after_time is not None:
        direction = "after"
        matches = [i for i, p in enumerate(data) if p["time"] > after_time]
        start = matches[0] if matches else total
        end = min(total, start + count)
    else:
        direction = "before"
        limit = math.inf if before_time is None else before_time
        matches = [i for i, p in enumerate(data) if p["time"] < limit]
        end = matches[-1] + 1 if matches else 0
        start = max(0, end - count)
    chunk = data[start:end]
    return {
        "seriesId": series_id,
        "data": chunk,
        "chunkInfo": {
            "startIndex": start,
            "endIndex": end,
            "startTime": chunk[0]["time"] if chunk else None,
            "endTime": chunk[-1]["time"] if chunk else None,
            "count": len(chunk),
        },
        "hasMoreBefore": start > 0,
        "hasMoreAfter": end < total,
        "totalCount": total,
        "direction": direction,
    }

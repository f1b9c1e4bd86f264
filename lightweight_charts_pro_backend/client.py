"""Python client for the charts service: REST calls and live updates over the WebSocket.

Install with the ``client`` extra (``pip install "lightweight-charts-pro-backend[client]"``);
pandas is optional and only needed to pass or get DataFrames.

Example::

    from lightweight_charts_pro_backend.client import ChartsClient

    with ChartsClient("http://127.0.0.1:8000", api_key="lcp_...") as charts:
        charts.create_chart("btc")
        charts.set_series("btc", "price", frame, series_type="candlestick", progress=True)
        charts.update("btc", "price", {"time": 1700000060, "open": 1, "high": 2, "low": 1,
                                        "close": 2})
        for chunk in charts.iter_history("btc", "price"):  # newest chunk first
            ...
        hourly = charts.history("btc", "price", resolution="60")  # bars made by the server
        for event in charts.subscribe("btc"):  # data_update frames, forever
            ...

``AsyncChartsClient`` has the same methods as coroutines (``subscribe`` is an async iterator).
Both are thin drivers of one request core (:class:`_Operations`): every operation is written once,
as a generator of the HTTP calls it makes, and the same core remembers the version each write of
the client returned, so that its later reads of that chart carry it as ``min_version`` and see
its own writes whichever worker or replica answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import sys
import time
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeGuard, cast

import httpx
import orjson

if TYPE_CHECKING:
    import pandas as pd

Point = dict[str, Any]
DEFAULT_BATCH_SIZE = 50_000
HISTORY_PAGE = 10_000


class ChartsClientError(Exception):
    """The server refused a request; ``status``, ``error_code`` and ``detail`` say why."""

    def __init__(
        self, status: int, error_code: str, detail: str, request_id: str | None = None
    ) -> None:
        super().__init__(f"{status} {error_code}: {detail}")
        self.status = status
        self.error_code = error_code
        self.detail = detail
        self.request_id = request_id


class ChartsConnectionError(ChartsClientError):
    """The server could not be reached (down, wrong address, connection dropped)."""

    def __init__(self, base_url: str, reason: object) -> None:
        super().__init__(0, "CONNECTION_ERROR", f"cannot reach the server at {base_url}: {reason}")


class _Progress(Protocol):
    def update(self, n: int) -> object: ...
    def close(self) -> None: ...


# --- payloads shared by both clients ----------------------------------------------------------


def to_points(data: Iterable[Mapping[str, Any]] | pd.DataFrame) -> list[Point]:
    """``data`` as wire points: a list of dicts as is, or a DataFrame's rows.

    A DataFrame has a ``time`` column or a ``DatetimeIndex``; datetimes are tz-aware (converted to
    UTC) or naive (read as UTC) and become UTC seconds. Missing values (NaN) are left out of
    their point, so a row with only a time is whitespace.
    """
    if _is_dataframe(data):
        return _frame_points(data)
    return [dict(point) for point in cast("Iterable[Mapping[str, Any]]", data)]


def to_frame(points: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Points as a DataFrame indexed by a UTC ``DatetimeIndex`` named ``time``."""
    import pandas as pd

    frame = pd.DataFrame.from_records(list(points))
    if frame.empty:
        return frame
    frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    return frame.set_index("time")


def _is_dataframe(data: object) -> TypeGuard[pd.DataFrame]:
    # A DataFrame exists only once pandas is imported, so servers without pandas never load it.
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(data, pandas.DataFrame)


def _frame_points(frame: pd.DataFrame) -> list[Point]:
    import pandas as pd

    if "time" in frame.columns:
        frame = frame.reset_index(drop=True)
        times = frame["time"]
    elif isinstance(frame.index, pd.DatetimeIndex):
        times = pd.Series(frame.index)
        frame = frame.reset_index(drop=True)
    else:
        raise ValueError("the DataFrame needs a 'time' column or a DatetimeIndex")
    if pd.api.types.is_datetime64_any_dtype(times):
        series = pd.Series(times)
        if series.dt.tz is None:
            series = series.dt.tz_localize("UTC")
        seconds = (series.dt.tz_convert("UTC").astype("int64") // _units_per_second(series)).astype(
            "int64"
        )
        frame = frame.assign(time=seconds.to_numpy())
    else:
        frame = frame.assign(time=times.to_numpy())
    records = cast("list[Point]", frame.to_dict("records"))
    if frame.drop(columns="time").isna().to_numpy().any():
        records = [{k: v for k, v in row.items() if not _missing(v)} for row in records]
    return records


def _units_per_second(series: pd.Series[Any]) -> int:
    unit = getattr(series.dt, "unit", "ns")
    return {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]


def _missing(value: object) -> bool:
    return isinstance(value, float) and value != value


#: Bodies larger than this are sent gzipped (a candle's JSON shrinks to about a quarter).
GZIP_ABOVE: Final = 64 * 1024
_GZIPPED: Final = {"Content-Encoding": "gzip"}


def _encode(body: object) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _request_body(body: object, gzip_above: int | None) -> tuple[bytes | None, dict[str, str]]:
    """The request's content and the headers it adds: gzipped above ``gzip_above`` bytes."""
    if body is None:
        return None, {}
    content = _encode(body)
    if gzip_above is not None and len(content) > gzip_above:
        # Level 1: most of the gain for a fraction of the time of the default level 9.
        return gzip.compress(content, compresslevel=1, mtime=0), _GZIPPED
    return content, {}


def _batches(points: list[Point], size: int) -> Iterator[list[Point]]:
    for start in range(0, len(points), size):
        yield points[start : start + size]


def _sorted(points: list[Point]) -> list[Point]:
    # Batches after the first are appended with PATCH, so the oldest must go first; the server
    # sorts within one request but times in other forms (strings) are left for it to order.
    if all(isinstance(point.get("time"), int | float) for point in points):
        return sorted(points, key=lambda point: point["time"])
    return points


def progress_bar(total: int, enabled: bool, description: str) -> _Progress | None:
    """A tqdm bar of ``total`` points when ``enabled``, else None; tqdm is imported only then."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        raise ImportError(
            "progress=True needs tqdm: pip install 'lightweight-charts-pro-backend[client]'"
        ) from None
    bar: _Progress = tqdm(total=total, unit="pt", unit_scale=True, desc=description)
    return bar


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    raise ChartsClientError(
        response.status_code,
        str(body.get("errorCode", "HTTP_ERROR")),
        str(body.get("detail", response.reason_phrase or "request failed")),
        body.get("requestId") or response.headers.get("x-request-id"),
    )


def _headers(token: str | None, api_key: str | None, api_key_header: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if api_key is not None:
        headers[api_key_header] = api_key
    return headers


def _ws_url(base_url: str, chart_id: str) -> str:
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return f"{base}/ws/charts/{chart_id}"


def _params(**values: object) -> dict[str, str | int]:
    """Query parameters of the values given (None: left out); times and resolutions as text
    (a datetime as ISO-8601, which the server reads, naive as UTC), counts as integers."""
    params: dict[str, str | int] = {}
    for name, value in values.items():
        if value is None:
            continue
        params[name] = value if type(value) is int else str(value)
    return params


class _Live:
    """What ``subscribe`` keeps between frames: the last version seen, to resume after a drop."""

    def __init__(self, since_version: int | None) -> None:
        self.version = since_version

    def resume_frame(self) -> bytes | None:
        if self.version is None:
            return None
        return orjson.dumps({"type": "resume", "sinceVersion": self.version})

    def accept(self, message: dict[str, Any]) -> bool:
        """Whether ``message`` goes to the caller; duplicates from a replay do not."""
        kind: object = message.get("type")
        if kind == "connected" and self.version is None:
            self.version = int(message.get("version", 0))
            return False
        if kind == "data_update":
            version = int(message.get("version", 0))
            if self.version is not None and version <= self.version:
                return False
            self.version = version
            return True
        if kind in ("resync_required", "resumed"):
            self.version = int(message.get("version", self.version or 0))
            return kind == "resync_required"
        return False


# --- the request core shared by both clients ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    """One HTTP call of an operation. ``chart_id`` names the chart it writes (``writes``) or
    reads; a read of a chart this client wrote carries the version that write returned."""

    method: str
    path: str
    body: object = None
    params: Mapping[str, Any] | None = None
    chart_id: str | None = None
    writes: bool = False


#: An operation: the calls it makes, each sent back its decoded answer; it returns its result.
Steps = Generator[_Call, Any, Any]
VERSION_HEADER = "x-chart-version"


class _Operations:
    """Every operation of the client, written once for both the blocking and the asyncio one."""

    def __init__(self, gzip_above: int | None = GZIP_ABOVE) -> None:
        #: The newest version each chart had after a write of this client.
        self.versions: dict[str, int] = {}
        self.gzip_above = gzip_above

    def request(
        self, call: _Call
    ) -> tuple[str, str, bytes | None, dict[str, Any] | None, dict[str, str]]:
        """``(method, path, content, params, headers)`` for the HTTP client."""
        params = dict(call.params or {})
        if not call.writes and call.chart_id is not None:
            version = self.versions.get(call.chart_id)
            if version is not None:
                params["min_version"] = version
        content, headers = _request_body(call.body, self.gzip_above)
        return call.method, call.path, content, params or None, headers

    def answer(self, call: _Call, response: httpx.Response) -> Any:
        """The decoded answer to ``call``; records the chart version a write returned."""
        _raise_for(response)
        if call.writes and call.chart_id is not None:
            version = response.headers.get(VERSION_HEADER)
            if call.method == "DELETE" and call.path == f"/api/charts/{call.chart_id}":
                self.versions.pop(call.chart_id, None)  # a chart made again starts anew
            elif version is not None and version.isascii() and version.isdigit():
                known = self.versions.get(call.chart_id, 0)
                created = response.status_code == 201
                self.versions[call.chart_id] = int(version) if created else max(known, int(version))
        return orjson.loads(response.content) if response.content else None

    # The operations. Each yields its calls and returns its result.

    def health(self) -> Steps:
        return (yield _Call("GET", "/health"))

    def list_charts(self) -> Steps:
        return (yield _Call("GET", "/api/charts"))["charts"]

    def create_chart(self, chart_id: str, options: Mapping[str, Any] | None) -> Steps:
        path = f"/api/charts/{chart_id}"
        return (yield _Call("POST", path, dict(options or {}), chart_id=chart_id, writes=True))

    def get_chart(self, chart_id: str) -> Steps:
        return (yield _Call("GET", f"/api/charts/{chart_id}", chart_id=chart_id))

    def delete_chart(self, chart_id: str) -> Steps:
        yield _Call("DELETE", f"/api/charts/{chart_id}", chart_id=chart_id, writes=True)

    def set_series(
        self,
        chart_id: str,
        series_id: str,
        data: Iterable[Mapping[str, Any]] | pd.DataFrame,
        series_type: str,
        pane: int,
        options: Mapping[str, Any] | None,
        batch_size: int,
        progress: bool,
        market: Mapping[str, Any] | None = None,
        aggregation: str | None = None,
    ) -> Steps:
        points = _sorted(to_points(data))
        bar = progress_bar(len(points), progress, series_id)
        try:
            batches = _batches(points, batch_size) if points else iter([[]])
            first = next(batches)
            body = {
                "paneId": pane,
                "seriesType": series_type,
                "data": first,
                "options": dict(options or {}),
            }
            if market is not None:
                body["market"] = dict(market)
            if aggregation is not None:
                body["aggregation"] = aggregation
            path = f"/api/charts/{chart_id}/data/{series_id}"
            result = yield _Call("POST", path, body, chart_id=chart_id, writes=True)
            if bar is not None:
                bar.update(len(first))
            for batch in batches:
                upserted = yield from self.update(chart_id, series_id, batch, pane)
                result["count"] = upserted["totalCount"]
                result["version"] = upserted["version"]
                if bar is not None:
                    bar.update(len(batch))
            return result
        finally:
            if bar is not None:
                bar.close()

    def update(
        self,
        chart_id: str,
        series_id: str,
        data: Mapping[str, Any] | Iterable[Mapping[str, Any]] | pd.DataFrame,
        pane: int,
    ) -> Steps:
        points = [dict(data)] if isinstance(data, Mapping) else to_points(data)
        path = f"/api/charts/{chart_id}/data/{series_id}"
        body = {"paneId": pane, "data": points}
        return (yield _Call("PATCH", path, body, chart_id=chart_id, writes=True))

    def get_series(
        self, chart_id: str, series_id: str, pane: int, resolution: object = None
    ) -> Steps:
        path = f"/api/charts/{chart_id}/data/{pane}/{series_id}"
        params = _params(resolution=resolution)
        return (yield _Call("GET", path, params=params, chart_id=chart_id))

    def delete_series(self, chart_id: str, series_id: str, pane: int) -> Steps:
        path = f"/api/charts/{chart_id}/data/{pane}/{series_id}"
        yield _Call("DELETE", path, chart_id=chart_id, writes=True)

    def history(
        self,
        chart_id: str,
        series_id: str,
        pane: int,
        before_time: object,
        after_time: object,
        count: int | None,
        resolution: object = None,
    ) -> Steps:
        path = f"/api/charts/{chart_id}/history/{pane}/{series_id}"
        params = _params(
            before_time=before_time, after_time=after_time, count=count, resolution=resolution
        )
        return (yield _Call("GET", path, params=params, chart_id=chart_id))

    def get_range(
        self,
        chart_id: str,
        series_id: str,
        pane: int,
        start: object,
        end: object,
        max_points: int | None,
    ) -> Steps:
        path = f"/api/charts/{chart_id}/range/{pane}/{series_id}"
        params = _params(**{"from": start, "to": end, "max_points": max_points})
        return (yield _Call("GET", path, params=params, chart_id=chart_id))

    # Annotations have versions of their own: their calls name no chart version.

    def add_annotation(self, chart_id: str, annotation: Mapping[str, Any]) -> Steps:
        return (yield _Call("POST", f"/api/charts/{chart_id}/annotations", dict(annotation)))

    def list_annotations(self, chart_id: str, params: Mapping[str, Any]) -> Steps:
        path = f"/api/charts/{chart_id}/annotations"
        return (yield _Call("GET", path, params=params))["annotations"]

    def delete_annotation(self, chart_id: str, annotation_id: str) -> Steps:
        yield _Call("DELETE", f"/api/charts/{chart_id}/annotations/{annotation_id}")

    def markers(
        self,
        chart_id: str,
        series_id: str,
        pane: int,
        start: object,
        end: object,
        resolution: object,
    ) -> Steps:
        path = f"/api/charts/{chart_id}/markers/{pane}/{series_id}"
        params = _params(**{"from": start, "to": end, "resolution": resolution})
        return (yield _Call("GET", path, params=params))["markers"]


def _older(chunk: Mapping[str, Any]) -> object:
    """Where the chunk before ``chunk`` ends (its first time), or None at the first point."""
    if not chunk["hasMoreBefore"] or not chunk["data"]:
        return None
    return chunk["data"][0]["time"]


# --- the synchronous client -------------------------------------------------------------------


class ChartsClient:
    """Blocking client; use as a context manager so its connections are closed.

    ``token`` is a JWT (``charts-backend token create``), ``api_key`` an API key; neither is
    needed while the server runs without ``ENABLE_AUTH``. Errors raise
    :class:`ChartsClientError` (:class:`ChartsConnectionError` when the server is unreachable).
    Reads of a chart this client wrote carry the version of its last write (``min_version``),
    so they never miss it, on any worker or replica. Request bodies larger than ``gzip_above``
    bytes (64 KiB; ``None``: never) are sent with ``Content-Encoding: gzip``.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        api_key_header: str = "X-API-Key",
        gzip_above: int | None = GZIP_ABOVE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = _headers(token, api_key, api_key_header)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout)
        self._ops = _Operations(gzip_above)

    def __enter__(self) -> ChartsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, steps: Steps) -> Any:
        """Send each call of ``steps`` and hand it its answer; the operation's result."""
        ops = self._ops
        try:
            call = next(steps)
            while True:
                method, path, content, params, headers = ops.request(call)
                try:
                    response = self._http.request(
                        method, path, content=content, headers=headers, params=params
                    )
                except httpx.TransportError as exc:
                    raise ChartsConnectionError(self.base_url, exc) from exc
                call = steps.send(ops.answer(call, response))
        except StopIteration as done:
            return done.value
        finally:
            steps.close()

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._run(self._ops.health())
        return result

    def list_charts(self) -> list[dict[str, Any]]:
        charts: list[dict[str, Any]] = self._run(self._ops.list_charts())
        return charts

    def create_chart(self, chart_id: str, options: Mapping[str, Any] | None = None) -> Any:
        """Create ``chart_id`` (idempotent); returns ``{"chartId", "options", "version"}``."""
        return self._run(self._ops.create_chart(chart_id, options))

    def get_chart(self, chart_id: str) -> Any:
        return self._run(self._ops.get_chart(chart_id))

    def delete_chart(self, chart_id: str) -> None:
        self._run(self._ops.delete_chart(chart_id))

    def set_series(
        self,
        chart_id: str,
        series_id: str,
        data: Iterable[Mapping[str, Any]] | pd.DataFrame,
        series_type: str = "line",
        pane: int = 0,
        options: Mapping[str, Any] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = False,
        market: Mapping[str, Any] | None = None,
        aggregation: str | None = None,
    ) -> Any:
        """Replace the series with ``data``; returns ``{"seriesId", "seriesType", "count",
        "version"}``.

        More than ``batch_size`` points go as one replace of the oldest batch, then appends of
        the others in time order (readers see the series grow). ``market`` is the calendar its
        bars at other resolutions follow (IANA ``timezone`` and TradingView ``session``; default
        UTC, always open), ``aggregation`` how a value series' ``value`` is aggregated (``last``,
        ``first``, ``max``, ``min``, ``sum``, ``mean``); both are kept until the next replace.

        Example::

            charts.set_series("acme", "price", frame, series_type="candlestick",
                market={"timezone": "America/New_York", "session": "0930-1600:23456"})
        """
        return self._run(
            self._ops.set_series(
                chart_id,
                series_id,
                data,
                series_type,
                pane,
                options,
                batch_size,
                progress,
                market,
                aggregation,
            )
        )

    def update(
        self,
        chart_id: str,
        series_id: str,
        data: Mapping[str, Any] | Iterable[Mapping[str, Any]] | pd.DataFrame,
        pane: int = 0,
    ) -> Any:
        """Upsert points (a new bar, the last bar again, corrections); returns
        ``{"seriesId", "count", "totalCount", "version"}``."""
        return self._run(self._ops.update(chart_id, series_id, data, pane))

    def add_annotation(self, chart_id: str, annotation: Mapping[str, Any]) -> dict[str, Any]:
        """Draw on the chart; returns the stored annotation (with its ``annotationId``).

        Example::

            charts.add_annotation("btc", {"kind": "marker", "seriesId": "price",
                "points": [{"time": 1_700_000_000}], "text": "buy",
                "style": {"position": "belowBar", "shape": "arrowUp", "color": "#26a69a"}})
        """
        created: dict[str, Any] = self._run(self._ops.add_annotation(chart_id, annotation))
        return created

    def list_annotations(self, chart_id: str, **params: Any) -> list[dict[str, Any]]:
        """The chart's annotations the caller may see (``from``/``to`` may be given as
        ``**{"from": t0, "to": t1}``, with ``pane_id``, ``series_id``)."""
        found: list[dict[str, Any]] = self._run(self._ops.list_annotations(chart_id, params))
        return found

    def delete_annotation(self, chart_id: str, annotation_id: str) -> None:
        self._run(self._ops.delete_annotation(chart_id, annotation_id))

    def get_series(
        self, chart_id: str, series_id: str, pane: int = 0, *, resolution: object = None
    ) -> Any:
        """The series as a chart first loads it (the newest chunk when it is large); with
        ``resolution`` (``"5"``, ``"60"``, ``"1D"``, ...) in bars at that resolution."""
        return self._run(self._ops.get_series(chart_id, series_id, pane, resolution))

    def delete_series(self, chart_id: str, series_id: str, pane: int = 0) -> None:
        self._run(self._ops.delete_series(chart_id, series_id, pane))

    def history(
        self,
        chart_id: str,
        series_id: str,
        pane: int = 0,
        *,
        before_time: object = None,
        after_time: object = None,
        count: int | None = None,
        resolution: object = None,
    ) -> Any:
        """One history chunk (``data`` ascending, ``hasMoreBefore``, ``chunkInfo``, ...); with
        ``resolution``, of bars aggregated by the server along the series' market (times are
        then bar times, ``count`` counts bars).

        Example::

            hourly = charts.history("acme", "price", resolution="60", count=500)
            frame = to_frame(hourly["data"])
        """
        return self._run(
            self._ops.history(chart_id, series_id, pane, before_time, after_time, count, resolution)
        )

    def get_range(
        self,
        chart_id: str,
        series_id: str,
        pane: int = 0,
        *,
        start: object = None,
        end: object = None,
        max_points: int | None = None,
    ) -> Any:
        """At most ``max_points`` points (server default 2000) of ``[start, end)``, for a
        zoomed-out view: ``{"seriesId", "from", "to", "data", "resolution", "downsampled",
        "sourceCount"}``. ``data`` holds the stored points when they fit, else the bars of the
        finest resolution that fits (OHLC series; ``resolution`` says which) or each stretch's
        first, lowest, highest and last point (value series).

        Example::

            view = charts.get_range("acme", "price", start="2024-01-01", max_points=1000)
            frame = to_frame(view["data"])
        """
        return self._run(self._ops.get_range(chart_id, series_id, pane, start, end, max_points))

    def markers(
        self,
        chart_id: str,
        series_id: str,
        pane: int = 0,
        *,
        start: object = None,
        end: object = None,
        resolution: object = None,
    ) -> list[dict[str, Any]]:
        """The series' markers drawn in ``[start, end)``, by time, as ``createSeriesMarkers``
        takes them; with ``resolution``, each at the time of the bar it is drawn on (by the
        series' market; one outside the sessions on the nearest session's bar)."""
        found: list[dict[str, Any]] = self._run(
            self._ops.markers(chart_id, series_id, pane, start, end, resolution)
        )
        return found

    def iter_history(
        self,
        chart_id: str,
        series_id: str,
        pane: int = 0,
        *,
        before_time: object = None,
        count: int = HISTORY_PAGE,
        resolution: object = None,
    ) -> Iterator[list[Point]]:
        """Chunks of points (of bars at ``resolution``) from the newest (or those before
        ``before_time``) back to the first; each chunk is ascending."""
        while True:
            chunk = self.history(
                chart_id,
                series_id,
                pane,
                before_time=before_time,
                count=count,
                resolution=resolution,
            )
            if chunk["data"]:
                yield chunk["data"]
            before_time = _older(chunk)
            if before_time is None:
                return

    def all_points(
        self, chart_id: str, series_id: str, pane: int = 0, *, resolution: object = None
    ) -> list[Point]:
        """The whole series (all its bars at ``resolution``), ascending, fetched page by page;
        ``to_frame`` makes it a DataFrame."""
        chunks = list(self.iter_history(chart_id, series_id, pane, resolution=resolution))
        return [point for chunk in reversed(chunks) for point in chunk]

    def subscribe(
        self,
        chart_id: str,
        *,
        since_version: int | None = None,
        reconnect: bool = True,
        max_retries: int = 10,
    ) -> Subscription:
        """Follow ``chart_id`` live; connected when this returns, so no later update is missed.

        Iterating yields ``data_update`` frames (see the README) and ``resync_required``
        (refetch the chart). With ``since_version``, updates after that version still held by
        the server come first. After a dropped connection it reconnects and resumes from the
        last version seen, up to ``max_retries`` attempts in a row. Close it (or use it as a
        context manager) to disconnect.
        """
        headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
        return Subscription(
            self.base_url,
            _ws_url(self.base_url, chart_id),
            headers,
            since_version=since_version,
            reconnect=reconnect,
            max_retries=max_retries,
        )


class Subscription:
    """The live frames of one chart, from :meth:`ChartsClient.subscribe`."""

    def __init__(
        self,
        base_url: str,
        url: str,
        headers: dict[str, str],
        *,
        since_version: int | None,
        reconnect: bool,
        max_retries: int,
    ) -> None:
        from websockets.sync.client import ClientConnection

        self._base_url = base_url
        self._url = url
        self._headers = headers
        self._reconnect = reconnect
        self._max_retries = max_retries
        self._live = _Live(since_version)
        self._ws: ClientConnection | None = None
        self._closed = False
        self._stack = contextlib.ExitStack()
        try:
            self._connect()
        except _ws_errors() as exc:
            raise ChartsConnectionError(base_url, exc) from exc

    def _connect(self) -> None:
        from websockets.sync.client import connect

        stack = contextlib.ExitStack()
        self._ws = stack.enter_context(
            connect(self._url, additional_headers=self._headers, open_timeout=10)
        )
        self._stack = stack
        resume = self._live.resume_frame()
        if resume is not None:
            self._ws.send(resume.decode())

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> dict[str, Any]:
        failures = 0
        while not self._closed:
            try:
                if self._ws is None:
                    self._connect()
                assert self._ws is not None
                message: dict[str, Any] = orjson.loads(self._ws.recv())
            except _ws_errors() as exc:
                self._drop()
                failures += 1
                if self._closed:
                    break
                if not self._reconnect or failures > self._max_retries:
                    raise ChartsConnectionError(self._base_url, exc) from exc
                time.sleep(min(0.2 * 2**failures, 5.0))
                continue
            failures = 0
            if message.get("type") == "ping":
                self._ws.send('{"type":"pong"}')
            elif self._live.accept(message):
                return message
        raise StopIteration

    def _drop(self) -> None:
        self._ws = None
        stack, self._stack = self._stack, contextlib.ExitStack()
        stack.close()

    def close(self) -> None:
        self._closed = True
        self._drop()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _ws_errors() -> tuple[type[Exception], ...]:
    """What a dropped or refused WebSocket raises (imported late: websockets is optional)."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

    return (OSError, ConnectionClosed, InvalidHandshake, InvalidURI, TimeoutError)


# --- the asynchronous client ------------------------------------------------------------------


class AsyncChartsClient:
    """The asyncio twin of :class:`ChartsClient`: same methods, awaited.

    Example::

        async with AsyncChartsClient("http://127.0.0.1:8000", token=token) as charts:
            await charts.set_series("btc", "price", points, series_type="candlestick")
            async for event in charts.subscribe("btc"):
                ...
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        api_key_header: str = "X-API-Key",
        gzip_above: int | None = GZIP_ABOVE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = _headers(token, api_key, api_key_header)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=timeout
        )
        self._ops = _Operations(gzip_above)

    async def __aenter__(self) -> AsyncChartsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _run(self, steps: Steps) -> Any:
        """As :meth:`ChartsClient._run`, awaiting each call."""
        ops = self._ops
        try:
            call = next(steps)
            while True:
                method, path, content, params, headers = ops.request(call)
                try:
                    response = await self._http.request(
                        method, path, content=content, headers=headers, params=params
                    )
                except httpx.TransportError as exc:
                    raise ChartsConnectionError(self.base_url, exc) from exc
                call = steps.send(ops.answer(call, response))
        except StopIteration as done:
            return done.value
        finally:
            steps.close()

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._run(self._ops.health())
        return result

    async def list_charts(self) -> list[dict[str, Any]]:
        charts: list[dict[str, Any]] = await self._run(self._ops.list_charts())
        return charts

    async def create_chart(self, chart_id: str, options: Mapping[str, Any] | None = None) -> Any:
        return await self._run(self._ops.create_chart(chart_id, options))

    async def get_chart(self, chart_id: str) -> Any:
        return await self._run(self._ops.get_chart(chart_id))

    async def delete_chart(self, chart_id: str) -> None:
        await self._run(self._ops.delete_chart(chart_id))

    async def set_series(
        self,
        chart_id: str,
        series_id: str,
        data: Iterable[Mapping[str, Any]] | pd.DataFrame,
        series_type: str = "line",
        pane: int = 0,
        options: Mapping[str, Any] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = False,
        market: Mapping[str, Any] | None = None,
        aggregation: str | None = None,
    ) -> Any:
        """As :meth:`ChartsClient.set_series`."""
        return await self._run(
            self._ops.set_series(
                chart_id,
                series_id,
                data,
                series_type,
                pane,
                options,
                batch_size,
                progress,
                market,
                aggregation,
            )
        )

    async def update(
        self,
        chart_id: str,
        series_id: str,
        data: Mapping[str, Any] | Iterable[Mapping[str, Any]] | pd.DataFrame,
        pane: int = 0,
    ) -> Any:
        return await self._run(self._ops.update(chart_id, series_id, data, pane))

    async def add_annotation(self, chart_id: str, annotation: Mapping[str, Any]) -> dict[str, Any]:
        """As :meth:`ChartsClient.add_annotation`."""
        created: dict[str, Any] = await self._run(self._ops.add_annotation(chart_id, annotation))
        return created

    async def list_annotations(self, chart_id: str, **params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._run(self._ops.list_annotations(chart_id, params))
        return found

    async def delete_annotation(self, chart_id: str, annotation_id: str) -> None:
        await self._run(self._ops.delete_annotation(chart_id, annotation_id))

    async def get_series(
        self, chart_id: str, series_id: str, pane: int = 0, *, resolution: object = None
    ) -> Any:
        """As :meth:`ChartsClient.get_series`."""
        return await self._run(self._ops.get_series(chart_id, series_id, pane, resolution))

    async def delete_series(self, chart_id: str, series_id: str, pane: int = 0) -> None:
        await self._run(self._ops.delete_series(chart_id, series_id, pane))

    async def history(
        self,
        chart_id: str,
        series_id: str,
        pane: int = 0,
        *,
        before_time: object = None,
        after_time: object = None,
        count: int | None = None,
        resolution: object = None,
    ) -> Any:
        """As :meth:`ChartsClient.history`."""
        return await self._run(
            self._ops.history(chart_id, series_id, pane, before_time, after_time, count, resolution)
        )

    async def get_range(
        self,
        chart_id: str,
        series_id: str,
        pane: int = 0,
        *,
        start: object = None,
        end: object = None,
        max_points: int | None = None,
    ) -> Any:
        """As :meth:`ChartsClient.get_range`."""
        return await self._run(
            self._ops.get_range(chart_id, series_id, pane, start, end, max_points)
        )

    async def markers(
        self,
        chart_id: str,
        series_id: str,
        pane: int = 0,
        *,
        start: object = None,
        end: object = None,
        resolution: object = None,
    ) -> list[dict[str, Any]]:
        """As :meth:`ChartsClient.markers`."""
        found: list[dict[str, Any]] = await self._run(
            self._ops.markers(chart_id, series_id, pane, start, end, resolution)
        )
        return found

    async def iter_history(
        self,
        chart_id: str,
        series_id: str,
        pane: int = 0,
        *,
        before_time: object = None,
        count: int = HISTORY_PAGE,
        resolution: object = None,
    ) -> AsyncIterator[list[Point]]:
        """As :meth:`ChartsClient.iter_history`."""
        while True:
            chunk = await self.history(
                chart_id,
                series_id,
                pane,
                before_time=before_time,
                count=count,
                resolution=resolution,
            )
            if chunk["data"]:
                yield chunk["data"]
            before_time = _older(chunk)
            if before_time is None:
                return

    async def all_points(
        self, chart_id: str, series_id: str, pane: int = 0, *, resolution: object = None
    ) -> list[Point]:
        """As :meth:`ChartsClient.all_points`."""
        chunks = [
            chunk
            async for chunk in self.iter_history(chart_id, series_id, pane, resolution=resolution)
        ]
        return [point for chunk in reversed(chunks) for point in chunk]

    async def subscribe(
        self,
        chart_id: str,
        *,
        since_version: int | None = None,
        reconnect: bool = True,
        max_retries: int = 10,
    ) -> AsyncIterator[dict[str, Any]]:
        """As :meth:`ChartsClient.subscribe`, except that the socket opens when iteration
        starts: pass ``since_version`` to also get the updates made before that (as long as
        the server still holds them)."""
        from websockets.asyncio.client import connect

        live = _Live(since_version)
        failures = 0
        headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
        while True:
            try:
                async with connect(
                    _ws_url(self.base_url, chart_id), additional_headers=headers
                ) as ws:
                    resume = live.resume_frame()
                    if resume is not None:
                        await ws.send(resume.decode())
                    async for frame in ws:
                        message = orjson.loads(frame)
                        failures = 0
                        if message.get("type") == "ping":
                            await ws.send('{"type":"pong"}')
                        elif live.accept(message):
                            yield message
            except _ws_errors() as exc:
                failures += 1
                if not reconnect or failures > max_retries:
                    raise ChartsConnectionError(self.base_url, exc) from exc
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))
            else:
                return


__all__ = [
    "AsyncChartsClient",
    "ChartsClient",
    "ChartsClientError",
    "ChartsConnectionError",
    "Subscription",
    "to_frame",
    "to_points",
]

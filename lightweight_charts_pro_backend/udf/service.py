"""The UDF datafeed over the charts and annotations services: symbols, search, history bars and
marks as UDF answers.

No SQL and no HTTP here: symbols come from ``ChartsService.series_markets`` (one read of the
series table when persistence is on, kept ``listing_seconds``), history from
``ChartsService.bar_arrays`` (bars kept as JSON arrays by field: an answer is slices of them),
marks from ``AnnotationsService``. Answers are JSON bytes; a request the protocol refuses raises
:class:`UdfError` or :class:`UnknownSymbol`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson

from ..annotations.service import AnnotationsService
from ..auth import Principal
from ..charts.arrays import ArrayWindow
from ..charts.repository import SeriesMarket
from ..charts.service import MAX_CHUNK, ChartsService
from ..errors import ChartNotFound, ChartsError, InvalidRequest
from . import symbols as symbols_
from .symbols import Symbol, parse_ticker, symbol_of

#: Bars one history answer carries at most (the newest of those asked for).
MAX_BARS: Final = MAX_CHUNK
#: Stored points read to guess a symbol's price scale and volume precision.
SAMPLE_POINTS: Final = 200
DEFAULT_SEARCH_LIMIT: Final = 30
_INTEGER = re.compile(r"-?[0-9]{1,18}")


class UdfError(InvalidRequest):
    """A parameter the protocol refuses (422, answered ``{"s": "error", "errmsg": ...}``)."""


class UnknownSymbol(ChartsError):
    status_code = 404
    error_code = "UNKNOWN_SYMBOL"

    def __init__(self, symbol: str) -> None:
        super().__init__(f"unknown_symbol: no symbol {symbol[:140]!r} is visible to this caller")


class UdfService:
    """Answers UDF requests from the charts service.

    Example::

        udf = UdfService(charts)
        body = await udf.history(ANONYMOUS, "demo~0~candles", "60", start=None,
                                 end=1_700_000_000, countback=300)

    With persistence on, the symbol listing is read from the database at most once every
    ``listing_seconds`` (a new symbol is found by name within that time; by ticker at once).
    In memory mode it is read from memory on every request.
    """

    def __init__(
        self,
        charts: ChartsService,
        annotations: AnnotationsService | None = None,
        *,
        listing_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._charts = charts
        self._annotations = annotations
        self._listing_seconds = listing_seconds
        self._clock = clock
        self._listing: list[Symbol] = []
        self._listed_at = -float("inf")
        self._listing_lock = asyncio.Lock()

    # ------------------------------------------------------------------ symbols

    async def symbols(self, caller: Principal) -> list[Symbol]:
        """Every symbol ``caller`` may see, ordered by chart, pane and series id."""
        return [s for s in await self._all_symbols() if caller.may_see(s.chart_id)]

    async def _all_symbols(self) -> list[Symbol]:
        if not self._charts.persistent:
            return _symbols(await self._charts.series_markets())
        if self._clock() - self._listed_at < self._listing_seconds:
            return self._listing
        async with self._listing_lock:
            if self._clock() - self._listed_at >= self._listing_seconds:
                self._listing = _symbols(await self._charts.series_markets())
                self._listed_at = self._clock()
        return self._listing

    async def resolve(
        self, caller: Principal, text: str, *, min_version: int | None = None
    ) -> Symbol:
        """The symbol named by ``text``: a ticker, a name, or ``EXCHANGE:NAME``; names are
        matched exactly first, then ignoring case, the first in listing order winning. A ticker
        is looked up in its chart at ``min_version`` or newer (a series just written is found
        on any worker)."""
        text = text.strip()
        if not text:
            raise UdfError("symbol is required: a ticker such as 'demo~0~candles', or a name.")
        found = await self._by_ticker(caller, text, min_version)
        if found is not None:
            return found
        visible = await self.symbols(caller)
        folded = text.casefold()
        names: tuple[Callable[[Symbol], bool], ...] = (
            lambda s: s.name == text,
            lambda s: s.full_name == text,
            lambda s: s.name.casefold() == folded,
            lambda s: s.full_name.casefold() == folded,
        )
        for named in names:
            found = next((s for s in visible if named(s)), None)
            if found is not None:
                return found
        exchange, _, rest = text.rpartition(":")
        if exchange and rest:
            # EXCHANGE:<ticker>, as the library may write a resolved symbol back
            found = await self._by_ticker(caller, rest, min_version)
            if found is not None:
                return found
        raise UnknownSymbol(text)

    async def _by_ticker(
        self, caller: Principal, text: str, min_version: int | None = None
    ) -> Symbol | None:
        parsed = parse_ticker(text)
        if parsed is None:
            return None
        chart_id, pane_id, series_id = parsed
        if not caller.may_see(chart_id):
            raise UnknownSymbol(text)
        try:
            chart = await self._charts.get_chart_or_raise(chart_id, min_version)
        except ChartNotFound:
            raise UnknownSymbol(text) from None
        series = chart.series.get((pane_id, series_id))
        symbol = None
        if series is not None and series.market is not None:
            symbol = symbol_of(
                SeriesMarket(
                    chart_id,
                    pane_id,
                    series_id,
                    series.series_type,
                    series.aggregation,
                    series.market.to_json(),
                )
            )
        if symbol is None:
            raise UnknownSymbol(text)
        return symbol

    # ------------------------------------------------------------------ answers

    async def config(self, caller: Principal) -> bytes:
        marks = self._annotations is not None
        return orjson.dumps(symbols_.config(await self.symbols(caller), marks=marks))

    async def symbol_info(
        self, caller: Principal, text: str | None, min_version: str | None = None
    ) -> bytes:
        """The symbol's info; with ``min_version``, looked up in that version of its chart or a
        newer one (a series just written is found on any worker)."""
        version = _version(min_version)
        symbol = await self.resolve(caller, text or "", min_version=version)
        chunk = await self._charts.history(
            symbol.chart_id,
            symbol.pane_id,
            symbol.series_id,
            count=SAMPLE_POINTS,
            min_version=version,
        )
        points: list[dict[str, Any]] = orjson.loads(chunk.data)
        fields = ("open", "high", "low", "close") if symbol.ohlc else ("value",)
        prices = [p.get(f) for p in points for f in fields]
        volumes = [p["volume"] for p in points if "volume" in p]
        info = symbols_.symbol_info(
            symbol,
            pricescale=10 ** symbols_.decimals(prices),
            volume_precision=symbols_.decimals(volumes),
            volume=bool(volumes),
        )
        return orjson.dumps(info)

    async def search(
        self,
        caller: Principal,
        query: str | None,
        type_: str | None,
        exchange: str | None,
        limit: str | None,
    ) -> bytes:
        count = DEFAULT_SEARCH_LIMIT if limit is None else _integer(limit, "limit")
        if count < 1:
            raise UdfError(f"limit must be a positive integer; got {limit!r:.40}.")
        found = symbols_.search(
            await self.symbols(caller), query or "", type_ or "", exchange or "", count
        )
        return orjson.dumps([symbol.search_item() for symbol in found])

    async def history(
        self,
        caller: Principal,
        symbol: str | None,
        resolution: str | None,
        *,
        start: str | None,
        end: str | None,
        countback: str | None,
        min_version: str | None = None,
    ) -> tuple[bytes, int]:
        """The UDF history answer and its bar count: ``countback`` bars before ``end`` (then
        ``start`` is ignored), else the bars of ``[start, end)``; the newest ``MAX_BARS`` of
        them. No bars: ``no_data`` with ``nextTime``, the newest bar before the window.

        With ``min_version`` (a write's version), from that version of the chart or a newer
        one, as every read of the charts service (``ChartsService.get_chart_or_raise``)."""
        if not resolution:
            raise UdfError("resolution is required, such as 1, 60, 1D or 1W.")
        to = _integer(end, "to", " (unix seconds)")
        count = None
        since = None
        if countback is not None:
            count = _integer(countback, "countback")
            if count < 1:
                raise UdfError(f"countback must be a positive integer; got {countback!r:.40}.")
        else:
            since = _integer(start, "from", " (unix seconds)")
            if since > to:
                raise UdfError(f"from ({since}) must not be after to ({to}).")
        version = _version(min_version)
        found = await self.resolve(caller, symbol or "", min_version=version)
        window = await self._charts.bar_arrays(
            found.chart_id,
            found.pane_id,
            found.series_id,
            resolution,
            end=to,
            start=since,
            count=count,
            limit=MAX_BARS,
            min_version=version,
        )
        return history_json(window), window.count

    async def marks(
        self,
        caller: Principal,
        symbol: str | None,
        *,
        start: str | None,
        end: str | None,
        resolution: str | None,
    ) -> bytes:
        """The caller's markers of the symbol's series from ``start`` to ``end`` (inclusive) as
        bar marks; with ``resolution``, each at the time of the bar it is drawn on, as the
        markers route places it (one outside the sessions on the nearest session's bar)."""
        annotations = self._require_annotations()
        found, since, until = await self._marked_range(caller, symbol, start, end)
        markers = await annotations.markers(
            found.chart_id,
            found.pane_id,
            found.series_id,
            caller,
            start=since,
            end=until + 1,
            resolution=resolution or None,
        )
        return orjson.dumps([symbols_.bar_mark(marker, marker["time"]) for marker in markers])

    async def timescale_marks(
        self,
        caller: Principal,
        symbol: str | None,
        *,
        start: str | None,
        end: str | None,
        resolution: str | None,
    ) -> bytes:
        """The caller's vertical lines on the symbol's pane (of the chart, or of that series)
        from ``start`` to ``end`` (inclusive) as marks on the time scale; with ``resolution``,
        each at the time of the bar it is drawn on, as bar marks are."""
        annotations = self._require_annotations()
        found, since, until = await self._marked_range(caller, symbol, start, end)
        bodies = await annotations.listing(
            found.chart_id, caller, start=since, end=until + 1, pane_id=found.pane_id
        )
        lines = [
            line
            for line in map(orjson.loads, bodies)
            if line["kind"] == "vertical_line" and line.get("seriesId") in (None, found.series_id)
        ]
        times = [line["points"][0]["time"] for line in lines]
        if resolution:
            times = await self._charts.snap_to_bars(
                found.chart_id, found.pane_id, found.series_id, resolution, times
            )
        return orjson.dumps(
            [symbols_.timescale_mark(line, at) for line, at in zip(lines, times, strict=True)]
        )

    def _require_annotations(self) -> AnnotationsService:
        if self._annotations is None:
            raise UdfError("marks are not served: this datafeed has no annotations.")
        return self._annotations

    async def _marked_range(
        self, caller: Principal, symbol: str | None, start: str | None, end: str | None
    ) -> tuple[Symbol, int, int]:
        since = _integer(start, "from", " (unix seconds)")
        until = _integer(end, "to", " (unix seconds)")
        if since > until:
            raise UdfError(f"from ({since}) must not be after to ({until}).")
        return await self.resolve(caller, symbol or ""), since, until


#: UDF's name of each field of the bars' arrays.
_KEYS: Final = {
    "time": b',"t":',
    "open": b',"o":',
    "high": b',"h":',
    "low": b',"l":',
    "close": b',"c":',
    "value": b',"c":',
    "volume": b',"v":',
}


def history_json(window: ArrayWindow) -> bytes:
    """``{"s": "ok", "t", "o", "h", "l", "c", "v"}`` (value series: ``t`` and ``c``; ``v`` when
    the series has volumes), or ``no_data`` with ``nextTime`` when there is an older bar."""
    if not window.count:
        if window.before is None:
            return b'{"s":"no_data"}'
        return b'{"s":"no_data","nextTime":%d}' % window.before
    parts = [b'{"s":"ok"']
    for name, array in window.arrays.items():
        parts += (_KEYS[name], array)
    parts.append(b"}")
    return b"".join(parts)


def _version(value: str | None) -> int | None:
    """The ``min_version`` query parameter, a write's version (``None`` when not given)."""
    if value is None:
        return None
    version = _integer(value, "min_version", " >= 0")
    if version < 0:
        raise UdfError(f"min_version must be an integer >= 0; got {value!r:.40}.")
    return version


def _integer(value: str | None, name: str, unit: str = "") -> int:
    if value is None or not _INTEGER.fullmatch(value.strip()):
        raise UdfError(f"{name} must be an integer{unit}; got {value!r:.40}.")
    return int(value)


def _symbols(entries: Iterable[SeriesMarket]) -> list[Symbol]:
    return [symbol for entry in entries if (symbol := symbol_of(entry)) is not None]

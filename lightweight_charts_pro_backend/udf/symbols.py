"""UDF symbols: which series are symbols, their tickers, and what the datafeed says about them.

A series whose ``market`` has a ``symbol`` (a non-empty string) is a symbol. Its ``name`` is that
string, which need not be unique; its ``ticker`` names the series itself::

    <chart_id>~<pane_id>~<series_id>        e.g.  demo~0~candles

Chart and series ids are made of letters, digits, ``_``, ``-`` and ``.``, so ``~`` cannot occur in
them and a ticker splits one way only. Every character of a ticker is unreserved in URLs, so the
stock ``UDFCompatibleDatafeed`` (which ``encodeURIComponent``-s its parameters) sends it back
byte for byte; and it holds no ``:``, which the Charting Library reads as the separator of an
``EXCHANGE:SYMBOL`` name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from ..charts.points import OHLC_TYPES
from ..charts.repository import SeriesMarket
from ..charts.service import MAX_PANE

SEPARATOR: Final = "~"
#: What ``/udf/config`` and every symbol offer; the server aggregates any TradingView resolution.
SUPPORTED_RESOLUTIONS: Final = (
    "1S",
    "5S",
    "15S",
    "30S",
    "1",
    "5",
    "15",
    "30",
    "60",
    "240",
    "1D",
    "1W",
    "1M",
)
DEFAULT_TYPE: Final = "stock"
#: Keys of ``market`` that are the server's to set in a symbol's info, never the market's.
_RESERVED: Final = frozenset({"s", "errmsg", "name", "ticker", "symbol", "timezone", "session"})
_ID = r"[A-Za-z0-9_.-]{1,128}"
_TICKER: Final = re.compile(rf"({_ID}){SEPARATOR}([0-9]{{1,3}}){SEPARATOR}({_ID})")
MAX_DECIMALS: Final = 8
#: The smallest size of a bar mark of size 1 (Lightweight Charts' marker ``size``), in pixels.
MARK_SIZE: Final = 14
DEFAULT_MARK_COLOR: Final = "#2962FF"


def ticker(chart_id: str, pane_id: int, series_id: str) -> str:
    return f"{chart_id}{SEPARATOR}{pane_id}{SEPARATOR}{series_id}"


def parse_ticker(text: str) -> tuple[str, int, str] | None:
    """``(chart_id, pane_id, series_id)`` of a ticker; None when ``text`` is not one."""
    match = _TICKER.fullmatch(text)
    if match is None:
        return None
    chart_id, pane, series_id = match.groups()
    if ".." in chart_id or ".." in series_id or int(pane) > MAX_PANE:
        return None
    return chart_id, int(pane), series_id


@dataclass(frozen=True, slots=True)
class Symbol:
    """A series seen as a UDF symbol."""

    chart_id: str
    pane_id: int
    series_id: str
    series_type: str
    name: str
    market: dict[str, Any]

    @property
    def ticker(self) -> str:
        return ticker(self.chart_id, self.pane_id, self.series_id)

    @property
    def exchange(self) -> str:
        return _text(self.market.get("exchange"))

    @property
    def full_name(self) -> str:
        return f"{self.exchange}:{self.name}" if self.exchange else self.name

    @property
    def description(self) -> str:
        return _text(self.market.get("description")) or self.name

    @property
    def type(self) -> str:
        return _text(self.market.get("type")) or DEFAULT_TYPE

    @property
    def ohlc(self) -> bool:
        return self.series_type in OHLC_TYPES

    def search_item(self) -> dict[str, str]:
        return {
            "symbol": self.name,
            "full_name": self.full_name,
            "description": self.description,
            "exchange": self.exchange,
            "ticker": self.ticker,
            "type": self.type,
        }


def symbol_of(entry: SeriesMarket) -> Symbol | None:
    """The symbol a series is, or None: no ``market.symbol``, or a custom series without an
    aggregation rule (it has no bars)."""
    name = _text(entry.market.get("symbol"))
    if not name or (entry.series_type == "custom" and entry.aggregation is None):
        return None
    return Symbol(
        entry.chart_id, entry.pane_id, entry.series_id, entry.series_type, name, entry.market
    )


def symbol_info(
    symbol: Symbol, pricescale: int, volume_precision: int, volume: bool
) -> dict[str, Any]:
    """The answer to ``/udf/symbols``: defaults from the series and its data, then every other
    key of its ``market`` as given (``pricescale``, ``minmov``, ``currency_code``, ...)."""
    market = symbol.market
    plots = "c" if not symbol.ohlc else "ohlcv" if volume else "ohlc"
    info: dict[str, Any] = {
        "name": symbol.name,
        "ticker": symbol.ticker,
        "description": symbol.description,
        "type": symbol.type,
        "session": _text(market.get("session")) or "24x7",
        "timezone": _text(market.get("timezone")) or "Etc/UTC",
        "exchange": symbol.exchange,
        "listed_exchange": _text(market.get("listed_exchange")) or symbol.exchange,
        "format": "price",
        "minmov": 1,
        "pricescale": pricescale,
        "has_intraday": True,
        "has_seconds": True,
        "seconds_multipliers": ["1", "5", "15", "30"],
        "has_daily": True,
        "daily_multipliers": ["1"],
        "has_weekly_and_monthly": True,
        "weekly_multipliers": ["1"],
        "monthly_multipliers": ["1"],
        "intraday_multipliers": ["1", "5", "15", "30", "60", "240"],
        "supported_resolutions": list(SUPPORTED_RESOLUTIONS),
        "volume_precision": volume_precision,
        "has_no_volume": not volume,
        "visible_plots_set": plots,
        "data_status": "streaming",
    }
    info.update((key, value) for key, value in market.items() if key not in _RESERVED)
    return info


def config(symbols: Iterable[Symbol], *, marks: bool) -> dict[str, Any]:
    """The answer to ``/udf/config``, with the exchanges and types of ``symbols``; ``marks``:
    whether bar and time-scale marks are served."""
    listed = list(symbols)
    exchanges = sorted({s.exchange for s in listed if s.exchange})
    types = sorted({s.type for s in listed})
    return {
        "supports_search": True,
        "supports_group_request": False,
        "supports_marks": marks,
        "supports_timescale_marks": marks,
        "supports_time": True,
        "supported_resolutions": list(SUPPORTED_RESOLUTIONS),
        "exchanges": [{"value": "", "name": "All Exchanges", "desc": ""}]
        + [{"value": e, "name": e, "desc": e} for e in exchanges],
        "symbols_types": [{"name": "All types", "value": ""}]
        + [{"name": t, "value": t} for t in types],
    }


def bar_mark(marker: dict[str, Any], time: int) -> dict[str, Any]:
    """A marker (as ``GET .../markers`` lists it) as a UDF bar mark at ``time``: its color for
    border and background, its text, the text's first letter as the label."""
    text = str(marker.get("text") or "")
    size = marker.get("size")
    return {
        "id": marker["id"],
        "time": time,
        "color": {"border": marker["color"], "background": marker["color"]},
        "text": text,
        "label": text[:1].upper(),
        "labelFontColor": "#FFFFFF",
        "minSize": round(MARK_SIZE * (size if isinstance(size, int | float) else 1)),
    }


def timescale_mark(line: dict[str, Any], time: int) -> dict[str, Any]:
    """A vertical line annotation as a UDF time-scale mark at ``time``."""
    text = str(line.get("text") or "")
    color = line.get("style", {}).get("color")
    return {
        "id": line["annotationId"],
        "time": time,
        "color": color if isinstance(color, str) else DEFAULT_MARK_COLOR,
        "label": text[:1].upper(),
        "tooltip": [text] if text else [],
    }


def search(
    symbols: Iterable[Symbol], query: str, type_: str, exchange: str, limit: int
) -> list[Symbol]:
    """Symbols matching ``query`` case-insensitively: names equal to it first, then names
    starting with it, then those containing it in their name, full name, description or
    ticker. ``type_`` and ``exchange`` (when not empty) must match exactly, ignoring case."""
    wanted = query.strip().casefold()
    type_, exchange = type_.casefold(), exchange.casefold()
    ranked: list[tuple[int, int, Symbol]] = []
    for order, symbol in enumerate(symbols):
        if type_ and symbol.type.casefold() != type_:
            continue
        if exchange and symbol.exchange.casefold() != exchange:
            continue
        name = symbol.name.casefold()
        if name == wanted:
            rank = 0
        elif name.startswith(wanted):
            rank = 1
        elif any(
            wanted in text.casefold()
            for text in (symbol.name, symbol.full_name, symbol.description, symbol.ticker)
        ):
            rank = 2
        else:
            continue
        ranked.append((rank, order, symbol))
    ranked.sort(key=lambda item: item[:2])
    return [symbol for _, _, symbol in ranked[:limit]]


def decimals(values: Iterable[Any]) -> int:
    """The most decimal places among ``values`` as written (at most ``MAX_DECIMALS``)."""
    most = 0
    for value in values:
        if type(value) is not float or value != value or value in (float("inf"), float("-inf")):
            continue
        mantissa, _, exponent = repr(value).partition("e")
        places = len(mantissa.partition(".")[2].rstrip("0")) - int(exponent or 0)
        most = max(most, min(places, MAX_DECIMALS))
        if most == MAX_DECIMALS:
            break
    return most


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""

"""Synthetic market data for the demo: a random walk of candles with volume, and live ticks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Point = dict[str, Any]
UP_COLOR = "rgba(38, 166, 154, 0.5)"
DOWN_COLOR = "rgba(239, 83, 80, 0.5)"


class Candles:
    """``count`` synthetic candles ending at ``end_time`` (UTC seconds), with their volume.

    Prices follow a geometric random walk with volatility that drifts in regimes, so the chart
    shows calm stretches and bursts; volume grows with the size of the move. Kept as arrays:
    points are built one slice at a time, so a million candles never exist as dicts at once.
    """

    def __init__(
        self, count: int, end_time: int, bar_seconds: int, seed: int = 7, start: float = 100.0
    ) -> None:
        rng = np.random.default_rng(seed)
        self.times = end_time - bar_seconds * np.arange(count - 1, -1, -1, dtype=np.int64)
        regime = np.exp(np.cumsum(rng.normal(0, 0.01, count)).clip(-2, 2)) * 0.001
        returns = rng.normal(0, 1, count) * regime
        close = start * np.exp(np.cumsum(returns))
        open_ = np.concatenate(([start], close[:-1]))
        spread = np.abs(rng.normal(0, 1, (2, count))) * regime * close
        # Rounding is monotonic, so low <= open, close <= high survives it.
        self.open = np.round(open_, 4)
        self.high = np.round(np.maximum(open_, close) + spread[0], 4)
        self.low = np.round(np.minimum(open_, close) - spread[1], 4)
        self.close = np.round(close, 4)
        self.volume = (1_000 * (1 + 200 * np.abs(returns)) * rng.lognormal(0, 0.3, count)).round()

    def __len__(self) -> int:
        return len(self.times)

    def points(self, start: int = 0, stop: int | None = None) -> tuple[list[Point], list[Point]]:
        """Candles and volume bars ``start:stop`` as wire points."""
        window = slice(start, stop)
        price: list[Point] = [
            {"time": t, "open": o, "high": h, "low": lo, "close": c}
            for t, o, h, lo, c in zip(
                self.times[window].tolist(),
                self.open[window].tolist(),
                self.high[window].tolist(),
                self.low[window].tolist(),
                self.close[window].tolist(),
                strict=True,
            )
        ]
        volume: list[Point] = [
            {"time": p["time"], "value": v, "color": _color(p)}
            for p, v in zip(price, self.volume[window].tolist(), strict=True)
        ]
        return price, volume


def drawings(series: Candles, last: int = 400) -> list[Point]:
    """A few drawings on the newest ``last`` candles: markers on the highest and lowest bar of
    each quarter of them, and a trend line from the lowest low to the newest close."""
    start = max(0, len(series) - last)
    drawn: list[Point] = []
    step = max(1, (len(series) - start) // 4)
    for n, left in enumerate(range(start, len(series) - step + 1, step)):
        window = slice(left, left + step)
        high = left + int(np.argmax(series.high[window]))
        low = left + int(np.argmin(series.low[window]))
        drawn.append(_marker(f"demo-high-{n}", int(series.times[high]), "aboveBar", "high"))
        drawn.append(_marker(f"demo-low-{n}", int(series.times[low]), "belowBar", "low"))
    lowest = start + int(np.argmin(series.low[start:]))
    if lowest < len(series) - 1:
        drawn.append(
            {
                "annotationId": "demo-trend",
                "kind": "trend_line",
                "points": [
                    {"time": int(series.times[lowest]), "price": float(series.low[lowest])},
                    {"time": int(series.times[-1]), "price": float(series.close[-1])},
                ],
                "style": {"color": "#f7c948", "lineWidth": 2},
                "text": "support",
            }
        )
    return drawn


def _marker(annotation_id: str, time: int, position: str, text: str) -> Point:
    up = position == "belowBar"
    return {
        "annotationId": annotation_id,
        "kind": "marker",
        "seriesId": "price",
        "points": [{"time": time}],
        "style": {
            "position": position,
            "shape": "arrowUp" if up else "arrowDown",
            "color": "#26a69a" if up else "#ef5350",
        },
        "text": text,
    }


def candles(
    count: int, end_time: int, bar_seconds: int, seed: int = 7
) -> tuple[list[Point], list[Point]]:
    """All of :class:`Candles` as points: the candles and their volume bars."""
    return Candles(count, end_time, bar_seconds, seed).points()


@dataclass
class Ticker:
    """The live last bar: each ``tick`` moves its close; a new bar opens every ``bar_seconds``."""

    bar: Point
    volume: float
    bar_seconds: int
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng())

    def tick(self, now: float) -> tuple[Point, Point]:
        """The last candle and volume bar after a trade at ``now`` (UTC seconds)."""
        bar_time = int(now) - int(now) % self.bar_seconds
        if bar_time > self.bar["time"]:
            close = self.bar["close"]
            self.bar = {"time": bar_time, "open": close, "high": close, "low": close}
            self.bar["close"] = close
            self.volume = 0.0
        price = round(float(self.bar["close"] * np.exp(self.rng.normal(0, 0.0005))), 4)
        self.bar["close"] = price
        self.bar["high"] = max(self.bar["high"], price)
        self.bar["low"] = min(self.bar["low"], price)
        self.volume += float(self.rng.integers(1, 50))
        return dict(self.bar), {
            "time": self.bar["time"],
            "value": self.volume,
            "color": _color(self.bar),
        }


def _color(bar: Point) -> str:
    return UP_COLOR if bar["close"] >= bar["open"] else DOWN_COLOR

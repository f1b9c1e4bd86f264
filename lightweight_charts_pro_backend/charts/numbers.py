"""Numeric fields read straight from the points' JSON bytes with NumPy, without parsing objects.

Turning a million stored points into Python dicts to pull four prices out of each costs about a
second; the fields' bytes are where the store put them, so ``fields_of`` finds each ``"name":``
and reads the number after it, all points at once. Numbers of up to 15 significant digits
without an exponent (what charts send) are computed exactly as ``float()`` would: an integer
mantissa (exact below 2**53) divided by a power of ten (exact up to 10**22) is one correctly
rounded operation. Other numbers go through ``float()``; other values (strings, ``null``) read as
absent numbers.

The byte scan relies on what the store holds: each point a flat JSON object written by orjson.
Objects nested in a point, or escapes in its strings, make it give up (``None``) and the caller
parses the points as objects instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

_WIDTH: Final = 17  # bytes of a number read at once: 15 digits, a sign and a point
_POW10: Final = 10.0 ** np.arange(_WIDTH)
_INT_POW10: Final = 10 ** np.arange(_WIDTH, dtype=np.int64)
_WEIGHTS: Final = 10 ** np.arange(_WIDTH - 1, -1, -1, dtype=np.int64)
_COLON, _QUOTE, _BRACE, _MINUS = (ord(c) for c in ':"{-')
#: Each byte's class in a number: its digit's value, 10 for the decimal point, 11 otherwise.
_CLASS: Final = np.full(256, 11, dtype=np.uint8)
_CLASS[ord("0") : ord("9") + 1] = np.arange(10)
_CLASS[ord(".")] = 10


@dataclass(frozen=True, slots=True)
class Fields:
    """``values[j, i]``: field ``j`` of point ``i`` (NaN when absent or not a number);
    ``present``: whether the point has the key at all; ``integral[j]``: every number of the
    field was written as an integer; ``keys``: how many keys each point has."""

    values: npt.NDArray[np.float64]
    present: npt.NDArray[np.bool_]
    integral: npt.NDArray[np.bool_]
    keys: npt.NDArray[np.int64]


def fields_of(array: bytes, count: int, names: tuple[str, ...]) -> Fields | None:
    """The ``names`` fields of the ``count`` points of the JSON array ``array``, or None when
    the points are not all flat objects without escapes."""
    if b"\\" in array or array.count(b"{") != count:
        return None
    raw = np.frombuffer(array, dtype=np.uint8)
    starts = np.flatnonzero(raw == _BRACE)
    # A point's closing brace is just before the comma before the next point (or the ']').
    closes = np.append(starts[1:] - 2, len(raw) - 2)
    # Without escapes, quotes alternate: every second one closes a string, and a closing quote
    # followed by a colon ends a key. A number after a key ends before the next quote (the
    # next key's) or at the point's closing brace.
    quotes = np.append(np.flatnonzero(raw == _QUOTE), len(raw))
    closing = np.arange(1, len(quotes) - 1, 2)
    closing = closing[raw[quotes[closing] + 1] == _COLON]
    key_ends = quotes[closing]
    keys = np.diff(np.append(np.searchsorted(key_ends, starts), len(key_ends)))
    owners = np.repeat(np.arange(count), keys)
    value_ends = np.minimum(quotes[closing + 1] - 1, closes[owners])
    values = np.full((len(names), count), np.nan)
    present = np.zeros((len(names), count), dtype=np.bool_)
    integral = np.ones(len(names), dtype=np.bool_)
    # Keys told apart by length, first and last byte, then checked byte by byte.
    key_starts = quotes[closing - 1] + 1
    signatures = (key_ends - key_starts) << 16 | raw[key_starts].astype(np.int64) << 8
    signatures |= raw[key_ends - 1]
    for j, name in enumerate(names):
        token = name.encode()
        size = len(token)
        match = signatures == (size << 16 | token[0] << 8 | token[-1])
        candidates = np.flatnonzero(match)
        for k in range(1, size - 1):
            match[candidates] &= raw[key_starts[candidates] + k] == token[k]
        points = owners[match]
        present[j, points] = True
        numbers, whole = _numbers(raw, key_ends[match] + 2, value_ends[match])
        values[j, points] = numbers
        integral[j] = whole
    return Fields(values, present, integral, keys)


def _numbers(
    raw: npt.NDArray[np.uint8], start: npt.NDArray[np.int64], end: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], bool]:
    """The JSON values ``raw[start:end]`` as floats (NaN: not a number), and whether every
    number among them is written as an integer."""
    length = end - start
    out = np.full(len(start), np.nan)
    if not len(start):
        return out, True
    width = int(min(max(int(length.max()), 1), _WIDTH))
    columns = np.arange(width)
    # Right-aligned windows: each value's last ``width`` bytes, classified by _CLASS (digits
    # 0-9, 10 the decimal point, 11 anything else), with what lies before the value (and a
    # leading minus sign) read as zeros, which change nothing.
    windows = np.lib.stride_tricks.sliding_window_view(raw, width)
    classes = _CLASS[windows[np.maximum(end - width, 0)]]
    classes[columns < (width - length)[:, None]] = 0
    negative = raw[start] == _MINUS
    classes[negative, width - length[negative]] = 0
    is_dot = classes == 10
    dots = is_dot.sum(axis=1)
    starts_well = (_CLASS[raw[start]] < 10) | (negative & (length > 1))
    simple = (length > 0) & (length <= width) & (end >= width) & (dots <= 1)
    simple &= (classes.max(axis=1) <= 10) & starts_well
    whole = np.where(is_dot, 0, classes).astype(np.int64) @ _WEIGHTS[-width:]
    decimals = np.where(dots > 0, width - 1 - is_dot.argmax(axis=1), 0)
    scale = _INT_POW10[decimals]
    mantissa = np.where(dots > 0, whole // (scale * 10) * scale + whole % scale, whole)
    simple &= mantissa < 2**53
    out = np.where(simple, mantissa / _POW10[decimals], np.nan)
    out = np.where(negative, -out, out)
    integral = not bool((dots[simple] > 0).any())
    for row in np.flatnonzero(~simple).tolist():
        text = bytes(raw[start[row] : end[row]])
        first = text[:1]
        if first.isdigit() or first == b"-":
            out[row] = float(text)
            integral = integral and text.lstrip(b"-").isdigit()
        else:
            out[row] = np.nan
    return out, integral

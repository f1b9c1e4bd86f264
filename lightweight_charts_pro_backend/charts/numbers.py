"""Numeric fields read straight from the points' JSON bytes with NumPy, without parsing objects.

Turning a million stored points into Python dicts to pull four prices out of each costs about a
second; ``FieldReader`` reads the numbers where the store put them, a page of points at once.

Finding the values: every key ends at a colon, and the points of a series mostly share one
layout (the same keys in the same order). So one pass over a page finds the colons, and each
point with as many colons as a layout has keys is checked against it: just before each colon,
that key in quotes. A point that passes holds exactly those keys (the pattern occurs nowhere
else in a flat object without escapes), each value running from its colon to the comma before
the next key. A few layouts are tried, each taken from the first point left; the points none
fits (a gap with fewer keys is one layout; a string holding a colon fits none) are read by a
general scan that pairs quotes.

Reading a number: one of up to 8 bytes (``-1234.56``) is one 64-bit word, whose digits are
combined with three multiplications; longer ones are read byte by byte. Numbers of up to 15
significant digits without an exponent (what charts send) are computed exactly as ``float()``
would: an integer mantissa (exact below 2**53) divided by a power of ten (exact up to 10**22) is
one correctly rounded operation. Other numbers go through ``float()``; other values (strings,
``null``) read as absent numbers.

The scan relies on what the store holds: each point a flat JSON object written by orjson.
Objects with keys nested in a point, escapes in its strings, or whitespace after a key (from a
database that reformats JSON) make it give up (``None``), and the caller parses the points as
objects instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import orjson

Int64s = npt.NDArray[np.int64]
Words = npt.NDArray[np.uint64]

_WIDTH: Final = 17  # bytes of a number read at once: 15 digits, a sign and a point
_POW10: Final = 10.0 ** np.arange(_WIDTH)
_INT_POW10: Final = 10 ** np.arange(_WIDTH, dtype=np.int64)
_WEIGHTS: Final = 10 ** np.arange(_WIDTH - 1, -1, -1, dtype=np.int64)
_COLON, _QUOTE, _BRACE, _MINUS = (ord(c) for c in ':"{-')
#: Each byte's class in a number: its digit's value, 10 for the decimal point, 11 otherwise.
_CLASS: Final = np.full(256, 11, dtype=np.uint8)
_CLASS[ord("0") : ord("9") + 1] = np.arange(10)
_CLASS[ord(".")] = 10

_LAYOUTS: Final = 4  # layouts tried per page before the general scan takes the rest
_PAD: Final = bytes(16)  # around a page, so that a word can be read at any byte of it
_LOW7: Final = np.uint64(0x7F7F_7F7F_7F7F_7F7F)
_HIGH: Final = np.uint64(0x8080_8080_8080_8080)
_ZERO_CHARS: Final = np.uint64(0x3030_3030_3030_3030)
_DOTS: Final = np.uint64(0x1E1E_1E1E_1E1E_1E1E)  # '.' once a word is XORed with '0's
_ABOVE_NINE: Final = np.uint64(0x7676_7676_7676_7676)  # added to 7-bit bytes: > 9 sets bit 7
_NOT_FIRST: Final = np.uint64(0xFFFF_FFFF_FFFF_FF00)
_BYTE_INDEX: Final = np.uint64(0x0001_0203_0405_0607)
_PAIRS: Final = np.uint64(0x0000_00FF_0000_00FF)
_HUNDREDS: Final = np.uint64(100 + (1_000_000 << 32))
_UNITS: Final = np.uint64(1 + (10_000 << 32))
_BYTE, _TEN, _SEVEN, _EIGHT, _SIXTEEN, _THIRTY_TWO, _FIFTY_SIX = (
    np.uint64(v) for v in (0xFF, 10, 7, 8, 16, 32, 56)
)
_ONE: Final = np.uint64(1)
#: _KEEP[n]: the first n bytes of a word.
_KEEP: Final = np.array([(1 << 8 * n) - 1 for n in range(9)], dtype=np.uint64)
#: By a number's form, ``8 * length + (the byte of its decimal point, 0 without one)``: the
#: shift that moves its digits (without the point) to the end of a word, and the power of ten
#: its digits are divided by.
_ALIGN: Final = np.zeros(72, dtype=np.uint64)
_SCALE: Final = np.ones(72)
for _length in range(1, 9):
    for _point in range(_length):
        _digits = _length - (_point > 0)
        _ALIGN[8 * _length + _point] = 8 * (8 - _digits) if _digits else 0
        _SCALE[8 * _length + _point] = 10.0 ** (_length - 1 - _point) if _point else 1.0


@dataclass(frozen=True, slots=True)
class Fields:
    """``values[j, i]``: field ``j`` of point ``i`` (NaN when absent or not a number);
    ``present``: whether the point has the key at all; ``integral[j]``: every number of the
    field was written as an integer; ``keys``: how many keys each point has."""

    values: npt.NDArray[np.float64]
    present: npt.NDArray[np.bool_]
    integral: npt.NDArray[np.bool_]
    keys: Int64s


class FieldReader:
    """Reads the ``names`` fields of pages of points, one page after another (see the module).

    The buffers as large as a page's JSON are kept from page to page: the server maps blocks
    above 256 KiB on their own (``memory.tune_allocator``), and fresh pages cost more in page
    faults than the arithmetic done on them.

    Usage::

        reader = FieldReader(("open", "close"))
        starts = store.copy_json(lo, hi, reader.buffer(store.json_size(lo, hi)))
        fields = reader.read(hi - lo, starts)
    """

    __slots__ = ("_mask", "_size", "_text", "names")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._text = bytearray()
        self._mask = np.zeros(0, dtype=np.bool_)
        self._size = 0

    def buffer(self, size: int) -> memoryview:
        """Where the next page's JSON array (``size`` bytes) is to be written."""
        needed = size + 2 * len(_PAD)
        if len(self._text) < needed:
            self._text = bytearray(needed)
            self._mask = np.zeros(needed, dtype=np.bool_)
        self._size = size
        self._text[len(_PAD) + size : needed] = _PAD  # the bytes before are never written
        return memoryview(self._text)[len(_PAD) : len(_PAD) + size]

    def read(
        self,
        count: int,
        starts: Int64s | None = None,
        values: npt.NDArray[np.float64] | None = None,
    ) -> Fields | None:
        """The fields of the ``count`` points in the JSON array last written to ``buffer``, or
        None when they are not all flat objects without escapes. ``starts``: where each point
        starts in the array, when known; ``values``: where the values go (else a new array)."""
        text, pad = self._text, len(_PAD)
        if text.find(b"\\", pad, pad + self._size) >= 0:
            return None
        length = self._size + 2 * pad
        raw = np.frombuffer(text, dtype=np.uint8, count=length)
        mask = self._mask[:length]
        if starts is None:
            starts = np.flatnonzero(np.equal(raw, _BRACE, out=mask))
            if len(starts) != count:
                return None
        else:
            starts = starts + pad
        if values is None:
            values = np.empty((len(self.names), count))
        values[:] = np.nan
        fields = Fields(
            values,
            np.zeros((len(self.names), count), dtype=np.bool_),
            np.ones(len(self.names), dtype=np.bool_),
            np.zeros(count, dtype=np.int64),
        )
        if not count:
            return fields
        page = _Page(raw, _words(text, length), starts)
        colons = np.flatnonzero(np.equal(raw, _COLON, out=mask))
        try:
            return _read_page(page, colons, self.names, fields)
        except _Spaced:
            return None


class _Spaced(Exception):
    """The points' JSON has whitespace between tokens (not as orjson writes it)."""


class _Page:
    """Points in a JSON array between zero bytes: ``raw`` the bytes, ``words[i]`` the 8 bytes
    from ``raw[i]`` on (little-endian), ``starts`` and ``ends`` each point's braces."""

    __slots__ = ("ends", "raw", "starts", "words")

    def __init__(self, raw: npt.NDArray[np.uint8], words: Words, starts: Int64s) -> None:
        self.raw = raw
        self.words = words
        self.starts = starts
        # A point's closing brace is just before the comma before the next point (or the ']').
        self.ends: Int64s = np.append(starts[1:] - 2, len(raw) - len(_PAD) - 2)

    def __len__(self) -> int:
        return len(self.starts)

    def points(self, which: Int64s) -> _Page | None:
        """A page of some of the points, in order; None if one holds an object."""
        starts, ends = self.starts[which], self.ends[which]
        sizes = ends - starts + 2  # each point and the separator after it
        shifts = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes)
        body = self.raw[shifts + np.arange(int(sizes.sum()))]
        body[-1] = ord("]")
        text = _PAD + b"[" + body.tobytes() + _PAD
        raw = np.frombuffer(text, dtype=np.uint8)
        inner = np.flatnonzero(raw == _BRACE)
        if len(inner) != len(which):
            return None
        return _Page(raw, _words(text, len(text)), inner)


def _words(buffer: bytes | bytearray, length: int) -> Words:
    words: Words = np.ndarray((length - 7,), dtype="<u8", buffer=buffer, strides=(1,))
    return words


def fields_of(array: bytes, count: int, names: tuple[str, ...]) -> Fields | None:
    """The ``names`` fields of the ``count`` points of the JSON array ``array``, or None when
    the points are not all flat objects without escapes."""
    reader = FieldReader(names)
    reader.buffer(len(array))[:] = array
    return reader.read(count)


def _read_page(
    page: _Page, colons: Int64s, names: tuple[str, ...], fields: Fields
) -> Fields | None:
    keys = _keys(page, 0)
    if keys is not None and _read_grid(page, colons, keys, names, fields):
        return fields
    first = np.searchsorted(colons, page.starts)
    found = np.diff(np.append(first, len(colons)))
    left = np.arange(len(page))
    for _ in range(_LAYOUTS):
        if keys is None:
            break
        fits = _read_layout(page, left, keys, colons, first, found, names, fields)
        if not fits[0]:
            break
        left = left[~fits]
        if not len(left):
            break
        keys = _keys(page, int(left[0]))
    if len(left):
        rest = page.points(left)
        if rest is None:
            return None
        scanned = _scan(rest, names)
        fields.values[:, left] = scanned.values
        fields.present[:, left] = scanned.present
        fields.integral[:] &= scanned.integral
        fields.keys[left] = scanned.keys
    return fields


def _keys(page: _Page, point: int) -> list[str] | None:
    text = page.raw[page.starts[point] : page.ends[point] + 1].tobytes()
    try:
        return list(orjson.loads(text))
    except (orjson.JSONDecodeError, TypeError):
        return None


def _read_grid(
    page: _Page, colons: Int64s, keys: list[str], names: tuple[str, ...], fields: Fields
) -> bool:
    """Read the page if every point holds exactly ``keys`` in this order (the usual case: then
    point ``i``'s colons are ``colons[i * len(keys):][:len(keys)]``); else False."""
    if not keys or len(colons) != len(page) * len(keys):
        return False
    grid = colons.reshape(len(page), len(keys))
    if not bool(((grid[:, 0] > page.starts) & (grid[:, -1] < page.ends)).all()):
        return False  # each point holds as many colons as keys, but not all are keys
    key_colons = [grid[:, k] for k in range(len(keys))]
    tokens = [orjson.dumps(key) for key in keys]
    for token, key_colon in zip(tokens, key_colons, strict=True):
        if not bool(_ends_with(page.words, key_colon, token).all()):
            return False
    _read_values(page, slice(None), keys, tokens, key_colons, names, fields)
    return True


def _read_layout(
    page: _Page,
    points: Int64s,
    keys: list[str],
    colons: Int64s,
    first: Int64s,
    found: Int64s,
    names: tuple[str, ...],
    fields: Fields,
) -> npt.NDArray[np.bool_]:
    """Read the ``points`` that hold exactly ``keys`` in this order into ``fields``; which did."""
    tokens = [orjson.dumps(key) for key in keys]
    at = first[points]
    fits: npt.NDArray[np.bool_] = found[points] == len(keys)
    last = max(len(colons) - 1, 0)
    key_colons = [colons[np.minimum(at + k, last)] for k in range(len(keys))]
    for token, key_colon in zip(tokens, key_colons, strict=True):
        fits &= _ends_with(page.words, key_colon, token)
    chosen = points[fits]
    if len(chosen):
        key_colons = [key_colon[fits] for key_colon in key_colons]
        _read_values(page, chosen, keys, tokens, key_colons, names, fields)
    return fits


def _read_values(
    page: _Page,
    points: Int64s | slice,
    keys: list[str],
    tokens: list[bytes],
    key_colons: list[Int64s],
    names: tuple[str, ...],
    fields: Fields,
) -> None:
    """Read the values of ``points``, whose keys are ``keys`` (JSON ``tokens``) followed by
    a colon at ``key_colons``, into ``fields``."""
    # A value ends at the comma before the next key, the last one at the point's brace.
    ends = [colon - len(token) - 1 for colon, token in zip(key_colons[1:], tokens[1:], strict=True)]
    ends.append(page.ends[points])
    for k, key in enumerate(keys):
        if key not in names:
            continue
        j = names.index(key)
        numbers, whole = _numbers(page, key_colons[k] + 1, ends[k])
        fields.values[j, points] = numbers
        fields.present[j, points] = True
        fields.integral[j] &= whole
    fields.keys[points] = len(keys)


def _ends_with(words: Words, at: Int64s, token: bytes) -> npt.NDArray[np.bool_]:
    """Whether the bytes just before each of ``at`` are ``token``."""
    matches = np.ones(len(at), dtype=np.bool_)
    while token:
        piece, token = token[-8:], token[:-8]
        shift = 8 * (8 - len(piece))
        mask = np.uint64(((1 << 64) - 1) >> shift << shift)
        expected = np.uint64(int.from_bytes(piece, "little") << shift)
        found = words[at - 8]
        found &= mask
        matches &= found == expected
        at = at - len(piece)
    return matches


def _scan(page: _Page, names: tuple[str, ...]) -> Fields:
    """The fields of any flat points: keys found by pairing quotes."""
    raw, starts, count = page.raw, page.starts, len(page)
    # Without escapes, quotes alternate: every second one closes a string, and a closing quote
    # followed by a colon ends a key. A number after a key ends before the next quote (the
    # next key's) or at the point's closing brace.
    quotes = np.append(np.flatnonzero(raw == _QUOTE), len(raw) - len(_PAD))
    closing = np.arange(1, len(quotes) - 1, 2)
    closing = closing[raw[quotes[closing] + 1] == _COLON]
    key_ends = quotes[closing]
    keys = np.diff(np.append(np.searchsorted(key_ends, starts), len(key_ends)))
    owners = np.repeat(np.arange(count), keys)
    value_ends = np.minimum(quotes[closing + 1] - 1, page.ends[owners])
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
        numbers, whole = _numbers(page, key_ends[match] + 2, value_ends[match])
        values[j, points] = numbers
        integral[j] = whole
    return Fields(values, present, integral, keys)


def _numbers(page: _Page, start: Int64s, end: Int64s) -> tuple[npt.NDArray[np.float64], bool]:
    """The JSON values ``raw[start:end]`` as floats (NaN: not a number), and whether every
    number among them is written as an integer."""
    length = end - start
    if not len(start):
        return np.zeros(0), True
    if int(length.min()) >= 1 and int(length.max()) <= 8:
        out, simple, dotted = _short_numbers(page.words, start, length)
        dotted &= simple
        integral = not bool(dotted.any())
        if simple.all():
            return out, integral
        rest = np.flatnonzero(~simple)
    else:
        fits = (length >= 1) & (length <= 8)
        short = np.flatnonzero(fits)
        out = np.empty(len(start))
        values, simple, dotted = _short_numbers(page.words, start[short], length[short])
        out[short] = values
        dotted &= simple
        integral = not bool(dotted.any())
        fits[short[~simple]] = False
        rest = np.flatnonzero(~fits)
    values, whole = _long_numbers(page.raw, start[rest], end[rest])
    out[rest] = values
    return out, integral and whole


def _short_numbers(
    words: Words, start: Int64s, length: Int64s
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``(values, simple, dotted)`` of values of 1 to 8 bytes, each read as one word: where
    ``simple`` (an optional minus sign, digits and at most one decimal point), the value and
    whether it has a decimal point; elsewhere meaningless.

    The arithmetic runs in place on a few arrays: arrays of a page's size would each be
    mapped afresh by the allocator and cost more in page faults than in arithmetic."""
    digits = words[start]
    spare = digits & _BYTE
    negative = spare == _MINUS
    signed = bool(negative.any())
    digits ^= _ZERO_CHARS  # '0'..'9' become 0..9
    digits &= np.take(_KEEP, length, out=spare, mode="clip")
    if signed:
        digits[negative] &= _NOT_FIRST  # the sign reads as a leading 0
    # 1 << 8 * (the decimal point's byte), or 0. A number has at most one point; anything else
    # starts with a byte that is no digit and is not moved, so it is not simple either way.
    unit = digits ^ _DOTS
    _zero_bytes(unit, spare)
    unit >>= _SEVEN
    # The point taken out: the bytes before it stay, those after it move down a byte.
    below = np.subtract(unit, _ONE, out=spare)  # all of them without a point
    after = ~below
    after <<= _EIGHT
    after &= digits
    after >>= _EIGHT
    digits &= below
    digits |= after
    check = np.bitwise_and(digits, _LOW7, out=spare)
    check += _ABOVE_NINE
    check |= digits
    check &= _HIGH
    simple = check == 0
    point = np.multiply(unit, _BYTE_INDEX, out=spare)
    point >>= _FIFTY_SIX
    form = length << 3
    form += point.view(np.int64)
    digits <<= np.take(_ALIGN, form, out=spare, mode="clip")  # the last digit in the last byte
    np.right_shift(digits, _EIGHT, out=after)
    digits *= _TEN
    digits += after  # each byte 10x itself + the next: pairs of digits in bytes 0, 2, 4 and 6
    np.right_shift(digits, _SIXTEEN, out=after)
    after &= _PAIRS
    after *= _UNITS
    digits &= _PAIRS
    digits *= _HUNDREDS
    digits += after
    digits >>= _THIRTY_TWO
    dotted = unit != 0
    values = unit.view(np.float64)
    np.copyto(values, digits, casting="safe")
    values /= np.take(_SCALE, form, out=spare.view(np.float64), mode="clip")
    if signed:
        np.negative(values, out=values, where=negative)
    return values, simple, dotted


def _zero_bytes(words: Words, spare: Words) -> None:
    """Leave in ``words`` bit 7 of each of its bytes that is zero (and no other bit)."""
    np.bitwise_and(words, _LOW7, out=spare)
    spare += _LOW7
    spare |= words
    spare |= _LOW7
    np.invert(spare, out=words)


def _long_numbers(
    raw: npt.NDArray[np.uint8], start: Int64s, end: Int64s
) -> tuple[npt.NDArray[np.float64], bool]:
    """As ``_numbers``, reading each value byte by byte (right-aligned windows of up to
    ``_WIDTH`` bytes); values that are not simple numbers go through ``float()``."""
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
        elif first.isspace():
            raise _Spaced  # a value's span begins after the colon only without whitespace
        else:
            out[row] = np.nan
    return out, integral

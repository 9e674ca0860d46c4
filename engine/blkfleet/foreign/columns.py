"""Columns of text fields into numbers, at C speed where the fields are clean, and the IOs a block of lines gives.

A column is a list of ``bytes`` fields. The fast test of a column of whole numbers joins it and asks
``bytes.isdigit`` (one C call), then ``map(int, ...)``; only a column that fails is walked field by field, to
name the first bad field and its line. ``int`` alone would be too lenient: it takes signs, spaces and ``_``.
"""

import re
from array import array
from itertools import compress, repeat
from operator import mul

from ..replayfile.reader import MAX_END, MAX_NBYTES
from .inputs import InputError

MAX_OFFSET = MAX_END  # bytes: an offset of 2^63 or more cannot be replayed
MAX_DIGITS = 40  # longer numbers are refused before int() (which also refuses more than 4300 digits)
_DECIMAL = re.compile(rb"([0-9]*)\.?([0-9]*)")


class Rows:
    """The IOs of a block: ``times`` (ns in the input's own clock, before the import's time base is taken off),
    ``offsets`` and ``sizes`` (bytes), ``ops`` and ``flags`` (bytes, one per IO), ``keys`` (the device key of
    every IO, or None when all are ``key``), ``lines`` (the line of every IO) and ``dev_t`` ({key: dev_t} for the
    keys that name one)."""

    __slots__ = ("times", "offsets", "sizes", "ops", "flags", "keys", "key", "lines", "dev_t")

    def __init__(self, times, offsets, sizes, ops, lines, keys=None, key=b"", flags=None, dev_t=None):
        self.times, self.offsets, self.sizes, self.ops, self.lines = times, offsets, sizes, ops, lines
        self.keys, self.key = keys, key
        self.flags = bytes(len(ops)) if flags is None else flags
        self.dev_t = dev_t or {}

    def __len__(self):
        return len(self.ops)

    def select(self, mask):
        """The rows whose ``mask`` byte is 1."""
        return Rows(list(compress(self.times, mask)), list(compress(self.offsets, mask)),
                    list(compress(self.sizes, mask)), bytes(compress(self.ops, mask)),
                    array("q", compress(self.lines, mask)),
                    None if self.keys is None else list(compress(self.keys, mask)), self.key,
                    bytes(compress(self.flags, mask)), self.dev_t)


def uniform_lines(text, width, sep=None):
    """The number of lines of ``text`` (whole lines) when every one has ``width`` fields apart by one ``sep``
    (None: one space, and no other blank anywhere), else None: then the caller looks line by line. One
    ``translate`` leaves the block's skeleton (its separators and newlines), compared at once with what it must be."""
    if sep is None:
        if text[:1] == b" " or any(blank in text for blank in _OTHER_BLANKS):
            return None
        sep = b" "
    skeleton = text.translate(None, _not_structure(sep))
    n = skeleton.count(b"\n")
    return n if skeleton == (sep * (width - 1) + b"\n") * n else None


_OTHER_BLANKS = (b"\t", b"\r", b"\x0b", b"\x0c", b"  ", b" \n", b"\n ")
_NOT_STRUCTURE = {}


def _not_structure(sep):
    """Every byte but ``sep`` and the newline (what a skeleton drops)."""
    drop = _NOT_STRUCTURE.get(sep)
    if drop is None:
        drop = _NOT_STRUCTURE[sep] = bytes(b for b in range(256) if b not in sep + b"\n")
    return drop


def line_numbers(first, count):
    """The lines of ``count`` IOs one per line from ``first`` on (a range: nothing stored per IO)."""
    return range(first, first + count)


def whole(name, column, lines, what, limit=None, plain=False):
    """The column as ints in 0..limit (None: any size; check_extents bounds offsets and sizes); InputError
    naming the first field that is not a whole number or is larger. ``plain``: the text the column comes from
    holds no blank, sign or ``_`` (``plain_text``), so what ``int`` takes is digits only."""
    values = _ints(column, plain)
    if values is not None and (limit is None or not values or max(values) <= limit):
        return values
    for i, field in enumerate(column):
        if not field.isdigit():
            raise InputError(name, lines[i], f"{what} {_shown(field)} is not a whole number")
        if len(field) > MAX_DIGITS or limit is not None and int(field) > limit:
            raise InputError(name, lines[i], f"{what} {_shown(field)} is more than {limit}")
    raise AssertionError("unreachable")


def scaled(name, column, lines, what, numerator, denominator=1, limit=None, plain=False):
    """A column of non-negative decimal numbers (``12``, ``0.000123``) times numerator / denominator, as ints
    (truncated toward zero: a fraction finer than the result's unit is dropped)."""
    values = _ints(column, plain)
    if values is not None:
        if denominator != 1:
            values = [v * numerator // denominator for v in values]
        elif numerator != 1:
            values = list(map(mul, values, repeat(numerator)))
    else:
        values = []
        for i, field in enumerate(column):
            m = _DECIMAL.fullmatch(field)
            if not m or not (m.group(1) or m.group(2)) or len(field) > MAX_DIGITS:
                raise InputError(name, lines[i], f"{what} {_shown(field)} is not a non-negative number")
            whole_part, fraction = m.groups()
            digits = int(whole_part + fraction)
            values.append(digits * numerator // (denominator * 10 ** len(fraction)))
    if limit is not None and values and max(values) > limit:
        i = next(i for i, v in enumerate(values) if v > limit)
        raise InputError(name, lines[i], f"{what} {_shown(column[i])} is too large")
    return values


def plain_text(text):
    """Whether ``text`` holds none of what ``int`` takes beside digits (blanks, signs, ``_``): then ``int``
    failing or not is the whole test of a field (``b""`` aside), without joining the column to test it."""
    return not (b" " in text or b"\t" in text or b"+" in text or b"-" in text or b"_" in text or b"\x0b" in text
                or b"\x0c" in text or b"\r" in text)


def _ints(column, plain=False):
    """The column as ints when every field is ASCII digits (and none is too long for ``int``), else None."""
    if not column:
        return []
    if b"" in column or not plain and not b"".join(column).isdigit():
        return None
    try:
        return list(map(int, column))
    except ValueError:  # more than 4300 digits
        return None


def check_extents(name, rows):
    """Offsets below 2^63, lengths within a u32, extents ending at or before 2^63 - 1 bytes."""
    if not len(rows):
        return
    if max(rows.sizes) > MAX_NBYTES:
        i = next(i for i, s in enumerate(rows.sizes) if s > MAX_NBYTES)
        raise InputError(name, rows.lines[i], f"IO length {rows.sizes[i]} bytes is more than {MAX_NBYTES}")
    if max(rows.offsets) > MAX_OFFSET - MAX_NBYTES:
        for i, (o, s) in enumerate(zip(rows.offsets, rows.sizes)):
            if o + s > MAX_OFFSET:
                raise InputError(name, rows.lines[i], f"offset {o} + {s} bytes ends beyond 2^63 - 1 bytes")


def _shown(field):
    text = field[:40].decode("utf-8", "replace")
    return repr(text + ("..." if len(field) > 40 else ""))

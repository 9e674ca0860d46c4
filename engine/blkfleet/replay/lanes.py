"""Whole-column arithmetic on ``array('q')`` columns of non-negative numbers, without a Python step per item.

A column's bytes read as one little-endian integer hold its values as 64-bit lanes, the first lowest. Adding,
subtracting, AND-ing or shifting whole columns is then one big-integer operation (C speed, about 1 ns per
value), exact as long as every lane stays within 0 .. 2^63 - 1: no carry, borrow or shifted bit crosses into
the next lane. Each caller says why its lanes do.
"""

from array import array

_INDEXES = array("q", range(1 << 16))


def lanes(column):
    """The integer whose 64-bit lanes are the column's values."""
    return int.from_bytes(column, "little")


def column(value, n):
    """The ``array('q')`` of the first ``n`` lanes of ``value``."""
    out = array("q")
    out.frombytes(value.to_bytes(8 * n, "little"))
    return out


def repeat(value, n):
    """``n`` lanes of ``value``."""
    return lanes(array("q", (value,)) * n)


def indexes(n):
    """Lanes 0 .. n - 1."""
    return lanes(_INDEXES[:n] if n <= len(_INDEXES) else array("q", range(n)))

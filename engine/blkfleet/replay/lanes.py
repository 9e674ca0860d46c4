"""Whole-column arithmetic on ``array('q')`` columns of non-negative numbers, without a Python step per item.

A column's bytes read as one little-endian integer hold its values as 64-bit lanes, the first lowest. Adding,
subtracting, AND-ing or shifting whole columns is then one big-integer operation (C speed, about 1 ns per
value), exact as long as every lane stays within 0 .. 2^63 - 1: no carry, borrow or shifted bit crosses into
the next lane. Each caller says why its lanes do. ``gather`` takes many columns' items in one order (a merge,
a poll's completed slots) without a Python step per item either.
"""

from array import array
from operator import itemgetter

_INDEXES = array("q", range(1 << 16))
_TOP_BIT = bytes(7) + b"\x80"  # a lane with only its bit 63 set


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


def _tops(n):
    """``n`` lanes with only their top bit set (above ``repeat``'s range)."""
    return int.from_bytes(_TOP_BIT * n, "little")


def ascending(column):
    """Whether the values never go down (each in 0 .. 2^63 - 1). The lane-wise differences of neighbours, taken as
    one subtraction: a negative one borrows, which sets the top bit of its lane (or, in the last lane, makes
    the whole result negative); without one, every lane is its difference, below 2^63."""
    n = len(column) - 1
    if n < 1:
        return True
    diffs = lanes(column[1:]) - lanes(column[:-1])
    return diffs >= 0 and not diffs & _tops(n)


def negative(column):
    """Whether any value of the column is below 0 (its lane's top bit is set)."""
    return bool(lanes(column) & _tops(len(column)))


def above(value, threshold, n):
    """How many of the ``n`` lanes of ``value`` exceed ``threshold`` (both in 0 .. 2^63 - 1): adding
    2^63 - 1 - threshold to every lane sets its top bit exactly where it does, and no lane overflows."""
    hits = (value + repeat((1 << 63) - 1 - threshold, n)) & _tops(n)
    return column(hits >> 63, n).count(1)


def indexes(n):
    """Lanes 0 .. n - 1."""
    return lanes(_INDEXES[:n] if n <= len(_INDEXES) else array("q", range(n)))


def gather(indexes):
    """A function that gives the items of a column at ``indexes`` (at least one), as a tuple, in one C call
    (``operator.itemgetter``, made once and used for every column taken in that order)."""
    if len(indexes) == 1:
        only = indexes[0]
        return lambda column: (column[only],)
    return itemgetter(*indexes)

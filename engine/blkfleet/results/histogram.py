"""Log-linear histograms of nanosecond values: constant memory, at most 0.4 % relative error on any percentile.

A value ``v`` >= 0 (ns) falls in the bucket named by the top 18 bits of ``float(v)`` (IEEE 754 double):
its exponent and the first 7 bits of its mantissa, ``index(v) = bits(float(v)) >> 45`` (0 for 0). Between two
powers of two, 2^(L-1) <= v < 2^L, that is 128 buckets of 2^(L-8) ns each: from 128 ns up, a bucket is at most
1/128 of its lower bound wide; below, it holds one integer (exact). Reading the buckets off the float's bits
lets a whole column of values be binned at once (``array('d')`` and one big-integer shift over 64-bit lanes),
about 0.1 µs per value.

A bucket's value is its midpoint, within 0.5/128 = 0.39 % of every value in it, from 1 µs to 100 s and beyond
(exact up to 2^53 ns). Negative values (lateness of an IO sent early, in a batch) count in a mirrored set of
buckets: the bucket of -v with the double's sign bit kept above it (``NEGATIVE``), so that a column of both signs
is binned in the same one pass. The exact minimum and maximum are kept: a percentile at either end is exact, and
no estimate leaves [min, max].

Percentiles follow ``blkfleet.stats`` ("linear", numpy's default): rank h = (n - 1) p / 100, the values at
ranks floor(h) and floor(h) + 1 interpolated; each ranked value is its bucket's midpoint. Memory is one dict
entry per non-empty bucket (at most 8,192 for any value below 2^63), whatever the number of values.
"""

import math
import struct
from array import array
from bisect import bisect_right
from collections import Counter

SUB_BUCKETS = 128
SHIFT = 45  # 52 mantissa bits, of which the first 7 name the sub-bucket
MASK = (1 << 18) - 1  # exponent (11 bits) and 7 mantissa bits of a positive double
NEGATIVE = 1 << 18  # the sign bit, where ``indexes`` with SIGNED keeps it
SIGNED = MASK | NEGATIVE
SCHEME = "log-linear"
_DOUBLE = struct.Struct("<d")
_BITS = struct.Struct("<q")


def index(v):
    """The bucket of a value >= 0."""
    return _BITS.unpack(_DOUBLE.pack(v))[0] >> SHIFT


def _edge(i):
    """The smallest integer in bucket ``i`` or above."""
    return math.ceil(_DOUBLE.unpack(_BITS.pack(i << SHIFT))[0]) if i else 0


def bounds(i):
    """[lower, upper) of bucket ``i`` (ns, integers)."""
    return (_edge(i), 1) if i == 0 else (_edge(i), _edge(i + 1))


def indexes(values, mask=MASK):
    """The buckets of many values >= 0, as an ``array('q')`` (C speed: see the module docstring). With
    ``mask=SIGNED`` values may be negative: those are the buckets of -v, plus NEGATIVE."""
    n = len(values)
    doubles = array("d", values)
    lanes = (int.from_bytes(doubles, "little") >> SHIFT) & int.from_bytes(array("q", (mask,)) * n, "little")
    out = array("q")
    out.frombytes(lanes.to_bytes(8 * n, "little"))
    return out


def _midpoint(i):
    lo, hi = bounds(i)
    return (lo + hi - 1) / 2


class LogHistogram:
    """Counts per bucket (``counts``: a value v >= 0 under its bucket, a value v < 0 under the bucket of -v plus
    NEGATIVE), ``count``, exact ``min``/``max`` (None while empty)."""

    __slots__ = ("counts", "count", "min", "max")

    def __init__(self):
        self.counts = Counter()
        self.count = 0
        self.min = self.max = None

    def add(self, v):
        self.add_many((v,))

    def add_many(self, values):
        """Add a sequence of integer values (ns)."""
        if not values:
            return
        lo, hi = min(values), max(values)
        self.counts.update(indexes(values, SIGNED))
        self.count += len(values)
        self.min = lo if self.min is None or lo < self.min else self.min
        self.max = hi if self.max is None or hi > self.max else self.max

    def merge(self, other):
        """Add another histogram's counts to this one."""
        if not other.count:
            return self
        self.counts.update(other.counts)
        self.count += other.count
        self.min = other.min if self.min is None or other.min < self.min else self.min
        self.max = other.max if self.max is None or other.max > self.max else self.max
        return self

    def _ordered(self):
        """[(bucket of |v|, negative, count)] in ascending order of value."""
        neg = sorted(((i ^ NEGATIVE, c) for i, c in self.counts.items() if i & NEGATIVE), reverse=True)
        pos = sorted((i, c) for i, c in self.counts.items() if not i & NEGATIVE)
        return [(i, True, c) for i, c in neg] + [(i, False, c) for i, c in pos]

    def buckets(self):
        """[(lower, upper, count)] in ascending order of value (ns; negative buckets mirrored)."""
        out = []
        for i, negative, c in self._ordered():
            lo, hi = bounds(i)
            out.append((-hi + 1, -lo + 1, c) if negative else (lo, hi, c))
        return out

    def _ranked(self):
        """([cumulative count after each bucket], [its value]) in ascending order of value."""
        cum, values, total = [], [], 0
        for i, negative, c in self._ordered():
            total += c
            cum.append(total)
            values.append(-_midpoint(i) if negative else _midpoint(i))
        return cum, values

    def percentiles(self, ps):
        """Percentiles ``ps`` (percent) as floats in ns, None items while empty (see the module docstring)."""
        if not self.count:
            return [None for _p in ps]
        cum, values = self._ranked()
        n, lo, hi = self.count, float(self.min), float(self.max)

        def at(rank):  # the value of 0-based rank ``rank``: exact at both ends
            if rank <= 0:
                return lo
            if rank >= n - 1:
                return hi
            return min(max(values[bisect_right(cum, rank)], lo), hi)

        out = []
        for p in ps:
            if not 0 <= p <= 100:
                raise ValueError(f"percentile {p} outside 0..100")
            h = (n - 1) * p / 100
            k = int(h)
            frac = h - k
            v = at(k)
            out.append(v if frac == 0 or k + 1 >= n else v + frac * (at(k + 1) - v))
        return out

    def to_json(self, scale=1000):
        """The JSON form (values divided by ``scale``: µs by default): sparse ascending buckets."""
        rows = self.buckets()
        return {
            "scheme": SCHEME, "sub_buckets": SUB_BUCKETS, "unit": "us" if scale == 1000 else "ns",
            "count": self.count,
            "min": None if self.min is None else self.min / scale,
            "max": None if self.max is None else self.max / scale,
            "lower": [lo / scale for lo, _hi, _c in rows],
            "upper": [hi / scale for _lo, hi, _c in rows],
            "counts": [c for _lo, _hi, c in rows],
        }

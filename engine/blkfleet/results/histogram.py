"""Log-linear histograms of nanosecond values: constant memory, at most 0.4 % relative error on any percentile.

A value ``v`` >= 0 (ns) falls in bucket ``index(v)``:

- ``v < 256``: bucket ``v`` (exact, 1 ns wide);
- else, with ``e = v.bit_length() - 8`` and ``m = v >> e`` (128 <= m <= 255): bucket ``128 * e + m``, which
  holds ``[m << e, (m + 1) << e)``: 128 buckets per power of two, each 1/m <= 1/128 of its lower bound wide.

A bucket's value is its midpoint, within 0.5/128 = 0.39 % of every value in it, from 1 µs to 100 s and beyond
(2^63 ns). Negative values (lateness of an IO sent early) count in a mirrored set of buckets. The exact minimum
and maximum are kept: a percentile at either end is exact, and no estimate leaves [min, max].

Percentiles follow ``blkfleet.stats`` ("linear", numpy's default): rank h = (n - 1) p / 100, the values at
ranks floor(h) and floor(h) + 1 interpolated; each ranked value is its bucket's midpoint. Memory is one dict
entry per non-empty bucket (at most 7,424 for any value below 2^63), whatever the number of values.
"""

from bisect import bisect_right
from collections import Counter

SUB_BUCKETS = 128
EXACT_BELOW = 2 * SUB_BUCKETS  # values below this have a bucket of their own
SCHEME = "log-linear"


def index(v):
    """The bucket of a value >= 0."""
    if v < EXACT_BELOW:
        return v
    e = v.bit_length() - 8
    return (e << 7) + (v >> e)


def bounds(i):
    """[lower, upper) of bucket ``i`` (ns)."""
    if i < EXACT_BELOW:
        return i, i + 1
    e = (i >> 7) - 1
    m = (i & 127) + 128
    return m << e, (m + 1) << e


def _midpoint(i):
    lo, hi = bounds(i)
    return (lo + hi - 1) / 2


class LogHistogram:
    """Counts per bucket (``pos``: values >= 0; ``neg``: buckets of -v for values < 0), ``count``, exact
    ``min``/``max`` (None while empty)."""

    __slots__ = ("pos", "neg", "count", "min", "max")

    def __init__(self):
        self.pos = Counter()
        self.neg = Counter()
        self.count = 0
        self.min = self.max = None

    def add(self, v):
        self.add_many((v,))

    def add_many(self, values):
        """Add a sequence of integer values (ns)."""
        if not values:
            return
        lo, hi = min(values), max(values)
        if lo >= 0:
            self.pos.update(map(index, values))
        else:
            self.pos.update(map(index, [v for v in values if v >= 0]))
            self.neg.update(map(index, [-v for v in values if v < 0]))
        self.count += len(values)
        self.min = lo if self.min is None or lo < self.min else self.min
        self.max = hi if self.max is None or hi > self.max else self.max

    def merge(self, other):
        """Add another histogram's counts to this one."""
        if not other.count:
            return self
        self.pos.update(other.pos)
        self.neg.update(other.neg)
        self.count += other.count
        self.min = other.min if self.min is None or other.min < self.min else self.min
        self.max = other.max if self.max is None or other.max > self.max else self.max
        return self

    def buckets(self):
        """[(lower, upper, count)] in ascending order of value (ns; negative buckets mirrored)."""
        out = []
        for i in sorted(self.neg, reverse=True):
            lo, hi = bounds(i)
            out.append((-hi + 1, -lo + 1, self.neg[i]))
        for i in sorted(self.pos):
            lo, hi = bounds(i)
            out.append((lo, hi, self.pos[i]))
        return out

    def _ranked(self):
        """([cumulative count after each bucket], [its value]) in ascending order of value."""
        cum, values, total = [], [], 0
        for i in sorted(self.neg, reverse=True):
            total += self.neg[i]
            cum.append(total)
            values.append(-_midpoint(i))
        for i in sorted(self.pos):
            total += self.pos[i]
            cum.append(total)
            values.append(_midpoint(i))
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

"""Small exact statistics shared by the commands: mean, sample variance, median, percentiles and mean absolute
percentage error.

Percentile definitions (``p`` in percent, 0..100, over the n values sorted ascending, x[0] .. x[n-1]):

- ``"linear"`` (the default): linear interpolation between closest ranks, i.e. numpy's default
  (Hyndman & Fan type 7): h = (n - 1) * p / 100, result = x[floor h] + (h - floor h) * (x[floor h + 1] - x[floor h]).
  p0 is the minimum, p100 the maximum, p50 of an even count is the mean of the two middle values.
- ``"nearest"``: the nearest-rank method: the value at 1-based rank ceil(p / 100 * n) (rank 1 for p = 0),
  always one of the observed values.

Everything is exact (a full sort, no histogram); an empty input gives None.
"""

import math

METHODS = ("linear", "nearest")


def mean(xs):
    """The arithmetic mean of a non-empty sequence; exactly the value when all are equal (a sum of n copies
    divided by n may differ from it in the last bit, which made equal samples look different)."""
    if min(xs) == max(xs):
        return float(xs[0])
    return math.fsum(xs) / len(xs)


def variance(xs):
    """Sample variance (n - 1 denominator); 0 for fewer than two values or equal ones."""
    n = len(xs)
    if n < 2:
        return 0.0
    m = mean(xs)
    return math.fsum((x - m) ** 2 for x in xs) / (n - 1)


def median(xs):
    """The middle value of a non-empty iterable, the mean of the two middle ones for an even count (the
    ``linear`` 50th percentile, computed as that mean)."""
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def percentiles_sorted(values, ps, method="linear"):
    """Percentiles ``ps`` of ``values`` that are already sorted ascending; a list, None items if empty."""
    if method not in METHODS:
        raise ValueError(f"unknown percentile method {method!r} (expected one of {', '.join(METHODS)})")
    n = len(values)
    out = []
    for p in ps:
        if not 0 <= p <= 100:
            raise ValueError(f"percentile {p} outside 0..100")
        if n == 0:
            out.append(None)
        elif method == "nearest":
            rank = max(1, math.ceil(p * n / 100))
            out.append(values[min(rank, n) - 1])
        else:
            h = (n - 1) * p / 100
            lo = math.floor(h)
            frac = h - lo
            if frac == 0 or lo + 1 >= n:
                out.append(values[lo])
            else:
                out.append(values[lo] + frac * (values[lo + 1] - values[lo]))
    return out


def percentiles(values, ps, method="linear"):
    """Percentiles ``ps`` (percent) of an unsorted iterable: sorts once, see the module docstring."""
    return percentiles_sorted(sorted(values), ps, method)


def percentile(values, p, method="linear"):
    """One percentile of an unsorted iterable (None if empty)."""
    return percentiles(values, (p,), method)[0]


def mape(actual, predicted):
    """Mean absolute percentage error, in percent: mean of |predicted - actual| / |actual| * 100.

    Pairs whose ``actual`` is 0 are skipped (the error is undefined there); None if no pair is left.
    """
    total = 0.0
    count = 0
    for a, f in zip(actual, predicted):
        if a:
            total += abs(f - a) / abs(a)
            count += 1
    return total / count * 100 if count else None

"""Log-linear histograms: every value in its bucket, buckets at most 1/128 wide, percentiles within 0.4 % of the
exact ones (``blkfleet.stats``) over wide random distributions, negative values, merging, and the JSON form."""

import random
from collections import Counter

import pytest

from blkfleet.results.histogram import NEGATIVE, SUB_BUCKETS, LogHistogram, bounds, index, indexes
from blkfleet.stats import percentiles

PS = (0, 1, 10, 50, 90, 99, 99.9, 99.99, 100)


def test_every_value_falls_in_its_bucket():
    rng = random.Random(1)
    values = list(range(0, 5000)) + [rng.randrange(1 << e) for e in range(13, 54) for _ in range(200)]
    values += [(1 << e) - 1 for e in range(1, 54)] + [1 << e for e in range(63)]  # exact below 2^53 ns (104 days)
    for v in values:
        lo, hi = bounds(index(v))
        assert lo <= v < hi
        assert hi - lo == 1 or (hi - lo) / lo <= 1 / SUB_BUCKETS
    assert list(indexes(values)) == [index(v) for v in values]  # the column way agrees
    assert len({index(v) for v in range(1 << 20)} | {index(10 ** 11)}) < 8192


@pytest.mark.parametrize("seed", range(4))
def test_percentiles_within_0_4_percent_of_exact(seed):
    """1 µs .. 100 s (log-uniform, lognormal, bimodal): every percentile within 0.4 %, min and max exact."""
    rng = random.Random(seed)
    kinds = (
        lambda: int(10 ** rng.uniform(3, 11)),
        lambda: int(rng.lognormvariate(12, 1.5)),
        lambda: int(rng.gauss(50_000, 5_000) if rng.random() < 0.9 else rng.gauss(20_000_000, 1_000_000)),
    )
    for make in kinds:
        values = [max(0, make()) for _ in range(20000)]
        h = LogHistogram()
        for a in range(0, len(values), 777):
            h.add_many(values[a:a + 777])
        for p, exact, got in zip(PS, percentiles(values, PS), h.percentiles(PS)):
            assert abs(got - exact) <= 0.004 * exact + 0.5, (p, exact, got)
        assert h.percentiles([0, 100]) == [min(values), max(values)]


def test_negative_values_and_merging():
    rng = random.Random(7)
    values = [int(rng.gauss(0, 30_000)) for _ in range(10000)]
    parts = [LogHistogram() for _ in range(3)]
    for k, part in enumerate(parts):
        part.add_many(values[k::3])
    h = parts[0].merge(parts[1]).merge(parts[2])
    assert h.count == len(values)
    for exact, got in zip(percentiles(values, PS), h.percentiles(PS)):
        assert abs(got - exact) <= 0.004 * abs(exact) + 0.5
    rows = h.buckets()
    assert [r[0] for r in rows] == sorted(r[0] for r in rows) and sum(r[2] for r in rows) == len(values)
    assert all(lo < hi for lo, hi, _c in rows)


def test_json_form():
    h = LogHistogram()
    h.add_many([1000, 1500, 2_000_000, -3000])
    j = h.to_json()
    assert j["scheme"] == "log-linear" and j["unit"] == "us" and j["count"] == 4
    assert j["min"] == -3.0 and j["max"] == 2000.0 and sum(j["counts"]) == 4
    assert all(lo < hi for lo, hi in zip(j["lower"], j["upper"]))
    assert LogHistogram().percentiles([50]) == [None]


def test_a_column_of_both_signs_lands_in_the_buckets_of_each_value():
    """One pass keeps each double's sign bit above its bucket; the counts match binning every value alone."""
    rng = random.Random(11)
    values = [rng.choice((-1, 1)) * int(10 ** rng.uniform(0, 11)) for _ in range(5000)] + [0, -1, 1, -(2 ** 62)]
    h = LogHistogram()
    h.add_many(values)
    assert h.counts == Counter([index(v) for v in values if v >= 0] + [index(-v) | NEGATIVE for v in values if v < 0])
    assert (h.min, h.max, h.count) == (min(values), max(values), len(values))

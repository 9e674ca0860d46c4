"""The streaming summaries: the timeline's latency and time-in-flight sums against an obvious per-IO spreading,
its IOs, bytes and lateness per bucket of submission; a Summary's histograms per op and of all ops."""

import random

from blkfleet.results.summary import Summary, Timeline

W = 100


def test_time_in_flight_spread_over_buckets():
    rng = random.Random(3)
    for trial in range(3000):
        t = Timeline(W)
        n, off = rng.randint(1, 40), rng.randint(0, 500)
        subs = [rng.randint(0, 400) for _ in range(n)]
        lats = [rng.choice([0, 1, 5, 50, 99, 100, 101, 250, 700]) for _ in range(n)]
        t.completed((0, 0), off, subs, lats, [s + d for s, d in zip(subs, lats)])
        lat, busy = [0] * 30, [0] * 30
        for s, d in zip(subs, lats):
            start = off + s
            lat[start // W] += d
            for b in range(30):
                busy[b] += max(0, min(start + d, (b + 1) * W) - max(start, b * W))
        _ios, _bytes, got_lat, got_busy, _late_sum, _late_max = t.series[(0, 0)]
        k = len(got_lat)
        assert list(got_lat) == lat[:k] and list(got_busy) == busy[:k], trial
        assert not any(lat[k:]) and not any(busy[k:])


def test_submissions_per_bucket():
    t = Timeline(W)
    subs = [0, 10, 99, 100, 150, 420]
    t.submitted((1, 0), 50, subs, [4096] * 6, [3000, 1000, -500, 7000, 2000, 4000])
    ios, nbytes, _lat, _busy, late_sum, _late_max = t.series[(1, 0)]
    # submitted at 50, 60 | 149, 150 | 200 | - | 470
    assert list(ios) == [2, 2, 1, 0, 1] and list(nbytes) == [8192, 8192, 4096, 0, 4096]
    assert list(late_sum) == [4000, 6500, 2000, 0, 4000]
    doc = t.to_json({1: "sdb"}, ("read", "write"))
    assert doc["buckets"] == 5 and doc["series"][0]["device"] == "sdb" and doc["series"][0]["op"] == "read"
    series = doc["series"][0]
    assert series["lateness_mean_us"] == [2.0, 3.25, 2.0, None, 4.0]
    assert series["lateness_max_us"] == [3.0, 7.0, 2.0, None, 4.0]


def test_lateness_per_bucket_against_each_io():
    """Mean and max lateness per bucket, folded slice by slice over random submissions (some early: negative,
    so that a bucket's maximum below zero shows), against the obvious per-IO sums; a bucket none of a series'
    IOs went in is null, also where another series made the timeline longer."""
    rng = random.Random(5)
    for trial in range(3000):
        t = Timeline(W)
        want = {}
        for _look in range(rng.randint(1, 5)):
            n, off = rng.randint(1, 30), rng.randint(0, 300)
            subs = sorted(rng.randint(0, 400) for _ in range(n))
            lates = [rng.randint(-900, 900) for _ in range(n)]
            t.submitted((0, 1), off, subs, [512] * n, lates)
            for s, late in zip(subs, lates):
                want.setdefault((off + s) // W, []).append(late)
        t.submitted((0, 0), 0, [1500], [512], [0])  # another series: 16 buckets in all
        got = next(s for s in t.to_json({0: "sda"}, ("read", "write"))["series"] if s["op"] == "write")
        assert len(got["lateness_mean_us"]) == len(got["lateness_max_us"]) == 16
        for b in range(16):
            lates = want.get(b)
            assert got["lateness_max_us"][b] == (max(lates) / 1000 if lates else None), (trial, b)
            assert got["lateness_mean_us"][b] == (round(sum(lates) / len(lates) / 1000, 3) if lates else None)


def test_summary_keeps_histograms_per_op():
    """Latency and lateness per op, and of all ops (the merge of them), also after merging summaries."""
    a, b = Summary(), Summary()
    a.submitted(1, 0, 3, 3 * 4096, [10, 20, 30], 5, 0)
    a.completed(1, 0, [1000, 2000, 3000], 9000)
    a.submitted(1, 1, 2, 2 * 4096, [40, 50], 7, 0)
    a.completed(1, 1, [50_000, 60_000], 9500)
    b.submitted(1, 1, 1, 4096, [60], 8, 0)
    b.completed(1, 1, [70_000], 9900)
    merged = Summary().merge(a).merge(b)
    lat_read, late_read = merged.histograms[0]
    lat_write, late_write = merged.histograms[1]
    assert (lat_read.count, lat_write.count, late_read.count, late_write.count) == (3, 3, 3, 3)
    assert (lat_write.min, lat_write.max, late_write.max) == (50_000, 70_000, 60)
    assert merged.latency.count == 6 and (merged.latency.min, merged.latency.max) == (1000, 70_000)
    assert merged.lateness.count == 6 and merged.lateness.percentiles([100]) == [60.0]
    assert merged.ios == 6 and merged.spans == {1: [5, 9900]}

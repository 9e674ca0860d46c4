"""The streaming summaries: the timeline's latency and time-in-flight sums against an obvious per-IO spreading,
and its IOs and bytes per bucket of submission."""

import random

from blkfleet.results.summary import Timeline

W = 100


def test_time_in_flight_spread_over_buckets():
    rng = random.Random(3)
    for trial in range(300):
        t = Timeline(W)
        n, off = rng.randint(1, 40), rng.randint(0, 500)
        subs = [rng.randint(0, 400) for _ in range(n)]
        lats = [rng.choice([0, 1, 5, 50, 99, 100, 101, 250, 700]) for _ in range(n)]
        t.completed((0, 0), off, subs, lats)
        lat, busy = [0] * 30, [0] * 30
        for s, d in zip(subs, lats):
            start = off + s
            lat[start // W] += d
            for b in range(30):
                busy[b] += max(0, min(start + d, (b + 1) * W) - max(start, b * W))
        _ios, _bytes, got_lat, got_busy = t.series[(0, 0)]
        k = len(got_lat)
        assert list(got_lat) == lat[:k] and list(got_busy) == busy[:k], trial
        assert not any(lat[k:]) and not any(busy[k:])


def test_submissions_per_bucket():
    t = Timeline(W)
    subs = [0, 10, 99, 100, 150, 420]
    t.submitted((1, 0), 50, subs, [4096] * 6)
    ios, nbytes, _lat, _busy = t.series[(1, 0)]
    # submitted at 50, 60 | 149, 150 | 200 | - | 470
    assert list(ios) == [2, 2, 1, 0, 1] and list(nbytes) == [8192, 8192, 4096, 0, 4096]
    doc = t.to_json({1: "sdb"}, ("read", "write"))
    assert doc["buckets"] == 5 and doc["series"][0]["device"] == "sdb" and doc["series"][0]["op"] == "read"

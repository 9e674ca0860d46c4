"""The collector on a real window, filled as the feeder and a worker fill it (no device): latencies and lateness
exact at their ends, late IOs counted, results checked against each IO's size whether the window holds one size
(one count) or several (gathered), probes' events left out, the timeline's time in flight equal to the latencies'
sum; and the column helpers (64-bit lanes) it and the feeder rely on, against the obvious per-item answers."""

import random
from array import array

from blkfleet.replay import lanes
from blkfleet.replay.collect import Collector
from blkfleet.replay.window import ISSUED, W_NBYTES, LogWriter, Window
from blkfleet.replayfile.ops import READ, WRITE
from blkfleet.results.histogram import NEGATIVE

PROBE = -1  # a probe's event data (2^64 - 1)


def run(ios, results=None, one_size=None, probes=0, seed=1, threshold=20_000, early=0, most=None):
    """Fold ``ios`` [(op, nbytes)] due 10 µs apart, submitted up to ``early`` ns before and 40 µs after, completed
    in a shuffled order (a few reaps); returns the collector and the (submit, due, end) of every IO. ``results``:
    {index: result} overriding the size. ``most``: fold that many completion events per poll."""
    rng = random.Random(seed)
    n = len(ios)
    win = Window(1 << 10, io_bytes=1 << 20)
    win.kinds = {(0, op) for op, _b in ios}
    win.one_size = one_size
    col = Collector([win], [None], threshold, never_early=not early)
    col.begin(1, 0)
    dues = [100_000 + k * 10_000 for k in range(n)]
    subs = [d + rng.randrange(-early, 40_000) for d in dues]
    win.due[:n] = array("q", dues)
    win.submit[:n] = array("q", subs)
    win.op[:n] = array("B", [op for op, _b in ios])
    win.target[:n] = array("H", [0] * n)
    win.field(W_NBYTES)[:n] = array("q", [b for _op, b in ios])
    win.control[ISSUED] = n
    order = list(range(n))
    rng.shuffle(order)
    log = LogWriter(win)
    ends = [0] * n
    chunks = [order[a:a + 7] for a in range(0, n, 7)]
    for c, chunk in enumerate(chunks):
        end = max(subs[k] for k in chunk) + rng.randrange(1_000, 500_000) + c
        events = array("q")
        for k in chunk:
            events += array("q", [k, 0, (results or {}).get(k, ios[k][1]), 0])
            ends[k] = end
        if c < probes:
            events += array("q", [PROBE, 0, 4096, 0])
        log.put(end, events.tobytes())
    folded = col.poll(most)
    while col.backlog():
        folded += col.poll(most)
    assert folded == n
    return col, subs, dues, ends


def test_latency_and_lateness_are_exact_at_their_ends():
    col, subs, dues, ends = run([(READ, 4096)] * 300, one_size=4096)
    total = col.merged()
    lats = [e - s for s, e in zip(subs, ends)]
    lates = [s - d for s, d in zip(subs, dues)]
    assert total.ios == 300 and total.latency.count == 300 and not total.errors[0]
    assert (total.latency.min, total.latency.max) == (min(lats), max(lats))
    assert (total.lateness.min, total.lateness.max) == (min(lates), max(lates))
    assert total.late == sum(late > 20_000 for late in lates)
    busy = col.timeline.series[(0, READ)][3]
    assert sum(busy) == sum(lats)


def test_lateness_of_ios_sent_early_is_exact():
    """Batched IOs go before their time: their lateness is negative, folded as exactly as a late IO's (the lanes'
    shortcut is taken only when no IO of the look went early)."""
    for seed, early in ((1, 40_000), (2, 1)):
        col, subs, dues, _ends = run([(READ, 4096)] * 300, one_size=4096, seed=seed, early=early)
        lates = [s - d for s, d in zip(subs, dues)]
        total = col.merged()
        assert (total.lateness.min, total.lateness.max) == (min(lates), max(lates))
        assert total.lateness.count == 300 and total.late == sum(late > 20_000 for late in lates)
        assert sum(c for i, c in total.lateness.counts.items() if i & NEGATIVE) == sum(late < 0 for late in lates)
    col, subs, dues, _ends = run([(READ, 4096)] * 300, one_size=4096, seed=3, early=0)
    assert col.merged().lateness.min == min(s - d for s, d in zip(subs, dues)) >= 0


def test_a_short_read_in_a_window_of_one_size_is_an_error():
    col, *_ = run([(READ, 4096)] * 50, results={17: 512, 30: -5}, one_size=4096)
    errors = col.merged().errors
    assert errors[0] == 2 and "read of 4096 bytes" in errors[1]


def test_results_are_checked_per_io_in_a_window_of_several_sizes():
    ios = [(READ if k % 3 else WRITE, 4096 << (k % 4)) for k in range(60)]
    col, *_ = run(ios, results={9: 4096}, one_size=0)  # IO 9 is a write of 8192 bytes
    errors = col.merged().errors
    assert errors[0] == 1 and "write of 8192 bytes" in errors[1] and "short IO (4096 bytes)" in errors[1]
    col, *_ = run(ios, one_size=0)
    assert not col.merged().errors[0]


def test_probes_events_are_not_ios():
    col, *_ = run([(READ, 4096)] * 40, one_size=4096, probes=3)
    total = col.merged()
    assert total.latency.count == 40 and not total.errors[0]


def test_column_helpers_match_per_item():
    rng = random.Random(5)
    top = (1 << 63) - 1
    for _ in range(3000):
        n = rng.randrange(1, 12)
        values = [rng.choice([0, 1, top, rng.randrange(100), rng.randrange(top)]) for _ in range(n)]
        if rng.random() < 0.5:
            values.sort()
        column = array("q", values)
        assert lanes.ascending(column) == all(a <= b for a, b in zip(values, values[1:]))
        threshold = rng.choice([0, top, rng.randrange(100), rng.randrange(top)])
        assert lanes.above(lanes.lanes(column), threshold, n) == sum(v > threshold for v in values)
        signed = array("q", [v - rng.choice([0, 0, v + 1]) for v in values])
        assert lanes.negative(signed) == any(v < 0 for v in signed)


def test_folding_a_piece_at_a_time_gives_the_same_results():
    """The parent folds completions SHARE_IOS at a time (offering its CPU between pieces): pieces of any size,
    probes and errors among them, give exactly what one poll gives."""
    ios = [(READ if k % 3 else WRITE, 4096 << (k % 3)) for k in range(500)]
    whole, *_ = run(ios, results={40: 512}, one_size=0, probes=5, early=30_000)
    want = whole.merged()
    for most in (1, 3, 7, 64, 499):
        col, *_ = run(ios, results={40: 512}, one_size=0, probes=5, early=30_000, most=most)
        got = col.merged()
        assert col.backlog() == 0
        assert (got.ios, got.late, got.errors[0]) == (want.ios, want.late, want.errors[0]) == (500, got.late, 1)
        assert got.latency.counts == want.latency.counts and got.lateness.counts == want.lateness.counts
        assert col.timeline.series == whole.timeline.series

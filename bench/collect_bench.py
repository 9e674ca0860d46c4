#!/usr/bin/env python3
"""The collector's CPU cost per IO (the replay's parent folds every IO between its supervision checks).

No device and no worker: one real window (shared memory, as the replay makes it) is filled as the feeder and a
worker would fill it: IOs due every ``1 / --iops`` s, submitted a few µs late, completed in ``--reaps`` reaps
per look, each reap's events put into the completion log with its completion time. The collector looks every
10 ms of the simulated replay, as it does in a real one; only its ``poll()`` is timed (process CPU time).
Kinds: ``read`` (one op, one device: the common case, folded column-wise), ``mixed`` (70 % reads, 30 % writes
on one device, interleaved: a Python step per IO) and ``two`` (reads on two devices, interleaved).

    python3 bench/collect_bench.py [--ios 2000000] [--iops 200000] [--rounds 3] [--kinds read mixed two]
                                   [--early-us 0]
"""

import argparse
import os
import random
import statistics
import sys
import time
from array import array

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "engine"))

from blkfleet.replay.collect import Collector  # noqa: E402
from blkfleet.replay.window import ISSUED, W_NBYTES, LogWriter, Window  # noqa: E402
from blkfleet.replayfile.ops import READ, WRITE  # noqa: E402

LOOK_NS = 10_000_000  # the parent's supervision loop looks every 10 ms


def simulate(kind, ios, iops, reaps, seed=1, early=0):
    """CPU seconds ``Collector.poll`` took to fold ``ios`` IOs of ``kind`` (``early``: submitted up to that many ns
    before their time, as in batches)."""
    rng = random.Random(seed)
    win = Window(1 << 16, io_bytes=1 << 20)
    step = int(1e9 / iops)
    per_look = max(1, LOOK_NS // step)
    if kind == "read":
        ops, tgts = [READ] * per_look, [0] * per_look
    elif kind == "mixed":
        ops, tgts = [WRITE if rng.random() < 0.3 else READ for _ in range(per_look)], [0] * per_look
    else:
        ops, tgts = [READ] * per_look, [k % 2 for k in range(per_look)]
    win.kinds = set(zip(tgts, ops))
    win.one_size = 4096  # as the feeder says: every IO written is of this size
    col = Collector([win], [None, None], 1_000_000, never_early=not early)
    col.begin(1, 0)
    log = LogWriter(win)
    late = array("q", [rng.randrange(2_000 - early, 30_000) for _ in range(per_look)])
    op_col, tgt_col = array("B", ops), array("H", tgts)
    nb_col = array("q", [4096] * per_look)
    event = array("q", [0, 0, 4096, 0] * per_look)
    event[2::4] = nb_col
    spent, done, first = 0.0, 0, 0
    while done < ios:
        n = min(per_look, ios - done)
        a = first & win.mask
        if a + n > win.capacity:  # keep each look's IOs in one slot range (as most are)
            first += win.capacity - a
            a = 0
            win.control[ISSUED] = first
            col.state[0].submitted = first
            col.state[0].freed = first
        due = array("q", range(done * step, (done + n) * step, step))
        win.due[a:a + n] = due
        win.submit[a:a + n] = array("q", map(int.__add__, due, late[:n]))
        win.op[a:a + n] = op_col[:n]
        win.target[a:a + n] = tgt_col[:n]
        win.field(W_NBYTES)[a:a + n] = nb_col[:n]
        win.control[ISSUED] = first + n
        ev = array("q", event[:4 * n])
        ev[0::4] = array("q", range(first, first + n))
        chunk = -(-n // reaps)
        for r in range(0, n, chunk):  # each reap completes when its last IO has taken 50-400 µs
            end = win.submit[a + min(r + chunk, n) - 1] + rng.randrange(50_000, 400_000)
            log.put(end, ev[4 * r:4 * min(r + chunk, n)].tobytes())
        t0 = time.process_time()
        got = col.poll()
        spent += time.process_time() - t0
        assert got == n, (got, n)
        done += n
        first += n
    summary = col.merged()
    assert summary.ios == ios and summary.latency.count == ios
    win.close()
    return spent


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ios", type=int, default=2_000_000)
    ap.add_argument("--iops", type=int, default=200_000)
    ap.add_argument("--reaps", type=int, default=16, help="completion reaps per look (default 16)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kinds", nargs="+", default=["read", "mixed", "two"], choices=["read", "mixed", "two"])
    ap.add_argument("--early-us", type=float, default=0,
                    help="IOs submitted up to this early (batched: the collector folds negative lateness)")
    args = ap.parse_args()
    print(f"{args.ios} IOs at {args.iops} IOPS, a look every 10 ms, {args.reaps} reaps per look, up to "
          f"{args.early_us:g} µs early; "
          "collector CPU per IO (µs), each round and the median")
    for kind in args.kinds:
        early = int(args.early_us * 1000)
        rounds = [simulate(kind, args.ios, args.iops, args.reaps, seed=r, early=early) / args.ios * 1e6
                  for r in range(args.rounds)]
        print(f"{kind:6} " + " ".join(f"{v:.3f}" for v in rounds) + f"  median {statistics.median(rounds):.3f}")


if __name__ == "__main__":
    main()

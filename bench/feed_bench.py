#!/usr/bin/env python3
"""The feeder's CPU cost per IO (the replay's parent reads the replay files and fills the workers' windows).

No device and no worker: synthetic native replay files (``synth_trace.py``: random 4 KiB reads, the recorded
CPUs' IOs interleaved one by one, the hardest merge), or the replay files of ``-d DIR``, are fed into one real
window whose slots are freed as soon as they are written, the feeder called every 10 ms of the trace's time as the
replay's parent does. Only ``Feeder.pump`` is timed (process CPU time). ``--cpus`` recorded CPUs all map onto the
one window: their streams are merged, as on a host whose one worker replays every recorded CPU.

    python3 bench/feed_bench.py [--ios 1000000] [--cpus 1 2 4] [--rounds 3] [-d DIR DEVICE]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "engine"))

import synth_trace  # noqa: E402

from blkfleet.replay.feed import Feeder, Lane, genesis_of, open_sources  # noqa: E402
from blkfleet.replay.window import FED, FREED, ISSUED, Window  # noqa: E402

LOOK_NS = 10_000_000  # the parent feeds every 10 ms


def feed(directory, device):
    """(IOs, CPU seconds ``Feeder.pump`` took to write every IO of ``directory``'s files of ``device``)."""
    sources = open_sources(directory, [device])
    for s in sources:
        s.target = 0
    target = types.SimpleNamespace(descriptor=3, block_size=512, size=1 << 62, path="/dev/null", recorded=device)
    win = Window(capacity=1 << 16, io_bytes=1 << 20)
    lane = Lane(0, sources, win)
    feeder = Feeder([lane], genesis_of(sources), 1.0, [target], False, False)
    feeder.start_iteration(first=True)
    spent, total, now = 0.0, 0, 0
    try:
        while not lane.ended:
            now += LOOK_NS
            t0 = time.process_time()
            total += feeder.pump(now)
            spent += time.process_time() - t0
            ctl = win.control
            ctl[ISSUED] = ctl[FREED] = ctl[FED]
    finally:
        for s in sources:
            s.close()
        win.close()
    return total, spent


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ios", type=int, default=1_000_000)
    ap.add_argument("--iops", type=int, default=200_000)
    ap.add_argument("--cpus", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-d", nargs=2, metavar=("DIR", "DEVICE"), help="feed these replay files instead")
    args = ap.parse_args()
    cases = []
    with tempfile.TemporaryDirectory(prefix="blkfleet-fbench-") as work:
        if args.d:
            cases.append((f"{args.d[1]} ({args.d[0]})", args.d[0], args.d[1]))
        else:
            for cpus in args.cpus:
                directory = os.path.join(work, f"c{cpus}")
                synth_trace.write(directory, "loop1", args.ios, args.iops, cpus=cpus)
                cases.append((f"{cpus} stream{'s' if cpus > 1 else ''}", directory, "loop1"))
        print(f"feeder CPU per IO (µs), a pump every {LOOK_NS // 1_000_000} ms of trace time; each round and the "
              "median")
        for name, directory, device in cases:
            per = []
            for _ in range(args.rounds):
                ios, spent = feed(directory, device)
                per.append(spent / ios * 1e6)
            print(f"{name:12s} {ios} IOs  " + " ".join(f"{p:.3f}" for p in per)
                  + f"  median {statistics.median(per):.3f}")


if __name__ == "__main__":
    main()

"""How many workers a replay uses: from the trace's peak rate and what one worker costs per IO on this host.

The rule (docs/replay.md, "Workers and CPUs"). Streams go to worker slots by recorded CPU mod N (btreplay's
rule), so N is at most the number of streams, and at most the CPUs this process may run on. Start from
``min(streams, CPUs - 1)``: one CPU is left to the kernel's side of the IO (loop and other kworkers,
interrupts, completions) and to the parent, which feeds the workers and collects their completions. A worker's
peak load is its streams' highest rate over any ``PEAK_WINDOW_NS`` (times the acceleration factor) multiplied
by the per-IO cost measured at start-up. More workers than that start are used only when one cannot keep up:
when the busiest worker's peak load is above ``LOAD`` (1: its whole CPU), N grows, up to
``min(streams, CPUs)``, until it is not. Below that a worker keeps up, and taking the last CPU would cost more
than it gives: a worker whose IOs are microseconds apart spins between them, so its CPU is busy whatever its
load, and the kernel's IO work and the parent would then share the workers' CPUs (measured on 2 vCPUs, an
unthrottled two-job trace at 125 k IOPS: issue-time p50 8 ms with two workers). ``-N`` (as fast as possible)
keeps the start: every worker is busy all the time there anyway. ``-c N`` is used as given.

The rate is measured on what the feeder reads before the start (up to ``SAMPLE_NS`` of the trace, at most
``SAMPLE_IOS`` IOs per stream), and is at least each stream's mean rate where its file's header gives it
(native files: IO count and last time). The per-IO cost is the worker's own loop, timed (CPU time) at start-up
on ``CALIBRATION_IOS`` reads at the end of a target, ``BATCH`` per submission, about 5 ms: the kernel ends such a
read at once, without a bio, so neither the device nor a capture of it sees them. Batched, because a worker
that falls behind sends the IOs that are due together, one system call for all: it cannot keep up only if even
that is too much. The figure leaves out the device's own submission path, so the load is a lower bound and more
workers are taken only where one surely cannot keep up: on 2 vCPUs with a loop device, one worker kept an
unthrottled two-job trace at 222 k IOPS on time (issue-time p50 12 µs), where two were late by milliseconds
(measured: 0.6 µs calibrated; 2-2.7 µs per IO in the replay, the kernel's part included; 4.5 µs one IO per
submission).
"""

import time
from collections import Counter

from .window import (
    CMD_PREAD,
    END,
    FED,
    IOCB_WORDS,
    W_BUF,
    W_DATA,
    W_NBYTES,
    W_OFFSET,
    W_OP_FD,
    WINDOW_IOS,
    Window,
)

LOAD = 1.0
WINDOW_LEAD_NS = 1_000_000_000
WINDOW_IOS_HIGH = 1 << 18
SAMPLE_NS = 1_000_000_000
SAMPLE_IOS = 32768
PEAK_WINDOW_NS = 100_000_000
CALIBRATION_IOS = 2000
BATCH = 32
RULE = (f"min(streams, CPUs - 1), or more (up to min(streams, CPUs)) while the busiest worker's peak "
        f"{PEAK_WINDOW_NS // 1_000_000} ms rate times the per-IO cost is above {LOAD:g} (it cannot keep up)")


def calibrate(fd, offset, opts, depth=BATCH):
    """CPU ns per IO of the worker loop on this host: CALIBRATION_IOS reads at ``offset`` (the end of the target
    behind ``fd``), ``depth`` per submission, through the real loop."""
    from .worker import Replayer

    win = Window(capacity=4096, io_bytes=4096)
    try:
        n = CALIBRATION_IOS
        q = win.iocb
        for k in range(n):
            base = IOCB_WORDS * k
            q[base + W_DATA] = k
            q[base + W_OP_FD] = CMD_PREAD | fd << 32
            q[base + W_BUF] = win.read_buffer
            q[base + W_NBYTES] = 4096
            q[base + W_OFFSET] = offset
        win.control[FED] = win.control[END] = n
        rep = Replayer(win, None, _Options(opts, depth), (4096, 0))
        try:
            cpu = time.thread_time_ns()
            rep.run(time.monotonic_ns(), lambda: False)
            cost = (time.thread_time_ns() - cpu) / n
        finally:
            rep.close()
    finally:
        win.close()
    return cost


class _Options:
    """The replay's options as the calibration runs them: as fast as possible, ``depth`` IOs in flight."""

    def __init__(self, opts, depth):
        self.ioengine = opts.ioengine
        self.depth = depth
        self.no_stall = True
        self.batch_window_ns = 0
        self.realtime = False


def peak_rate(sources, genesis, acc):
    """IOs per second of ``sources`` together in their busiest PEAK_WINDOW_NS, as replayed (times ``acc``), from
    what they have read ahead; at least the sum of their mean rates."""
    buckets = Counter()
    width = PEAK_WINDOW_NS * acc
    for s in sources:
        buckets.update(int((t - genesis) // width) for t in s.times[s.pos:])
    peak = max(buckets.values(), default=0) / (PEAK_WINDOW_NS / 1e9)
    return max(peak, sum(mean_rate(s) for s in sources) * acc)


def mean_rate(source):
    """A stream's mean IOs per second from its file's header (native files), else 0."""
    reader = source.reader
    count, last, first = (getattr(reader, name, None) for name in ("io_count", "last_time", "genesis"))
    if not count or last is None or first is None or last <= first:
        return 0.0
    return count / ((last - first) / 1e9)


def read_ahead(sources, genesis, acc):
    """Have every source read the trace's first SAMPLE_NS (as replayed), at most SAMPLE_IOS IOs each."""
    for s in sources:
        s.read_until(genesis + int(SAMPLE_NS * acc), SAMPLE_IOS)


def window_ios(peak_iops):
    """How many IOs a window holds: WINDOW_IOS, or at the busiest worker's peak rate, WINDOW_LEAD_NS of IOs (up to
    WINDOW_IOS_HIGH): the feeder, in the parent, may lose its CPU for a while on a busy host without a worker's
    window running dry."""
    n = WINDOW_IOS
    while peak_iops and n < WINDOW_IOS_HIGH and n < peak_iops * WINDOW_LEAD_NS / 1e9:
        n *= 2
    return n


def choose(sources, ncpus, genesis, opts, cost_ns=None):
    """(number of workers, the record of the decision for the results); ``cost_ns``: ``calibrate``'s."""
    cpus_seen = sorted({s.cpu for s in sources})
    streams = len(cpus_seen)
    start = min(streams, max(1, ncpus - 1))
    info = {"chosen_by": "rule", "rule": RULE, "streams": streams, "cpus": ncpus, "start": start,
            "load_limit": LOAD, "per_io_cost_us": None, "peak_iops": None, "peak_load": None}
    if opts.cpus:
        info.update(chosen_by="-c", workers=opts.cpus)
        return opts.cpus, info
    if opts.no_stall or cost_ns is None:
        info.update(chosen_by="-N" if opts.no_stall else "rule", workers=start)
        return start, info
    info["per_io_cost_us"] = round(cost_ns / 1000, 3)
    chosen = None
    for n in range(start, min(streams, ncpus) + 1):
        groups = {}
        for s in sources:
            groups.setdefault(s.cpu % n, []).append(s)
        peak = max(peak_rate(g, genesis, opts.acc) for g in groups.values())
        load = peak * cost_ns / 1e9
        chosen = (n, peak, load)
        if load <= LOAD:
            break
    n, peak, load = chosen
    info.update(workers=n, peak_iops=round(peak, 1), peak_load=round(load, 3))
    return n, info

"""One replay worker: pinned to a CPU, issues its plan's IOs at their times, records what happened.

Pacing: one start instant shared by all workers (CLOCK_MONOTONIC). Before an IO is due the worker sleeps,
inside the IO engine's completion wait so completions are still taken on time, until ``SPIN_NS`` before,
then spins; every IO due by then goes out in one submission. A late IO is issued at once (no catching-up
compression) and its lateness is recorded.
"""

import ctypes
import os
import time
from array import array

from ..replayfile.ops import DISCARD, F_FUA, F_PREFLUSH, FLUSH, OP_NAMES, READ, WRITE
from .buffers import BufferPool
from .ioengines import OP_FLUSH, OP_READ, OP_WRITE, RQ_FUA, open_engine
from .target import discard, zero_out

SPIN_NS = 150_000
START_SPIN_NS = 2_000_000  # spin longer before the start: a CPU woken from idle runs the first IOs slowly
TAG_BITS = 16
DRAIN_NS = 1_000_000_000  # after a stop: wait this long for IOs in flight


class Outcome:
    """Per-IO results of a worker (arrays indexed like its plan) and its error tally."""

    def __init__(self, n):
        self.submit = array("q", bytes(8 * n))  # ns after the start; -1: not issued
        self.latency = array("q", bytes(8 * n))
        self.issued_op = array("b", bytes(n))  # what was done: READ/WRITE/DISCARD/FLUSH/WRITE_ZEROES, -1 skipped
        self.errors = {}  # target index -> [count, first message]
        self.completed = 0
        self.interrupted = False
        self.start_wall = None  # CLOCK_REALTIME seconds at the start instant, as this host sees it

    def fail(self, target, message):
        entry = self.errors.setdefault(target, [0, message])
        entry[0] += 1


def set_timer_slack(ns=1):
    """Ask for precise sleeps (the default 50 µs timer slack would blur the pacing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(29, ctypes.c_ulong(ns), 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass


def replay(plan, fds, start_ns, opts, stop, progress=None):
    """Run one iteration of a plan from the monotonic instant ``start_ns``; returns an Outcome.

    ``fds``: per target index. ``opts``: write_enable, no_stall, depth, engine. ``stop()``: True once the
    replay must end (signal). ``progress``: callable(completed) called now and then.
    """
    n = len(plan)
    out = Outcome(n)
    engine = open_engine(opts.engine, opts.depth)
    pool = BufferPool(opts.depth)
    if n:
        pool.prepare(min(n, opts.depth), max(plan.nbytes[: min(n, 4096)]))
    mono = time.monotonic_ns
    due, offsets, sizes, ops, flags, targets = plan.due, plan.offset, plan.nbytes, plan.ops, plan.flags, plan.target
    submit_at, latency, issued = out.submit, out.latency, out.issued_op
    write_enable, no_stall = opts.write_enable, opts.no_stall
    ahead = opts.batch_window_ns
    free = list(range(opts.depth))
    mask = (1 << TAG_BITS) - 1
    expected = [0] * opts.depth
    inflight = 0
    i = 0
    batch = []

    def complete(events, now):
        nonlocal inflight
        for tag, res in events:
            k, slot = tag >> TAG_BITS, tag & mask
            latency[k] = now - submit_at[k]
            if res != expected[slot]:
                what = f"{OP_NAMES[issued[k]]} of {sizes[k]} bytes at offset {offsets[k]}"
                out.fail(targets[k], f"{what}: " + (os.strerror(-res) if res < 0 else f"short IO ({res} bytes)"))
            free.append(slot)
        inflight -= len(events)
        out.completed += len(events)

    try:
        while mono() < start_ns - START_SPIN_NS:
            time.sleep(max(start_ns - START_SPIN_NS - mono(), 0) / 1e9)
            if stop():
                break
        while mono() < start_ns:
            pass
        out.start_wall = time.time() - (mono() - start_ns) / 1e9
        next_progress = 0
        while True:
            now = mono() - start_ns
            if stop():
                out.interrupted = True
                break
            if i < n and free and (no_stall or due[i] <= now):
                batch.clear()
                horizon = now + ahead  # IOs due within the batch window go out together
                while i < n and free and (no_stall or due[i] <= horizon):
                    op, size, fd = ops[i], sizes[i], fds[targets[i]]
                    if op == READ or (op == WRITE and not write_enable):
                        slot = free.pop()
                        engine.queue(i << TAG_BITS | slot, fd, OP_READ, offsets[i], size, pool.get(slot, size))
                        expected[slot] = size
                        issued[i] = READ
                        batch.append(i)
                    elif not write_enable:
                        issued[i] = -1  # discard, flush, write-zeroes: only with writes enabled
                        submit_at[i] = -1
                    elif op == WRITE:
                        slot = free.pop()
                        rq = RQ_FUA if flags[i] & (F_FUA | F_PREFLUSH) else 0
                        engine.queue(i << TAG_BITS | slot, fd, OP_WRITE, offsets[i], size, pool.get(slot, size), rq)
                        expected[slot] = size
                        issued[i] = WRITE
                        batch.append(i)
                    elif op == FLUSH:
                        slot = free.pop()
                        engine.queue(i << TAG_BITS | slot, fd, OP_FLUSH, 0, 0, None)
                        expected[slot] = 0
                        issued[i] = FLUSH
                        batch.append(i)
                    else:
                        t = mono() - start_ns
                        submit_at[i] = t
                        try:
                            (discard if op == DISCARD else zero_out)(fd, offsets[i], size)
                        except OSError as e:
                            out.fail(targets[i], f"{'discard' if op == DISCARD else 'write-zeroes'} of {size} "
                                     f"bytes at offset {offsets[i]}: {e.strerror}")
                        latency[i] = mono() - start_ns - t
                        issued[i] = op
                        out.completed += 1
                    i += 1
                if batch:
                    t = mono() - start_ns
                    for k in batch:
                        submit_at[k] = t
                    sent = engine.submit()
                    while sent < len(batch):  # the kernel took fewer: make room and send the rest
                        events = engine.reap(1, 1_000_000)
                        if events:
                            complete(events, mono() - start_ns)
                        sent += engine.submit()
                    inflight += sent
            if inflight:
                events = engine.reap(0, 0)
                if events:
                    complete(events, mono() - start_ns)
            if i >= n:
                if not inflight:
                    break
                events = engine.reap(1, 10_000_000)
                if events:
                    complete(events, mono() - start_ns)
                continue
            if progress and out.completed >= next_progress:
                progress(out.completed)
                next_progress = out.completed + 4096
            if not free:
                events = engine.reap(1, 10_000_000)
                if events:
                    complete(events, mono() - start_ns)
                continue
            if no_stall:
                continue
            wait = due[i] - (mono() - start_ns)
            if wait > SPIN_NS:
                if inflight:
                    events = engine.reap(1, wait - SPIN_NS)
                    if events:
                        complete(events, mono() - start_ns)
                else:
                    time.sleep((wait - SPIN_NS) / 1e9)
        deadline = mono() + DRAIN_NS
        while inflight and mono() < deadline:
            events = engine.reap(1, 10_000_000)
            if events:
                complete(events, mono() - start_ns)
        if inflight:
            out.fail(-1, f"{inflight} IOs still in flight after the stop")
        for k in range(i, n):
            submit_at[k] = -1
        if i < n:
            out.interrupted = True
    finally:
        engine.close()
    if progress:
        progress(out.completed)
    return out

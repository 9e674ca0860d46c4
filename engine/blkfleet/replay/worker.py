"""One replay worker: pinned to a CPU, issues its plan's IOs at their times, records what happened.

Pacing: one start instant shared by all workers (CLOCK_MONOTONIC). Before an IO is due the worker sleeps,
inside the IO engine's completion wait so completions are still taken on time, until ``WARM_NS`` before,
then spins; every IO due by then goes out in one submission (one system call however many there are). A
late IO is issued at once (no catching-up compression) and its lateness is recorded.

While it spins with nothing in flight the worker has the engine run a probe (a read the kernel ends at
once, without a bio) every ``PROBE_EVERY_NS``: after an idle stretch a CPU's caches are cold, and the first
IO would otherwise reach the block layer 50-150 µs late (measured on a 2-vCPU VM), shifting the whole replay
against its first IO.
"""

import ctypes
import os
import time
from array import array
from bisect import bisect_right

from ..replayfile.ops import DISCARD, OP_NAMES
from .ioengines import open_engine
from .iolist import IOList
from .realtime import Realtime
from .target import discard, zero_out

WARM_NS = 1_000_000
# As SCHED_FIFO a worker wakes on time, and spinning would starve the normal tasks queued on its CPU (a loop
# device's kworker waited up to 26 ms behind a worker spinning between IOs 370 µs apart): spin less.
WARM_FIFO_NS = 150_000
PROBE_EVERY_NS = 100_000
IDLE_WORK_NS = 200_000  # the engine may prepare IOs when the warm-up stretch is this far away
DRAIN_NS = 1_000_000_000  # after a stop: wait this long for IOs in flight
STOP_POLL_NS = 100_000_000  # a worker looks at its stop flag at least this often, however long it waits


class Outcome:
    """Per-IO results of a worker (arrays indexed like its plan) and its error tally."""

    def __init__(self, n, issued):
        self.submit = array("q", bytes(8 * n))  # ns after the start; -1: not issued
        self.latency = array("q", bytes(8 * n))
        self.issued_op = issued  # what was done: READ/WRITE/DISCARD/FLUSH/WRITE_ZEROES, -1 skipped
        self.errors = {}  # target index -> [count, first message]
        self.completed = 0
        self.interrupted = False
        self.start_wall = None  # CLOCK_REALTIME seconds at the start instant, as this host sees it

    @classmethod
    def lost(cls, plan):
        """The outcome of a worker that died or failed: what it did is unknown, so none of its IOs counts."""
        n = len(plan)
        out = cls(n, array("b", plan.ops))
        out.submit = array("q", [-1]) * n
        out.interrupted = True
        return out

    def fail(self, target, message):
        entry = self.errors.setdefault(target, [0, message])
        entry[0] += 1


def set_timer_slack(ns=1):
    """Ask for precise sleeps (the default 50 µs timer slack would blur the pacing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(29, ctypes.c_ulong(ns), 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass


def _describe(ios, plan, k, res):
    what = f"{OP_NAMES[ios.issued[k]]} of {plan.nbytes[k]} bytes at offset {plan.offset[k]}"
    return f"{what}: " + (os.strerror(-res) if res < 0 else f"short IO ({res} bytes)")


class Replayer:
    """A plan made ready to replay (IO list worked out, engine open and primed): ``run`` one iteration from
    a start instant, as many times as asked, then ``close``."""

    def __init__(self, plan, fds, opts):
        self.plan, self.fds, self.opts = plan, fds, opts
        self.ios = IOList(plan, fds, opts.write_enable)
        self.engine = open_engine(opts.engine, opts.depth)
        self.engine.bind(self.ios)

    def close(self):
        self.engine.close()

    def run(self, start_ns, stop, progress=None):
        """Replay the plan from the monotonic instant ``start_ns``; returns an Outcome. ``stop()``: True once
        the replay must end (signal). ``progress``: callable(completed) called now and then."""
        rt = Realtime(self.opts.realtime)
        try:
            return _replay(self.plan, self.ios, self.engine, self.fds, start_ns, self.opts, stop, progress, rt)
        finally:
            rt.stop()
            self.engine.rewind()


def _replay(plan, ios, engine, fds, start_ns, opts, stop, progress, rt):
    n = len(plan)
    out = Outcome(n, ios.issued)
    mono = time.monotonic_ns
    due, targets, expect = plan.due, plan.target, ios.expect
    submit_at, latency = out.submit, out.latency
    no_stall, depth, ahead = opts.no_stall, opts.depth, opts.batch_window_ns
    special = ios.special + [n]  # IOs the engine does not do, then a sentinel
    s = 0
    inflight = 0
    i = 0
    last_probe = -WARM_NS

    def complete(events, now):
        nonlocal inflight
        for k, res in events:
            latency[k] = now - submit_at[k]
            if res != expect[k]:
                out.fail(targets[k], _describe(ios, plan, k, res))
        inflight -= len(events)
        out.completed += len(events)

    while mono() < start_ns - WARM_NS and not stop():
        time.sleep(min(max(start_ns - WARM_NS - mono(), 0), STOP_POLL_NS) / 1e9)
    out.start_wall = time.time() + (start_ns - mono()) / 1e9
    rt_check = rt.start() - start_ns
    next_progress = 0
    while True:
        now = mono() - start_ns
        if stop():
            out.interrupted = True
            break
        if now >= rt_check:
            rt_check = rt.tick(now)
        if i < n and (no_stall and now >= 0 or due[i] <= now):
            if i == special[s]:
                _special(ios, plan, i, fds, start_ns, out)
                s += 1
                i += 1
                continue
            room = depth - inflight
            if room:
                last = min(n, i + room, special[s])
                j = last if no_stall else bisect_right(due, now + ahead, i, last)
                t = mono() - start_ns
                sent = engine.submit(i, j)
                if sent == 1:
                    submit_at[i] = t
                elif sent:
                    submit_at[i:i + sent] = array("q", [t]) * sent
                inflight += sent
                i += sent
                if not sent:  # the kernel took none: make room first
                    events = engine.reap(1, 1_000_000)
                    if events:
                        complete(events, mono() - start_ns)
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
        if inflight >= depth:
            events = engine.reap(1, 10_000_000)
            if events:
                complete(events, mono() - start_ns)
            continue
        now = mono() - start_ns
        wait = (0 if no_stall else due[i]) - now
        if wait <= 0:
            continue
        warm = WARM_FIFO_NS if rt.fifo else WARM_NS
        if wait > warm + IDLE_WORK_NS:
            engine.idle(wait - warm)
            wait = (0 if no_stall else due[i]) - (mono() - start_ns)
        if wait > warm:  # sleep, in the completion wait if IOs are in flight, until the warm-up stretch
            if inflight:
                events = engine.reap(1, min(wait - warm, STOP_POLL_NS))
                if events:
                    complete(events, mono() - start_ns)
            else:
                time.sleep(min(wait - warm, STOP_POLL_NS) / 1e9)
        elif not inflight and now - last_probe >= PROBE_EVERY_NS and wait > PROBE_EVERY_NS // 2:
            engine.probe()
            last_probe = now
    deadline = mono() + DRAIN_NS
    while inflight and mono() < deadline:
        events = engine.reap(1, 10_000_000)
        if events:
            complete(events, mono() - start_ns)
    if inflight:
        out.fail(-1, f"{inflight} IOs still in flight after the stop")
    submit_at[i:] = array("q", [-1]) * (n - i)
    if i < n:
        out.interrupted = True
    if progress:
        progress(out.completed)
    return out


def _special(ios, plan, k, fds, start_ns, out):
    """An IO the engine does not do: skipped (without write_enable), or a discard / write-zeroes ioctl."""
    op = ios.issued[k]
    if op < 0:
        out.submit[k] = -1
        return
    fd, offset, size = fds[plan.target[k]], plan.offset[k], plan.nbytes[k]
    t = time.monotonic_ns() - start_ns
    out.submit[k] = t
    try:
        (discard if op == DISCARD else zero_out)(fd, offset, size)
    except OSError as e:
        out.fail(plan.target[k], f"{OP_NAMES[op]} of {size} bytes at offset {offset}: {e.strerror}")
    out.latency[k] = time.monotonic_ns() - start_ns - t
    out.completed += 1

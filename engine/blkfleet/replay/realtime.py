"""Real-time scheduling for a worker that is not busy all the time.

On a host whose block IO is finished by kernel threads (loop devices, some drivers), those threads are woken
by the submitting CPU and, as normal tasks, preempt a spinning worker there: on a 2-vCPU VM 2,400 times in
2 s of a bursty replay, each a 200-600 µs hole in the submissions. As SCHED_FIFO (priority 1) the worker is
not preempted by them; they run on the other CPUs. That only pays while the worker also sleeps: a worker busy
all the time (a dense or full-speed trace) would leave the kernel threads one CPU fewer to finish its IOs,
and the kernel stops real-time tasks that use more than ``sched_rt_runtime_us`` (950 ms) of a second (a
~40 ms hole; measured). So every ``WINDOW_NS`` the worker looks at its CPU use over the window: above ``HIGH``
it runs as a normal task, below ``LOW`` as SCHED_FIFO again (any second then holds at most ~900 ms of
real-time use).

Nor does it pay while the device holds the worker back: when, in a window, the worker found as many IOs in
flight as it may have (the depth limit), the device's side of the IO is what the replay waits for, and a
real-time worker spinning between submissions takes CPU time from the kernel threads that finish the IOs. The
worker then runs as a normal task for at least ``HOLD_WINDOWS`` windows after the last such window.

Nor while its IOs are dense: a worker whose IOs are due less than ``DENSE_GAP_NS`` apart on average (about two
submissions of one IO each, which cost a worker ~4.5 µs of CPU on a 2-vCPU VM) spends most of its CPU submitting
them, and as SCHED_FIFO it keeps the kernel's softirq thread of its CPU (where block completions raised outside
an interrupt are finished) from running until it leaves. Before each window the worker counts the IOs of its
look-ahead window due in it (one bisection) and runs the window as a normal task if they are that dense.
"""

import os
import time

WINDOW_NS = 100_000_000
HIGH, LOW = 0.90, 0.80
HOLD_WINDOWS = 10
DENSE_GAP_NS = 10_000
DENSE_IOS = WINDOW_NS // DENSE_GAP_NS
AUTO_BATCH_NS = 40_000  # a dense window's IOs due within this go out together, unless a batch window is given
PRIORITY = 1


class Realtime:
    """``start()`` before the replay, ``tick(now)`` whenever ``now`` (any monotonic ns) reaches the instant it
    returned last, ``stop()`` after; ``wanted`` tells whether SCHED_FIFO was asked for."""

    def __init__(self, wanted):
        self.wanted = wanted
        self.fifo = False
        self._wall = self._cpu = 0
        self._hold = 0  # windows left as a normal task after the device held the worker back

    def start(self, coming=0):
        """Switch to SCHED_FIFO unless the ``coming`` IOs (those due in the first window) are dense; raises
        OSError if not allowed. Returns the first instant to ``tick``."""
        if not self.wanted:
            return float("inf")
        self._set(coming <= DENSE_IOS)
        self._wall, self._cpu = time.monotonic_ns(), time.thread_time_ns()
        return self._wall + WINDOW_NS

    def tick(self, now, held=False, coming=0):
        """``held``: in the window that ended, the worker found the depth limit reached (the device, not the
        trace's times, held it back); ``coming``: the IOs due in the window that begins."""
        wall, cpu = time.monotonic_ns(), time.thread_time_ns()
        busy = (cpu - self._cpu) / max(wall - self._wall, 1)
        self._wall, self._cpu = wall, cpu
        if held:
            self._hold = HOLD_WINDOWS
        elif self._hold:
            self._hold -= 1
        dense = coming > DENSE_IOS
        if self.fifo and (busy > HIGH or self._hold or dense):
            self._set(False)
        elif not self.fifo and busy < LOW and not self._hold and not dense:
            self._set(True)
        return now + WINDOW_NS

    def stop(self):
        if self.fifo:
            self._set(False)

    def _set(self, fifo):
        if fifo:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(PRIORITY))
        else:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        self.fifo = fifo


def allowed():
    """Whether this process may use SCHED_FIFO (tried and undone)."""
    try:
        before = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(PRIORITY))
        os.sched_setscheduler(0, before[0], before[1])
        return True
    except (OSError, AttributeError):
        return False

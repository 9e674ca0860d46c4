"""Real-time scheduling for a worker, within the kernel's real-time budget.

On a host whose block IO is finished by kernel threads (loop devices, some drivers), those threads are woken
by the submitting CPU and, as normal tasks, preempt a spinning worker there: on a 2-vCPU VM 2,400 times in
2 s of a bursty replay, each a 200-600 µs hole in the submissions. As SCHED_FIFO (priority 1) the worker is
not preempted by them; they run on the other CPUs. The kernel throttles real-time tasks that use more than
``sched_rt_runtime_us`` (950 ms) of each ``sched_rt_period_us`` (1 s): a worker that never sleeps would be
stopped for ~50 ms every second. So after ``BUDGET_NS`` of CPU time as SCHED_FIFO the worker runs as a
normal task for ``PAUSE_NS`` (any 1 s then holds at most max(BUDGET_NS, 1 s - PAUSE_NS) of real-time use).
"""

import os
import time

BUDGET_NS = 800_000_000
PAUSE_NS = 100_000_000
PRIORITY = 1


class Realtime:
    """``start()`` before the replay, ``tick(now)`` whenever ``now`` (any monotonic ns) reaches the instant it
    returned last, ``stop()`` after; ``active`` tells whether SCHED_FIFO was used at all."""

    def __init__(self, wanted):
        self.wanted = wanted
        self.active = False
        self._fifo = False
        self._cpu_mark = 0

    def start(self):
        """Switch to SCHED_FIFO; raises OSError if not allowed. Returns the first instant to ``tick``."""
        if not self.wanted:
            return float("inf")
        self._set(True)
        self.active = True
        return time.monotonic_ns() + BUDGET_NS

    def tick(self, now):
        if not self._fifo:
            self._set(True)
            return now + BUDGET_NS
        used = time.thread_time_ns() - self._cpu_mark
        if used < BUDGET_NS:
            return now + BUDGET_NS - used
        self._set(False)
        return now + PAUSE_NS

    def stop(self):
        if self._fifo:
            self._set(False)

    def _set(self, fifo):
        if fifo:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(PRIORITY))
            self._cpu_mark = time.thread_time_ns()
        else:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        self._fifo = fifo


def allowed():
    """Whether this process may use SCHED_FIFO (tried and undone)."""
    try:
        before = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(PRIORITY))
        os.sched_setscheduler(0, before[0], before[1])
        return True
    except (OSError, AttributeError):
        return False

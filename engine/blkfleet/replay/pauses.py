"""When the parent's feeding and collecting may wait for a pause in the trace.

The parent (feeder and collector) runs beside the workers, on the CPU they leave to the kernel. During a burst
that CPU also runs the kernel threads that finish the workers' IOs, and the parent's work there slowed them:
on a 2-vCPU host, a bursty trace (QD32 bursts, 20 ms pauses) replayed with p99 lateness 0.9-1.7 ms with the
parent working every 10 ms, 0.2-0.4 ms with it idle for the whole replay. So in timed mode, while a worker is
in a burst (its next IO is due within ``QUIET_NS``), the parent's work waits for the next pause, as long as
every window can afford it: it holds ``AHEAD_NS`` of the trace or half its slots ahead of its worker, and half
its completion log is free; and for ``DEFER_MAX_NS`` at most. A steady trace has no pause: the windows then
run down to those marks and the parent works every tick, as before. ``-N`` and the load and dependency modes
do not pace by time and never wait.
"""

from .window import FED, ISSUED, LEAD, LOG_HEAD, LOG_TAIL

QUIET_NS = 2_000_000
AHEAD_NS = 500_000_000
DEFER_MAX_NS = 100_000_000


class Pauses:
    """``defer(now)`` (ns after the iteration's start): True while the parent's work may wait. ``lanes``: the
    feeder's lanes (a window each, ``ended`` once the feeder wrote the iteration's last IO)."""

    def __init__(self, lanes, timed):
        self.lanes = lanes
        self.timed = timed
        self.since = None  # when the work started waiting

    def defer(self, now):
        if not self.timed:
            return False
        burst = False
        for lane in self.lanes:
            win = lane.window
            ctl = win.control
            if ctl[LOG_HEAD] - ctl[LOG_TAIL] > win.capacity // 2:
                return self._work()
            if lane.ended:
                continue
            issued, fed = ctl[ISSUED], ctl[FED]
            if ctl[LEAD] - now < AHEAD_NS and fed - issued < win.capacity // 2:
                return self._work()
            if issued < fed and win.due[issued & win.mask] - now < QUIET_NS:
                burst = True
        if not burst:
            return self._work()
        if self.since is None:
            self.since = now
        elif now - self.since >= DEFER_MAX_NS:
            return self._work()
        return True

    def _work(self):
        self.since = None
        return False

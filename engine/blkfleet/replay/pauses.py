"""When the parent's feeding and collecting may wait for a pause in the trace.

The parent (feeder and collector) runs beside the workers, on the CPU they leave to the kernel. During a burst
that CPU also runs the kernel threads that finish the workers' IOs, and the parent's work there slowed them:
on a 2-vCPU host, a bursty trace (QD32 bursts, 20 ms pauses) replayed with p99 lateness 0.9-1.7 ms with the
parent working every 10 ms, 0.2-0.4 ms with it idle for the whole replay. So in timed mode, while a worker is
in a burst (its next IO is due within ``QUIET_NS``), the parent's work waits for the next pause, as long as
every window can afford it: it holds ``AHEAD_NS`` of the trace or half its slots ahead of its worker, and half
its completion log is free; for ``DEFER_MAX_NS`` at most, and only if a worker was seen in a pause within the
last ``DEFER_MAX_NS``. A steady trace has no pause, and the parent works every tick: waiting there only made
its work lumpier (a 40 k IOPS trace's p99 lateness went from 25 to 45-86 µs). ``-N`` and the load and
dependency modes do not pace by time and never wait.
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
        self.pause = None  # when a worker was last seen in a pause

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
            self.pause = now
            return self._work()
        if self.pause is None or now - self.pause > DEFER_MAX_NS:
            return self._work()  # no pause lately (a steady trace): waiting would only make the work lumpier
        if self.since is None:
            self.since = now
        elif now - self.since >= DEFER_MAX_NS:
            return self._work()
        return True

    def _work(self):
        self.since = None
        return False

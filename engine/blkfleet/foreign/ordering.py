"""Time order per device, with a tolerance: an IO may come up to ``tolerance`` ns earlier than the latest IO of its
device before it (traces merged from several queues or clocks often step back a little); such IOs are put
back in time order. An IO earlier than that is an error naming its line.

Chunks that are already in order pass straight through (one C-speed test) when the tolerance is 0; otherwise
the IOs of the last ``tolerance`` ns wait in a buffer, since a later IO may still belong before them.
"""

from array import array
from bisect import bisect_right
from itertools import accumulate, repeat
from operator import lt, sub

from ..streams import chunks as ch
from ..streams.quantities import seconds
from .inputs import InputError


class Ordered:
    """The IOs of one device in time order: ``add(chunk, lines)`` returns the chunks ready to be written,
    ``finish()`` the rest. @reordered: IOs that came after a later one (and were put back in order)."""

    def __init__(self, tolerance):
        self.tolerance = tolerance
        self.latest = None  # the latest time seen
        self.reordered = 0
        self._held = None  # (chunk, lines) of IOs that may still get an earlier one before them

    def add(self, name, chunk, lines):
        times, tol = chunk.times, self.tolerance
        if not len(times):
            return []
        start = times[0] if self.latest is None else self.latest
        in_order = ch.rising(times) and times[0] >= start
        if not in_order:
            before = list(accumulate(times, max, initial=start))[:-1]  # the latest time before each IO
            late = list(map(lt, times, map(sub, before, repeat(tol))))
            if True in late:
                i = late.index(True)
                raise InputError(name, lines[i], f"time goes backwards: {seconds(before[i] - times[i])} s before an "
                                 f"earlier IO of the device (tolerance {seconds(tol)} s; --tolerance SECONDS puts "
                                 "IOs that much out of order back in order)")
            self.reordered += sum(map(lt, times, before))
        self.latest = max(start, max(times))
        if not tol:
            return [chunk]
        if self._held is not None:
            chunk, lines = ch.join([self._held[0], chunk]), self._held[1] + array("q", lines)
        if not in_order or self._held is not None and not ch.rising(chunk.times):
            order = sorted(range(len(chunk)), key=chunk.times.__getitem__)
            chunk, lines = ch.pick(chunk, order), array("q", map(lines.__getitem__, order))
        ready = bisect_right(chunk.times, self.latest - tol)
        self._held = (ch.cut(chunk, ready), array("q", lines[ready:])) if ready < len(chunk) else None
        return [ch.cut(chunk, 0, ready)] if ready else []

    def finish(self):
        held, self._held = self._held, None
        return [held[0]] if held is not None else []

"""The figures of one device's IOs, fed in time order a chunk at a time, in memory that does not grow with them.

Per operation and for all IOs together: IOs, bytes, rates, sizes, inter-arrival times and seeks. Sizes are
counted exactly while there are at most MAX_SIZES distinct ones (then per power of two). Inter-arrival times and
seek distances go into log-linear histograms (results.histogram: percentiles within 0.4 %; counts, sums,
minimum and maximum exact).

Seeks follow btt (blktrace's btt/seek.c, its default, non-absolute distance): the distance of an IO from the one
before it, in 512-byte sectors, is 0 when the two overlap or touch (the IO starts or ends within the previous
one's [start, end], end = start + bytes / 512), else start - previous end when it starts after the previous
end, else start - previous start; the first IO is measured from sector 0. IOs without data are left out, as btt
does. The sequential fraction is the share of distance 0; mean, median and mode are of |distance| (btt's
"Q2Q seek" table for all IOs of the device).
"""

from collections import Counter
from itertools import compress, islice, repeat
from operator import add, rshift, sub

from ..replayfile.ops import FLUSH, OP_NAMES
from ..results.histogram import LogHistogram
from .extents import HotExtents, WorkingSet
from .timeline import Timeline

MAX_SIZES = 4096
SIZE_LIST = 64  # sizes listed one by one when there are at most this many
PS = (50, 90, 99, 99.9, 100)
_SELECT = [bytes(1 if b == op else 0 for b in range(256)) for op in range(256)]
_DATA = bytes([0] + [1] * 255)  # byte table: 1 for a non-zero byte


class Seeks:
    """btt's seek distances over IOs with data, in time order."""

    def __init__(self, modes=False):
        self.last_start = self.last_end = 0
        self.count = self.zero = self.total = 0
        self.distances = LogHistogram()
        self.modes = Counter()  # exact |distance| counts while few (btt's mode); dropped when too many
        self.modes_exact = modes

    def add(self, sectors, nbytes):
        if not len(sectors):
            return
        ends = list(map(add, sectors, map(rshift, nbytes, repeat(9))))
        prev_s = [self.last_start, *islice(sectors, len(sectors) - 1)]
        prev_e = [self.last_end, *ends[:-1]]
        dist = [s - pe if s > pe else (0 if s >= ps or ps <= e <= pe else ps - s)
                for s, e, ps, pe in zip(sectors, ends, prev_s, prev_e)]
        self.last_start, self.last_end = sectors[-1], ends[-1]
        self.count += len(dist)
        self.zero += dist.count(0)
        self.total += sum(dist)
        self.distances.add_many(dist)
        if self.modes_exact:
            self.modes.update(dist)
            if len(self.modes) > MAX_SIZES:
                self.modes_exact, self.modes = False, Counter()

    def figures(self):
        if not self.count:
            return {"ios": 0, "sequential_fraction": None, "mean_sectors": None, "median_sectors": None,
                    "mode_sectors": None, "max_sectors": None}
        mode = None
        if self.modes_exact and self.modes:
            top = max(self.modes.values())
            mode = min(k for k, v in self.modes.items() if v == top)
        return {"ios": self.count, "sequential_fraction": round(self.zero / self.count, 6),
                "mean_sectors": round(self.total / self.count, 3),
                "median_sectors": round(self.distances.percentiles([50])[0], 1), "mode_sectors": mode,
                "max_sectors": self.distances.max, "histogram": self.distances.to_json(scale=1)}


class OpFigures:
    """IOs of one operation (or of all): counts, sizes, inter-arrival times, seeks."""

    def __init__(self, every_op=False):
        self.ios = self.bytes = 0
        self.sizes = Counter()
        self.size_powers = None  # Counter of size.bit_length() once there are too many distinct sizes
        self.gaps = LogHistogram()
        self.first_time = self.last_time = None
        self.seeks = Seeks(modes=every_op)
        self.every_op = every_op  # the figures of all IOs: their sizes are the sum of the ops' (``sizes_of``)

    def add(self, times, sectors, nbytes):
        n = len(times)
        if not n:
            return
        self.ios += n
        self.bytes += sum(nbytes)
        if self.every_op:
            pass
        elif self.size_powers is None:
            self.sizes.update(nbytes)
            if len(self.sizes) > MAX_SIZES:
                self.size_powers = Counter()
                for size, k in self.sizes.items():
                    self.size_powers[size.bit_length()] += k
        else:
            self.size_powers.update(map(int.bit_length, nbytes))
        gaps = list(map(sub, islice(times, 1, None), times))
        if self.last_time is not None:
            gaps.append(times[0] - self.last_time)
        else:
            self.first_time = times[0]
        self.gaps.add_many(gaps)
        self.last_time = times[-1]
        if 0 in nbytes:
            data = bytes(map(bool, nbytes))
            sectors, nbytes = list(compress(sectors, data)), list(compress(nbytes, data))
        self.seeks.add(sectors, nbytes)

    def sizes_of(self, parts):
        """The sizes of all IOs from those of each op."""
        for f in parts:
            if f.size_powers is not None or self.size_powers is not None:
                if self.size_powers is None:
                    self.size_powers = Counter()
                    for size, k in self.sizes.items():
                        self.size_powers[size.bit_length()] += k
                for size, k in (f.size_powers.items() if f.size_powers is not None else
                                ((s.bit_length(), k) for s, k in f.sizes.items())):
                    self.size_powers[size] += k
            else:
                self.sizes.update(f.sizes)

    def figures(self, span_ns):
        gaps = self.gaps.percentiles(PS) if self.gaps.count else [None] * len(PS)
        return {
            "ios": self.ios, "bytes": self.bytes,
            "iops": round(self.ios / (span_ns / 1e9), 3) if span_ns else None,
            "mb_s": round(self.bytes / (span_ns / 1e9) / 1e6, 6) if span_ns else None,
            "size": self._sizes(),
            "inter_arrival_us": dict({_p(p): None if v is None else round(v / 1000, 3) for p, v in zip(PS, gaps)},
                                     mean=round((self.last_time - self.first_time) / self.gaps.count / 1000, 3)
                                     if self.gaps.count else None),
            "inter_arrival_histogram": self.gaps.to_json(),
            "seek": self.seeks.figures(),
        }

    def _sizes(self):
        out = {"mean": round(self.bytes / self.ios, 1) if self.ios else None}
        if self.size_powers is None and self.sizes:
            out.update(min=min(self.sizes), max=max(self.sizes))
        if self.size_powers is None and len(self.sizes) <= SIZE_LIST:
            out["exact"] = [{"bytes": s, "ios": k} for s, k in sorted(self.sizes.items())]
        powers = self.size_powers
        if powers is None:
            powers = Counter()
            for size, k in self.sizes.items():
                powers[size.bit_length()] += k
        out["powers_of_two"] = [{"from": 0 if p == 0 else 1 << (p - 1), "below": 1 if p == 0 else 1 << p, "ios": k}
                                for p, k in sorted(powers.items())]
        return out


def _p(p):
    return "max" if p == 100 else f"p{p:g}".replace(".", "_")


class DeviceFigures:
    """Everything of one device: ``add(chunk)`` in time order, then ``figures(...)``."""

    def __init__(self):
        self.start = self.last = None
        self.all = OpFigures(every_op=True)
        self.ops = {}
        self.timeline = None
        self.working_set = WorkingSet()
        self.hot = HotExtents()

    def add(self, chunk):
        n = len(chunk)
        if not n:
            return
        if self.start is None:
            self.start = chunk.times[0]
            self.timeline = Timeline(self.start)
        self.last = chunk.times[-1]
        times, sectors, nbytes, ops = chunk.times, chunk.sectors, chunk.nbytes, chunk.ops
        self.all.add(times, sectors, nbytes)
        present = set(ops)
        for op in present:
            if len(present) == 1:
                t, s, b = times, sectors, nbytes
            else:
                mask = ops.translate(_SELECT[op])
                t, s, b = list(compress(times, mask)), list(compress(sectors, mask)), list(compress(nbytes, mask))
            self.ops.setdefault(op, OpFigures()).add(t, s, b)
            self.timeline.add(t, b, op)
        if FLUSH in present or 0 in nbytes:  # where IOs with data go
            data = bytes(map(bool, nbytes))
            sectors, nbytes = list(compress(sectors, data)), list(compress(nbytes, data))
        if sectors:
            self.working_set.add(sectors, nbytes)
            self.hot.add(sectors)

    def figures(self, phases=10, phase_ns=None):
        span = (self.last - self.start) if self.start is not None else 0
        self.all.sizes_of(self.ops.values())
        return {
            "start_ns": self.start, "span_ns": span, "ios": self.all.ios, "bytes": self.all.bytes,
            "all": self.all.figures(span),
            "ops": {OP_NAMES[op]: f.figures(span) for op, f in sorted(self.ops.items())},
            "working_set": self.working_set.figures(), "hot_extents": self.hot.figures(),
            "timeline": self.timeline.figures() if self.timeline else None,
            "phases": self.timeline.phases(phases, phase_ns) if self.timeline else [],
        }

"""IOs and bytes per operation over time, in at most MAX_BUCKETS buckets whatever the trace's length: buckets start
1 ms wide and double (pairs merged) whenever the trace outgrows them. Phases (the read/write mix and rates of
equal stretches of the trace) are made of whole buckets at the end."""

from bisect import bisect_left
from itertools import repeat
from operator import floordiv, sub

from ..replayfile.ops import OP_NAMES, READ, WRITE

START_WIDTH = 1_000_000  # ns
MAX_BUCKETS = 2048


class Timeline:
    """``add(times, nbytes, op)``: IOs of one op in time order; times count from ``start``."""

    def __init__(self, start):
        self.start = start
        self.width = START_WIDTH
        self.ios = [[] for _ in OP_NAMES]
        self.bytes = [[] for _ in OP_NAMES]

    def add(self, times, nbytes, op):
        if not len(times):
            return
        last = (times[-1] - self.start) // self.width
        while last >= MAX_BUCKETS:
            self._wider()
            last = (times[-1] - self.start) // self.width
        index = list(map(floordiv, map(sub, times, repeat(self.start)), repeat(self.width)))
        ios, nb = self.ios[op], self.bytes[op]
        if len(ios) <= last:
            ios.extend([0] * (last + 1 - len(ios)))
            nb.extend([0] * (last + 1 - len(nb)))
        at = 0
        while at < len(index):
            b = index[at]
            end = bisect_left(index, b + 1, at)
            ios[b] += end - at
            nb[b] += sum(nbytes[at:end])
            at = end

    def _wider(self):
        self.width *= 2
        for series in self.ios + self.bytes:
            series[:] = [sum(series[i:i + 2]) for i in range(0, len(series), 2)]

    def buckets(self):
        return max(map(len, self.ios))

    def figures(self):
        n = self.buckets()
        pad = [0] * n
        return {
            "bucket_s": self.width / 1e9,
            "ios": {OP_NAMES[op]: (s + pad)[:n] for op, s in enumerate(self.ios) if any(s)},
            "bytes": {OP_NAMES[op]: (s + pad)[:n] for op, s in enumerate(self.bytes) if any(s)},
        }

    def phases(self, count=None, length_ns=None):
        """Per phase: its start and end (s from the start), IOs and bytes per op, IOPS, MB/s and the read share
        (of the IOs and bytes that are reads or writes)."""
        n = self.buckets()
        if not n:
            return []
        per = max(1, -(-length_ns // self.width)) if length_ns else max(1, -(-n // (count or 1)))
        out = []
        for first in range(0, n, per):
            last = min(first + per, n)
            ios = {OP_NAMES[op]: sum(s[first:last]) for op, s in enumerate(self.ios) if sum(s[first:last])}
            nb = {OP_NAMES[op]: sum(s[first:last]) for op, s in enumerate(self.bytes) if sum(s[first:last])}
            seconds = (last - first) * self.width / 1e9
            rw = sum(self.ios[READ][first:last]) + sum(self.ios[WRITE][first:last])
            rw_bytes = sum(self.bytes[READ][first:last]) + sum(self.bytes[WRITE][first:last])
            out.append({
                "start_s": first * self.width / 1e9, "end_s": last * self.width / 1e9, "ios": ios, "bytes": nb,
                "iops": round(sum(ios.values()) / seconds, 3), "mb_s": round(sum(nb.values()) / seconds / 1e6, 6),
                "read_fraction": round(sum(self.ios[READ][first:last]) / rw, 6) if rw else None,
                "read_bytes_fraction": round(sum(self.bytes[READ][first:last]) / rw_bytes, 6) if rw_bytes else None,
            })
        return out

"""Streaming summaries of a replay: what the results JSON reports, folded IO by IO while the replay runs.

Memory does not grow with the number of IOs: a ``Summary`` (one per iteration and device) holds counts, two
log-linear histograms per op and per-iteration time spans; a ``Timeline`` holds six numbers per 100 ms bucket per
(device, op), so it grows with the replay's duration (48 bytes per bucket: 1.7 MiB per hour per device and op),
never with its IO count.
"""

from array import array
from bisect import bisect_left
from itertools import compress, repeat
from operator import add, floordiv

from .histogram import LogHistogram

BUCKET_NS = 100_000_000
NO_MAX = -(1 << 63)  # the lateness maximum of a bucket no IO was submitted in


class Summary:
    """Figures of a set of IOs: @by_op (op number -> [IOs submitted, their bytes]), @skipped (op number ->
    count: not replayed without -W), @histograms (op number -> [LogHistogram of the latencies of the IOs that
    completed, LogHistogram of the lateness of those submitted], ns), @late (IOs later than the threshold),
    @spans (iteration -> [first submit, last completion], ns after that iteration's start), @errors ([count,
    first message]). The collector folds IOs one op at a time already, so keeping the histograms per op costs
    nothing per IO; ``latency`` and ``lateness`` merge them (all ops)."""

    __slots__ = ("by_op", "skipped", "histograms", "late", "spans", "errors")

    def __init__(self):
        self.by_op = {}
        self.skipped = {}
        self.histograms = {}
        self.late = 0
        self.spans = {}
        self.errors = [0, None]

    def _histograms(self, op):
        got = self.histograms.get(op)
        if got is None:
            got = self.histograms[op] = [LogHistogram(), LogHistogram()]
        return got

    def submitted(self, iteration, op, count, nbytes_total, latenesses, first_submit, late):
        """Fold ``count`` IOs of one op as they were submitted: their bytes, lateness list (ns), the earliest
        submit (ns after the iteration's start) and how many were late."""
        entry = self.by_op.get(op)
        if entry is None:
            entry = self.by_op[op] = [0, 0]
        entry[0] += count
        entry[1] += nbytes_total
        self._histograms(op)[1].add_many(latenesses)
        self.late += late
        span = self.spans.get(iteration)
        if span is None:
            self.spans[iteration] = [first_submit, first_submit]
        elif first_submit < span[0]:
            span[0] = first_submit

    def completed(self, iteration, op, latencies, last_end):
        """Fold the latencies (ns) of IOs of one op that completed, the last at ``last_end``."""
        self._histograms(op)[0].add_many(latencies)
        span = self.spans.get(iteration)
        if span is None:
            self.spans[iteration] = [last_end, last_end]
        elif last_end > span[1]:
            span[1] = last_end

    def skip(self, op, count):
        self.skipped[op] = self.skipped.get(op, 0) + count

    def fail(self, count, message):
        self.errors[0] += count
        if self.errors[1] is None:
            self.errors[1] = message

    def merge(self, other):
        for op, (ios, nbytes) in other.by_op.items():
            entry = self.by_op.setdefault(op, [0, 0])
            entry[0] += ios
            entry[1] += nbytes
        for op, count in other.skipped.items():
            self.skip(op, count)
        for op, (latency, lateness) in other.histograms.items():
            mine = self._histograms(op)
            mine[0].merge(latency)
            mine[1].merge(lateness)
        self.late += other.late
        for it, (a, b) in other.spans.items():
            span = self.spans.get(it)
            if span is None:
                self.spans[it] = [a, b]
            else:
                span[0], span[1] = min(span[0], a), max(span[1], b)
        if other.errors[0]:
            self.fail(other.errors[0], other.errors[1])
        return self

    def _all_ops(self, which):
        """A new LogHistogram merging every op's histogram ``which`` (0: latency, 1: lateness)."""
        out = LogHistogram()
        for pair in self.histograms.values():
            out.merge(pair[which])
        return out

    @property
    def latency(self):
        """The latencies of every op (a new LogHistogram)."""
        return self._all_ops(0)

    @property
    def lateness(self):
        """The lateness of every op (a new LogHistogram)."""
        return self._all_ops(1)

    @property
    def ios(self):
        return sum(e[0] for e in self.by_op.values())

    @property
    def nbytes(self):
        return sum(e[1] for e in self.by_op.values())

    @property
    def duration_ns(self):
        """The sum over iterations of first submit to last completion."""
        return sum(b - a for a, b in self.spans.values())


class Timeline:
    """Per 100 ms bucket (from the first iteration's start) and per (target, op): IOs submitted, their bytes,
    the sum of their latencies, the time IOs of that kind spent in flight within the bucket (ns; divided by
    the bucket's width, the mean number in flight), and the sum and maximum of the lateness of the IOs
    submitted in it (ns; NO_MAX while none was)."""

    def __init__(self, width_ns=BUCKET_NS):
        self.width = width_ns
        self.series = {}  # (target, op) -> [ios, bytes, latency sum, busy ns, lateness sum, lateness max]

    def _lists(self, key, upto):
        lists = self.series.get(key)
        if lists is None:
            lists = self.series[key] = [array("q") for _ in range(6)]
        have = len(lists[0])
        if have <= upto:
            grow = array("q", bytes(8 * (upto + 1 - have)))
            for values in lists[:5]:
                values.extend(grow)
            lists[5].extend(array("q", (NO_MAX,)) * (upto + 1 - have))
        return lists

    def submitted(self, key, offset, submits, nbytes, latenesses):
        """IOs of one (target, op) submitted at ``offset + submits[i]`` (ns from the first start; ascending),
        ``latenesses[i]`` after they were due."""
        w = self.width
        first, last = (offset + submits[0]) // w, (offset + submits[-1]) // w
        ios, byts, _lat, _busy, late_sum, late_max = self._lists(key, last)
        if first == last:
            ios[first] += len(submits)
            byts[first] += sum(nbytes)
            late_sum[first] += sum(latenesses)
            late_max[first] = max(late_max[first], max(latenesses))
            return
        a = 0
        for b in range(first, last + 1):  # the submits are ascending: each bucket is a slice
            z = bisect_left(submits, (b + 1) * w - offset, a)
            if z > a:
                ios[b] += z - a
                byts[b] += sum(nbytes[a:z])
                late_sum[b] += sum(latenesses[a:z])
                late_max[b] = max(late_max[b], max(latenesses[a:z]))
            a = z

    def completed(self, key, offset, submits, latencies, ends, last_end=None):
        """IOs of one (target, op) submitted at ``offset + submits[i]`` that took ``latencies[i]``, ending at
        ``offset + ends[i]`` (the latest at ``offset + last_end``, when the caller knows it): their latency
        counts in the bucket they were submitted in, their time in flight in every bucket it spans. On whole
        lists: the time in flight before an edge e is the sum of min(end, e) less the sum of min(submit, e),
        read off the sorted ends and submits (the ends come nearly in order, so sorting them is cheap)."""
        w = self.width
        total = sum(latencies)
        first, top = (min(submits) + offset) // w, (max(submits) + offset) // w  # buckets of the submits
        last = max(((max(ends) if last_end is None else last_end) + offset - 1) // w, first)
        lat, busy = self._lists(key, last)[2:4]
        if first == last:  # all in one bucket
            lat[first] += total
            busy[first] += total
            return
        n = len(submits)
        starts, stops = sorted(submits), sorted(ends)
        before = 0  # time in flight before the bucket's start edge
        a = z = 0  # IOs submitted, and ended, before that edge
        start_sum = stop_sum = 0  # their submits and ends
        for b in range(first, last):
            edge = (b + 1) * w - offset
            a2, z2 = bisect_left(starts, edge, a), bisect_left(stops, edge, z)
            start_sum += sum(starts[a:a2])
            stop_sum += sum(stops[z:z2])
            a, z = a2, z2
            upto = stop_sum + edge * (n - z) - start_sum - edge * (n - a)
            busy[b] += upto - before
            before = upto
        busy[last] += total - before
        if first == top:
            lat[first] += total
            return
        buckets = list(map(floordiv, map(add, submits, repeat(offset)), repeat(w)))
        for b in set(buckets):
            lat[b] += sum(compress(latencies, map(b.__eq__, buckets)))

    def to_json(self, names, op_names):
        """``names``: target index -> device name. Series ordered by device then op; buckets up to the last
        one any series uses."""
        length = max((len(v[0]) for v in self.series.values()), default=0)
        out = []
        for (target, op), columns in sorted(self.series.items(), key=lambda kv: (names[kv[0][0]], kv[0][1])):
            pad = [0] * (length - len(columns[0]))
            ios, byts, lat, busy, late_sum, late_max = (c.tolist() + pad for c in columns)
            out.append({
                "device": names[target], "op": op_names[op], "ios": ios, "bytes": byts,
                "latency_mean_us": [round(s / n / 1000, 3) if n else None for s, n in zip(lat, ios)],
                "in_flight": [round(b / self.width, 3) for b in busy],
                "lateness_mean_us": [round(s / n / 1000, 3) if n else None for s, n in zip(late_sum, ios)],
                "lateness_max_us": [round(m / 1000, 3) if n else None for m, n in zip(late_max, ios)],
            })
        return {"bucket_s": self.width / 1e9, "buckets": length, "series": out}

"""Queue-to-completion latency and IOs in flight, from a capture that recorded completions (C events: ``blkfleet
capture``'s default events mode, blktrace with ``-a queue,complete``, ``--mode raw --act-mask all``).

Qs and Cs are paired as ``trace.matching`` pairs them (Qs and Cs without data left out, as btt does). An IO's Q2C
time is its C's time less its Q's, btt's Q2C. IOs in flight at a Q are the queued IOs not completed yet. A Q
whose completion never comes stays counted until MAX_PENDING are waiting, then the oldest are dropped; the count
of unmatched Qs and Cs says how well the two matched.
"""

from array import array
from collections import Counter

from ..errors import BlkfleetError
from ..replayfile.reader import IOChunk
from ..results.histogram import LogHistogram
from ..trace.actions import is_complete
from ..trace.matching import MAX_PENDING, Matcher
from ..trace.reader import TraceReader

ROWS = 8192
PS = (50, 90, 99, 99.9, 100)


def completion_chunks(path):
    """The C events of a trace file as IOChunks (time, sector, bytes; op and flags 0)."""
    rows = []
    with TraceReader(path) as reader:
        for rec in reader:
            if is_complete(rec.action):
                rows.append(rec)
                if len(rows) >= ROWS:
                    yield _chunk(rows, path)
                    rows = []
    if rows:
        yield _chunk(rows, path)


def _chunk(rows, path):
    n = len(rows)
    try:
        return IOChunk(array("q", (r.time for r in rows)), array("q", (r.sector for r in rows)),
                       array("q", (r.bytes for r in rows)), bytes(n), bytes(n))
    except OverflowError:
        raise BlkfleetError(f"{path}: a completion's time stamp or sector is 2^63 or more") from None


class Completions:
    """Q and C events of one device in time order: ``queued(...)`` and ``completed(...)``."""

    def __init__(self):
        self.matcher = Matcher(limit=MAX_PENDING)  # Qs and Cs without data are left out, as btt does
        self.depths = Counter()  # in flight at each Q with data
        self.q2c = LogHistogram()
        self.q2c_total = 0

    @property
    def in_flight(self):
        return self.matcher.in_flight

    @property
    def unmatched_c(self):
        return self.matcher.unmatched

    @property
    def dropped(self):
        return self.matcher.forgotten

    def events(self, chunk, is_c):
        """A merged chunk of Q and C events; ``is_c``: 1 for each C event."""
        if not is_c.count(1):
            self.queued(chunk.times, chunk.sectors, chunk.nbytes)
            return
        for t, s, n, c in zip(chunk.times, chunk.sectors, chunk.nbytes, is_c):
            if c:
                self.completed((t,), (s,), (n,))
            else:
                self.queued((t,), (s,), (n,))

    def queued(self, times, sectors, nbytes):
        matcher = self.matcher
        for t, s, n in zip(times, sectors, nbytes):
            if n:
                self.depths[matcher.in_flight] += 1
                matcher.queued(s, n, t)

    def completed(self, times, sectors, nbytes):
        latencies = []
        for t, s, n in zip(times, sectors, nbytes):
            latencies += [t - qt for qt in self.matcher.completed(s, n)]
        if latencies:
            self.q2c.add_many(latencies)
            self.q2c_total += sum(latencies)

    def figures(self):
        n = self.q2c.count
        q2c = self.q2c.percentiles(PS) if n else [None] * len(PS)
        depth_total = sum(self.depths.values())
        depths = sorted(self.depths.items())
        return {
            "matched": n, "unmatched_completions": self.unmatched_c, "unmatched_queued": self.in_flight + self.dropped,
            "q2c_us": dict({_p(p): None if v is None else round(v / 1000, 3) for p, v in zip(PS, q2c)},
                           mean=round(self.q2c_total / n / 1000, 3) if n else None),
            "q2c_histogram": self.q2c.to_json(),
            "in_flight": {
                "mean": round(sum(d * k for d, k in depths) / depth_total, 3) if depth_total else None,
                "max": depths[-1][0] if depths else None,
                "p50": _depth_at(depths, depth_total, 50), "p99": _depth_at(depths, depth_total, 99),
                "histogram": [{"in_flight": d, "ios": k} for d, k in depths[:256]],
            },
        }


def _depth_at(depths, total, pct):
    if not total:
        return None
    running = 0
    for d, k in depths:
        running += k
        if running * 100 >= total * pct:
            return d
    return depths[-1][0]


def _p(p):
    return "max" if p == 100 else f"p{p:g}".replace(".", "_")

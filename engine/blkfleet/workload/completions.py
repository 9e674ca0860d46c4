"""Queue-to-completion latency and IOs in flight, from a capture that recorded completions (C events: blktrace, or
``blkfleet capture --mode raw --act-mask all``).

A C event completes the queued IOs it covers: starting at its sector, the oldest pending Q at that sector, then
the one at the sector where that IO ends, and so on until the C event's end (the bios a request merged). A C
that covers only the start of a Q (the bio was split into several requests) leaves its rest pending: the IO is
complete with its last part. Its Q2C time is the C's time less the Q's, btt's Q2C. IOs in flight at a Q are the
queued IOs not completed yet (Qs and Cs without data are left out, as btt does). A Q whose completion never
comes stays counted until MAX_PENDING are waiting, then the oldest are dropped; the count of unmatched Qs and
Cs says how well the two matched.
"""

from array import array
from collections import Counter, deque

from ..replayfile.reader import IOChunk
from ..results.histogram import LogHistogram
from ..trace.actions import C_NOTIFY
from ..trace.reader import TraceReader

A_COMPLETE = 8
PEEK_RECORDS = 65536  # records of each file looked at for a completion before the whole capture is read
MAX_PENDING = 1 << 20
ROWS = 8192
PS = (50, 90, 99, 99.9, 100)


def _is_complete(action):
    return action & 0xFFFF == A_COMPLETE and not action & C_NOTIFY


def has_completions(paths):
    """Whether any of the first PEEK_RECORDS records of the files is a completion."""
    for path in paths:
        with TraceReader(path) as reader:
            for i, rec in enumerate(reader):
                if _is_complete(rec.action):
                    return True
                if i >= PEEK_RECORDS:
                    break
    return False


def completion_chunks(path):
    """The C events of a trace file as IOChunks (time, sector, bytes; op and flags 0)."""
    rows = []
    with TraceReader(path) as reader:
        for rec in reader:
            if _is_complete(rec.action):
                rows.append(rec)
                if len(rows) >= ROWS:
                    yield _chunk(rows)
                    rows = []
    if rows:
        yield _chunk(rows)


def _chunk(rows):
    n = len(rows)
    return IOChunk(array("q", (r.time for r in rows)), array("q", (r.sector for r in rows)),
                   array("q", (r.bytes for r in rows)), bytes(n), bytes(n))


class Completions:
    """Q and C events of one device in time order: ``queued(...)`` and ``completed(...)``."""

    def __init__(self):
        self.pending = {}  # sector -> deque of (Q time, bytes); in order of first arrival
        self.in_flight = 0
        self.depths = Counter()  # in flight at each Q with data
        self.q2c = LogHistogram()
        self.q2c_total = 0
        self.unmatched_c = 0
        self.dropped = 0

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
        pending = self.pending
        for t, s, n in zip(times, sectors, nbytes):
            if not n:
                continue
            self.depths[self.in_flight] += 1
            pending.setdefault(s, deque()).append((t, n))
            self.in_flight += 1
            if self.in_flight > MAX_PENDING:
                self._drop_oldest()

    def completed(self, times, sectors, nbytes):
        pending, latencies = self.pending, []
        for t, s, n in zip(times, sectors, nbytes):
            if not n:
                continue  # a flush: no data, nothing of it is pending
            end = s + (n >> 9)
            sector, matched = s, 0
            while sector < end:
                waiting = pending.get(sector)
                if not waiting:
                    break
                qt, qn = waiting.popleft()
                if not waiting:
                    del pending[sector]
                matched += 1
                q_end = sector + max(qn >> 9, 1)
                if q_end > end:  # split: this C completes the start of the IO, its rest comes later
                    pending.setdefault(end, deque()).append((qt, (q_end - end) << 9))
                    break
                latencies.append(t - qt)
                self.in_flight -= 1
                sector = q_end
            if not matched:
                self.unmatched_c += 1
        if latencies:
            self.q2c.add_many(latencies)
            self.q2c_total += sum(latencies)

    def _drop_oldest(self):
        """Forget the Qs of the sector that has waited longest (a lost completion must not hold memory)."""
        while self.in_flight > MAX_PENDING:
            forgotten = len(self.pending.pop(next(iter(self.pending))))
            self.in_flight -= forgotten
            self.dropped += forgotten

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

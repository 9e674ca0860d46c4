"""The collector: folds every completed IO into the streaming summaries (and the per-IO log) while the replay
runs, and frees its window slot for the feeder.

It runs in the parent, between the checks of its supervision loop, and reads each worker's completion log:
for all the records logged since its last look (the events of one reap each, with their completion time) it
gathers the IOs' submit and due times, target, op and size from their slots, and works out latency
(completion - submit), lateness (submit - due) and errors (a result other than the size; 0 for flushes,
discards and write-zeroes). The work is done on whole lists (C-level maps), about 1 µs per IO; IOs of several
devices or ops at once are grouped first, and only IOs in flight across a timeline bucket's edge take a
Python step each.
"""

import os
from array import array
from operator import sub

from ..replayfile.ops import OP_NAMES, WRITE
from ..results.summary import Summary, Timeline
from . import lanes
from .window import EVENT_BYTES, FREED, LOG_TAIL, W_NBYTES, W_OFFSET, read_log


class _Slots:
    """The collector's state of one window: @tail (completion log bytes read), @flags (1 per folded slot not yet
    freed), @freed (the FREED cursor)."""

    def __init__(self, window):
        self.tail = window.control[LOG_TAIL]
        self.flags = bytearray(window.capacity)
        self.freed = window.control[FREED]


class Collector:
    """@summaries: (iteration, target) -> Summary; @timeline; @lost ([count, first message] of IOs that did not
    come back after a stop, tied to no device); @first_submit and @last_completion (CLOCK_MONOTONIC ns of the
    first IO submitted and of the last completion seen); @folded (IOs folded)."""

    def __init__(self, windows, targets, late_threshold_ns, iolog=None):
        self.windows = windows
        self.targets = targets
        self.late_threshold = late_threshold_ns
        self.iolog = iolog
        self.state = [_Slots(w) for w in windows]
        self.summaries = {}
        self.timeline = Timeline()
        self.lost = [0, None]
        self.iteration = 0
        self.start_ns = self.first_start = None
        self.first_submit = self.last_completion = None
        self.folded = 0

    def begin(self, iteration, start_ns):
        """Iteration ``iteration`` (1-based) starts at the monotonic instant ``start_ns``."""
        self.iteration, self.start_ns = iteration, start_ns
        if self.first_start is None:
            self.first_start = start_ns

    def summary(self, iteration, target):
        key = (iteration, target)
        got = self.summaries.get(key)
        if got is None:
            got = self.summaries[key] = Summary()
        return got

    def skipped(self, counts):
        """Fold a feeder's skipped counts ({(target, op): IOs}) into the current iteration."""
        for (target, op), n in counts.items():
            self.summary(self.iteration, target).skip(op, n)
        counts.clear()

    def lose(self, count):
        if count:
            self.lost[0] += count
            self.lost[1] = self.lost[1] or f"{count} IOs still in flight after the stop"

    def poll(self):
        """Fold every completion logged so far; returns the IOs folded."""
        done = 0
        for slot, (win, st) in enumerate(zip(self.windows, self.state)):
            records, tail = read_log(win, st.tail)
            if records:
                done += self._fold(slot, win, st, records)
                st.tail = tail
                win.control[LOG_TAIL] = tail
                self._free(win, st)
        self.folded += done
        return done

    def _free(self, win, st):
        """Advance FREED over the folded slots."""
        flags, mask, cap = st.flags, win.mask, win.capacity
        freed = st.freed
        while True:
            pos = freed & mask
            z = flags.find(0, pos)
            z = cap if z < 0 else z
            if z > pos:
                flags[pos:z] = bytes(z - pos)
                freed += z - pos
            if z < cap or z == pos:
                break
        st.freed = freed
        win.control[FREED] = freed

    def _fold(self, slot, win, st, records):
        """Fold the events of ``records`` [(completion time, events)] of one window, all at once."""
        ev = array("q")
        ev.frombytes(b"".join(raw for _t, raw in records))
        ks, res = ev[0::4], ev[2::4]
        ends = array("q")
        for t, raw in records:
            ends += array("q", (t,)) * (len(raw) // EVENT_BYTES)
        if min(ks) < 0:  # a probe's event (data 2^64 - 1): not an IO
            keep = [x for x, k in enumerate(ks) if k >= 0]
            ks, res, ends = (array("q", map(c.__getitem__, keep)) for c in (ks, res, ends))
            if not ks:
                return 0
        n = len(ks)
        rs = lanes.column(lanes.lanes(ks) & lanes.repeat(win.mask, n), n)  # slots: indexes are >= 0
        subs = list(map(win.submit.__getitem__, rs))
        dues = list(map(win.due.__getitem__, rs))
        nbs = list(map(win.field(W_NBYTES).__getitem__, rs))
        if len(win.kinds) == 1:
            ((tgt, op),) = win.kinds
            tgts, ops = [tgt], [op]
        else:
            tgts = list(map(win.target.__getitem__, rs))
            ops = list(map(win.op.__getitem__, rs))
        lats = list(map(sub, ends, subs))
        lates = list(map(sub, subs, dues))
        flags = st.flags
        for r in rs:
            flags[r] = 1
        it = self.iteration
        start = self.start_ns
        first, last = min(subs), max(ends)
        if self.first_submit is None or it == 1 and start + first < self.first_submit:
            self.first_submit = start + first
        if self.last_completion is None or start + last > self.last_completion:
            self.last_completion = start + last
        # reads and writes return their size; flushes, discards and write-zeroes 0
        if max(ops) <= WRITE:
            expect = nbs
        elif len(ops) == 1:
            expect = [0] * n
        else:
            expect = [b if op <= WRITE else 0 for b, op in zip(nbs, ops)]
        if res.tolist() != expect:
            self._errors(win, rs, res, expect, tgts, ops, nbs)
        offset = start - self.first_start
        thr = self.late_threshold
        if min(tgts) == max(tgts) and min(ops) == max(ops):
            target, op = tgts[0], ops[0]
            self.summary(it, target).add(it, op, sum(nbs), lats, lates, first, last, sum(map(thr.__lt__, lates)))
            self.timeline.add((target, op), offset, subs, lats, nbs, ends)
        else:
            groups = {}
            for x, key in enumerate(zip(tgts, ops)):
                groups.setdefault(key, []).append(x)
            for (target, op), xs in groups.items():
                g_subs, g_lats, g_lates, g_nbs, g_ends = ([c[x] for x in xs] for c in (subs, lats, lates, nbs, ends))
                self.summary(it, target).add(it, op, sum(g_nbs), g_lats, g_lates, min(g_subs), max(g_ends),
                                             sum(map(thr.__lt__, g_lates)))
                self.timeline.add((target, op), offset, g_subs, g_lats, g_nbs, g_ends)
        if self.iolog is not None:
            offsets = list(map(win.field(W_OFFSET).__getitem__, rs))
            if len(tgts) == 1 < n:
                tgts, ops = tgts * n, ops * n
            self.iolog.write_block(it, slot, start, [subs, lates, lats, res, offsets, nbs, tgts, ops])
        return len(rs)

    def _errors(self, win, rs, res, expect, tgts, ops, nbs):
        for x, (got, want) in enumerate(zip(res, expect)):
            if got != want:
                offset = win.field(W_OFFSET)[rs[x]]
                op, tgt = ops[x if len(ops) > 1 else 0], tgts[x if len(tgts) > 1 else 0]
                what = f"{OP_NAMES[op]} of {nbs[x]} bytes at offset {offset}: " + (
                    os.strerror(-got) if got < 0 else f"short IO ({got} bytes)")
                self.summary(self.iteration, tgt).fail(1, what)

    # -- what the results need ---------------------------------------------------------------------------------

    def merged(self, iteration=None, target=None):
        """One Summary of the IOs of an iteration and/or target (None: all)."""
        out = Summary()
        for (it, t), s in self.summaries.items():
            if (iteration is None or it == iteration) and (target is None or t == target):
                out.merge(s)
        return out

"""The collector: folds every IO into the streaming summaries (and the per-IO log) while the replay runs, and
frees its window slot for the feeder.

It runs in the parent, between the checks of its supervision loop, in two passes per window. Submissions: the
IOs the worker has submitted since the last look (``ISSUED``) are a contiguous range of slots, so their due and
submit times, sizes and operations are slices of the window's columns: lateness (submit - due; a histogram per
device and op), late IOs, IOs and bytes per op and device, and the timeline's IOs, bytes and lateness (sum and
maximum) per bucket are worked out on whole slices (64-bit lanes; ``lanes.py``). Completions: the completion
log's events since the last look (each stamped by the worker with its completion time) give each IO's result;
its submit time is gathered from its slot (one ``itemgetter`` over the slots, reused for every column), then
latency (completion - submit; a histogram per device and op) and errors (a result other than the size; 0 for
flushes, discards and write-zeroes) on whole columns. When every IO the feeder wrote into a window is a read or
write of one size (``Window.one_size``), the results are checked by one count, without gathering the sizes.
About 1 µs per IO in all (``bench/collect_bench.py``), most of it the two histograms' bucket counts. The IOs of
one device are folded one op at a time, picked by a byte mask per op (one ``translate`` of the ops), so the
histograms per op cost nothing more; IOs of several devices take a Python step each. The timeline's time in
flight per bucket comes from the sorted submit and completion times (``Timeline.completed``).
"""

import os
from array import array
from collections import Counter
from itertools import compress
from operator import sub

from ..replayfile.ops import OP_NAMES, WRITE
from ..results.summary import Summary, Timeline
from . import lanes
from .window import FREED, ISSUED, LOG_HEAD, LOG_TAIL, W_NBYTES, W_OFFSET, read_log

_BIAS = 1 << 62  # added to the lateness lanes of IOs that may have been sent early (below 2^62 ns either way)


def _pick(op):
    """A ``translate`` table: 1 for ``op``, 0 for every other byte."""
    return bytes(op) + b"\1" + bytes(255 - op)


class _Slots:
    """The collector's state of one window: @tail (completion log events read), @flags (1 per completed slot not
    yet freed), @freed (the FREED cursor), @submitted (IOs whose submission is folded)."""

    def __init__(self, window):
        self.tail = window.control[LOG_TAIL]
        self.flags = bytearray(window.capacity)
        self.freed = window.control[FREED]
        self.submitted = window.control[ISSUED]


class Collector:
    """@summaries: (iteration, target) -> Summary; @timeline; @lost ([count, first message] of IOs that did not
    come back after a stop, tied to no device); @first_submit and @last_completion (CLOCK_MONOTONIC ns of the
    first IO submitted and of the last completion seen); @folded (completions folded)."""

    def __init__(self, windows, targets, late_threshold_ns, iolog=None, never_early=True):
        self.never_early = never_early  # no IO is sent before it is due (timed, no batch window): lateness >= 0
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
        self.depths = {}  # load and dependency modes: target -> Counter of IOs in flight once each was submitted

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

    def poll(self, most=None):
        """Fold every submission and completion logged so far (at most ``most`` completion events per window);
        returns the IOs completed."""
        done = 0
        for slot, (win, st) in enumerate(zip(self.windows, self.state)):
            events, tail = read_log(win, st.tail, most)  # first: every IO they hold is below ISSUED, read next
            issued = win.control[ISSUED]
            if issued > st.submitted:
                for a, b, _k in win.slots(st.submitted, issued):
                    self._submitted(win, a, b)
                st.submitted = issued
            if events:
                done += self._completed(slot, win, st, events)
                st.tail = tail
                win.control[LOG_TAIL] = tail
                self._free(win, st)
        self.folded += done
        return done

    def backlog(self):
        """Completion events logged and not folded yet (all windows)."""
        return sum(win.control[LOG_HEAD] - st.tail for win, st in zip(self.windows, self.state))

    def _free(self, win, st):
        """Advance FREED over the completed slots."""
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

    def _submitted(self, win, a, b):
        """Fold the submissions of slots a .. b - 1."""
        n = b - a
        if win.ordered:
            for key, count in Counter(zip(win.target[a:b], win.depth[a:b])).items():
                self.depths.setdefault(key[0], Counter())[key[1]] += count
        subs = win.submit[a:b]
        it, thr = self.iteration, self.late_threshold
        late = None  # IOs later than the threshold, when counted on the lanes (one group, none sent early)
        bias = 0
        if self.never_early:
            late_lanes = lanes.lanes(subs) - lanes.lanes(win.due[a:b])
        else:  # biased by 2^62, every lane stays in 0 .. 2^63 - 1: those below the bias were sent early
            bias = _BIAS
            late_lanes = lanes.lanes(subs) + lanes.repeat(bias, n) - lanes.lanes(win.due[a:b])
            if lanes.above(late_lanes, bias - 1, n) == n:
                late_lanes -= lanes.repeat(bias, n)
                bias = 0
        lates = list(map(sub, subs, win.due[a:b])) if bias else lanes.column(late_lanes, n).tolist()
        if len(win.kinds) == 1 and thr >= 0:
            late = lanes.above(late_lanes, thr + bias, n)
        subs = subs.tolist()
        nbs = win.field(W_NBYTES)[a:b]
        offset = self.start_ns - self.first_start
        if self.first_submit is None or it == 1 and self.start_ns + subs[0] < self.first_submit:
            self.first_submit = self.start_ns + subs[0]
        if len(win.kinds) == 1:
            ((target, op),) = win.kinds
            groups = [(target, op, None)]
        else:
            ops, tgts = win.op[a:b].tobytes(), win.target[a:b].tolist()
            if min(tgts) == max(tgts):
                kinds = set(ops)
                groups = [(tgts[0], op, ops.translate(_pick(op)) if len(kinds) > 1 else None) for op in kinds]
            else:
                keys = list(zip(tgts, ops))
                groups = [(t, op, [k == (t, op) for k in keys]) for t, op in set(keys)]
        for target, op, pick in groups:
            g_subs, g_lates, g_nbs = (subs, lates, nbs) if pick is None else (
                list(compress(subs, pick)), list(compress(lates, pick)), list(compress(nbs, pick)))
            self.summary(it, target).submitted(it, op, len(g_subs), sum(g_nbs), g_lates, g_subs[0],
                                               sum(map(thr.__lt__, g_lates)) if late is None else late)
            self.timeline.submitted((target, op), offset, g_subs, g_nbs, g_lates)

    def _completed(self, slot, win, st, events):
        """Fold completion ``events`` (4 words each: index, completion time, result, 0) of one window at once."""
        ks, ends, res = events[0::4], events[1::4], events[2::4]
        if lanes.negative(ks):  # a probe's event (data 2^64 - 1): not an IO
            keep = [x for x, k in enumerate(ks) if k >= 0]
            ks, res, ends = (array("q", map(c.__getitem__, keep)) for c in (ks, res, ends))
            if not ks:
                return 0
        n = len(ks)
        rs = lanes.column(lanes.lanes(ks) & lanes.repeat(win.mask, n), n)  # slots: indexes are >= 0
        gather = lanes.gather(rs)
        subs = array("q", gather(win.submit))
        if len(win.kinds) == 1:
            ((tgt, op),) = win.kinds
            tgts, ops = [tgt], [op]
        else:
            tgts = list(gather(win.target))
            ops = list(gather(win.op))
        lats = lanes.column(lanes.lanes(ends) - lanes.lanes(subs), n)  # a completion is stamped after its submit
        flags = st.flags
        for r in rs:
            flags[r] = 1
        it, start = self.iteration, self.start_ns
        last = max(ends)
        if self.last_completion is None or start + last > self.last_completion:
            self.last_completion = start + last
        # reads and writes return their size; flushes, discards and write-zeroes 0
        nbs = None
        if win.one_size and max(ops) <= WRITE:  # every IO of the window is of one size: no gather to check them
            if res.count(win.one_size) != n:
                nbs = [win.one_size] * n
                self._errors(win, rs, res, nbs, tgts, ops, nbs)
        else:
            nbs = list(gather(win.field(W_NBYTES)))
            if max(ops) <= WRITE:
                expect = nbs
            elif len(ops) == 1:
                expect = [0] * n
            else:
                expect = [b if op <= WRITE else 0 for b, op in zip(nbs, ops)]
            if res.tolist() != expect:
                self._errors(win, rs, res, expect, tgts, ops, nbs)
        offset = start - self.first_start
        if len(tgts) == 1 or min(tgts) == max(tgts) and min(ops) == max(ops):
            self.summary(it, tgts[0]).completed(it, ops[0], lats, last)
            self.timeline.completed((tgts[0], ops[0]), offset, subs, lats, ends, last)
        elif min(tgts) == max(tgts):  # one target, several ops (reads and writes): a mask per op, at C speed
            kinds = bytes(ops)
            for op in set(kinds):
                pick = kinds.translate(_pick(op))
                g_lats, g_ends = list(compress(lats, pick)), list(compress(ends, pick))
                self.summary(it, tgts[0]).completed(it, op, g_lats, max(g_ends))
                self.timeline.completed((tgts[0], op), offset, list(compress(subs, pick)), g_lats, g_ends)
        else:
            groups = {}
            for x, key in enumerate(zip(tgts, ops)):
                groups.setdefault(key, []).append(x)
            for (target, op), xs in groups.items():
                g_subs, g_lats, g_ends = [subs[x] for x in xs], [lats[x] for x in xs], [ends[x] for x in xs]
                self.summary(it, target).completed(it, op, g_lats, max(g_ends))
                self.timeline.completed((target, op), offset, g_subs, g_lats, g_ends)
        if self.iolog is not None:
            if nbs is None:
                nbs = list(gather(win.field(W_NBYTES)))
            offsets = list(gather(win.field(W_OFFSET)))
            lates = list(map(sub, subs, gather(win.due)))
            if len(tgts) == 1 < n:
                tgts, ops = tgts * n, ops * n
            self.iolog.write_block(it, slot, start, [subs, lates, lats, res, offsets, nbs, tgts, ops])
        return n

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

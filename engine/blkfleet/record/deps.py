"""What each IO of a capture with completions waited for: its latency, the IOs in flight when it was issued, and its
parents in the dependency graph, found at record time from issue and completion times (version 2 replay files).

The Q and C events of all CPU files of a device are read merged in time order; every C is paired with the Qs it
completes (``trace.matching``, empty flushes included). Each IO gets:

* ``seq``: its number among the device's IOs in that order (the CPU files share the numbering);
* ``inflight``: the IOs of the device queued and not completed when it was queued, itself included;
* ``latency``: its completion time less its issue time (unknown when no completion was recorded);
* parents, by hfplayer's rule (Haghdoost et al., "On the Accuracy and Scalability of Intensive I/O Workload
  Replay", FAST '17, and its dependency analyser): the IOs that completed within ``window`` before it was issued,
  but not within ``min_gap`` of it (too close to have caused it), latest first; a candidate that is already a
  parent of a parent taken is left out (the edge is implied), and at most ``max_parents`` are taken. When none
  completed within the window, the latest IO that completed before it is its parent (hfplayer keeps one entry in
  its search space for the same reason: an IO after an idle gap follows the last completion). hfplayer's cap is
  the largest in-flight count seen plus one; here it is a parameter;
* conflicts, whatever the window: an earlier IO whose extent overlaps its own, one of the two writing (a write,
  discard or write-zeroes), is a parent too, so that the replay keeps their order: a completion parent when it had
  completed before this IO was issued, else an issue parent (this IO goes out after that one went out). Earlier
  IOs are searched for conflicts when issued less than ``conflict_window`` before, or still in flight;
* ``think``: its issue time less the completion time of its latest completion parent (0 without one).

Memory holds the IOs in flight, those completed within the window (and the latest one before it), those issued
within the conflict window, and per CPU file the IOs not yet written because an earlier one of that file still
waits for its completion (at most ``MAX_WAITING``; then the oldest is written with its latency unknown). None of
that grows with the trace's length. What every CPU file's IOs get is written to two scratch files (fixed-size
records, then the parents), which the converter reads alongside the trace (``TimingSource``).
"""

import os
from collections import deque, namedtuple
from heapq import merge
from itertools import accumulate, repeat

from ..errors import BlkfleetError
from ..files import create_new
from ..replayfile.native import MAX_DEPS, TIMING, encode_timing
from ..replayfile.ops import DISCARD, WRITE, WRITE_ZEROES, classify
from ..replayfile.reader import DEP_AFTER_ISSUE, DEP_DISTANCE
from ..trace.actions import C_FLUSH, C_WRITE, is_complete, is_queue
from ..trace.matching import Matcher
from ..trace.reader import TraceReader

MAX_WAITING = 1 << 16  # IOs of one CPU file held back by an earlier one that has not completed
MAX_PENDING = 1 << 16  # IOs in flight at most: beyond, the oldest are taken as never completed
CHUNK_SHIFT = 4  # conflicts are indexed by 8 KiB regions (2^4 sectors): a few recent IOs each
WIDE = 1024  # an IO over more regions than this (8 MiB) is kept on a list every IO checks
WRITES = frozenset((WRITE, DISCARD, WRITE_ZEROES))
_Q, _C = 0, 1
_OWN_FLUSH = C_FLUSH | C_WRITE


SCOPES = ("device", "task")


class DepOptions(namedtuple("DepOptions", "window min_gap max_parents conflict_window scope",
                            defaults=(1_000_000, 1_000, 8, 1_000_000_000, "device"))):
    """The dependency rule's parameters (ns, ns, count, ns, scope): ``--dep-window``, ``--dep-min-gap``,
    ``--dep-max-parents``, ``--conflict-window``, ``--dep-scope`` of ``blkfleet record``. Scope ``device``
    (hfplayer's rule) takes completion parents among all IOs of the device; ``task`` only among those the same
    task (pid) submitted: independent threads or processes then stay independent, but a task that waits for
    another's IO (a commit waiting for a log writer) is not seen to. Conflicts are device-wide in both."""

    __slots__ = ()

    def checked(self):
        if not 0 <= self.min_gap <= self.window:
            raise BlkfleetError(f"invalid dependency gap {self.min_gap} ns (0 .. the window, {self.window} ns)")
        if not 1 <= self.max_parents <= MAX_DEPS // 2:
            raise BlkfleetError(f"invalid parent count {self.max_parents} (1..{MAX_DEPS // 2})")
        if self.scope not in SCOPES:
            raise BlkfleetError(f"invalid dependency scope {self.scope!r} ({', '.join(SCOPES)})")
        return self

    def as_dict(self):
        return {"dep_window_ns": self.window, "dep_min_gap_ns": self.min_gap, "dep_max_parents": self.max_parents,
                "conflict_window_ns": self.conflict_window, "dep_scope": self.scope}


class _IO:
    """One queued IO while it matters: @seq, @time (issue), @done (completion time, None while in flight),
    @parents (the seqs of its completion parents: what an IO after it may skip), @file (its CPU file's index),
    @row (seq, think, inflight, deps: what is written of it), @lost (its completion will not be waited for), @pid
    (the task that submitted it)."""

    __slots__ = ("seq", "time", "done", "parents", "file", "row", "lost", "pid")

    def __init__(self, seq, time, file, pid=0):
        self.seq, self.time, self.file, self.pid = seq, time, file, pid
        self.done = None
        self.parents = ()
        self.row = None
        self.lost = False


def _events(path, index):
    """(time, file index, kind, sector, bytes, action, pid) of every Q and C event of a trace file, in file order; the C
    of a flush request the kernel made itself (op flush: the flush category without the write one, no data) is
    left out: it completes nothing that was queued, and its sector (0) would match a queued empty flush early."""
    with TraceReader(path) as reader:
        for rec in reader:
            action = rec.action
            if is_queue(action):
                yield rec.time, index, _Q, rec.sector, rec.bytes, action, rec.pid
            elif is_complete(action) and (rec.bytes or action & _OWN_FLUSH != C_FLUSH):
                yield rec.time, index, _C, rec.sector, rec.bytes, action, rec.pid


class Extents:
    """Recent IOs by the 8 KiB regions they touch, to find conflicts: @regions {region: [entry, ...]}, entries
    [io, start, end, writes] (sectors, end excluded); @wide: entries over more than WIDE regions; @order: (issue
    time, region) as entries were added, to forget them after the conflict window."""

    def __init__(self, window):
        self.window = window
        self.regions = {}
        self.wide = []
        self.order = deque()

    def conflicts(self, io, start, end, writes):
        """The earlier IOs that conflict with ``io`` (``start``..``end`` sectors; ``writes``: it writes), then it
        is remembered."""
        found = {}
        first, last = start >> CHUNK_SHIFT, (end - 1) >> CHUNK_SHIFT
        regions = self.regions
        if last - first <= len(regions):
            lists = [regions.get(r) for r in range(first, last + 1)]
        else:
            lists = [v for r, v in regions.items() if first <= r <= last]
        for entries in lists + [self.wide]:
            for other, s, e, w in entries or ():
                if s < end and start < e and (writes or w):
                    found[other.seq] = other
        entry = [io, start, end, writes]
        if last - first >= WIDE:
            self.wide.append(entry)
            self.order.append((io.time, None))
        else:
            for r in range(first, last + 1):
                entries = regions.get(r)
                if entries is None:
                    regions[r] = [entry]
                else:
                    if writes:  # what this write covers is ordered through it from now on
                        entries[:] = [x for x in entries if not (start <= x[1] and x[2] <= end)]
                    entries.append(entry)
                self.order.append((io.time, r))
        self._expire(io.time - self.window)
        return found.values()

    def _expire(self, before):
        """Forget entries issued before ``before`` that have completed (those in flight stay while they are). A
        region's entries are in issue order, so the expired ones are at its front: no list is walked whole."""
        order, regions = self.order, self.regions
        while order and order[0][0] < before:
            _t, r = order.popleft()
            entries = self.wide if r is None else regions.get(r)
            if not entries:
                continue
            k, n = 0, len(entries)
            while k < n and entries[k][0].time < before and entries[k][0].done is not None:
                k += 1
            if k:
                del entries[:k]
            if not entries and r is not None:
                del regions[r]


class _Output:
    """One CPU file's IOs waiting to be written in order, and its two scratch files."""

    def __init__(self, directory, index):
        self.waiting = deque()
        self.paths = (os.path.join(directory, f"{index}.timing"), os.path.join(directory, f"{index}.deps"))
        self.files = [os.fdopen(create_new(p, 0o600), "wb", buffering=1 << 16) for p in self.paths]
        self.ios = self.unknown = 0

    def flush(self, force=False):
        """Write the IOs at the front whose completion is known (``force``: all of them)."""
        waiting = self.waiting
        rows = []
        while waiting and (force or waiting[0].done is not None or waiting[0].lost or len(waiting) > MAX_WAITING):
            io = waiting.popleft()
            seq, think, inflight, deps = io.row
            io.row = None  # written: the IO may stay in the conflict index a while, its row need not
            latency = None if io.done is None else io.done - io.time
            self.unknown += latency is None
            rows.append((seq, think, latency, inflight, deps))
        if rows:
            self.ios += len(rows)
            ext = encode_timing(rows)
            fixed = TIMING.size * len(rows)
            self.files[0].write(ext[:fixed])
            ndeps = sum(len(r[4]) for r in rows)
            self.files[1].write(ext[fixed:fixed + 4 * ndeps])

    def close(self):
        for f in self.files:
            f.close()


def analyse(paths, directory, opts):
    """Read the Q and C events of one device's CPU files (``paths``), write each file's timing into scratch files in
    ``directory``; returns ({file index: TimingSource}, summary dict)."""
    opts = opts.checked()
    outputs = [_Output(directory, k) for k in range(len(paths))]
    matcher = Matcher(empty=True, limit=MAX_PENDING)
    extents = Extents(opts.conflict_window)
    recent = deque()  # IOs in completion order: the latest one before the window, then those after it
    task = opts.scope == "task"
    last_of = {}  # scope task: pid -> the latest IO of that task that completed
    seq = 0
    stats = {"ios": 0, "completed": 0, "with_parents": 0, "parents": 0, "conflict_parents": 0,
             "issue_parents": 0, "unmatched_completions": 0, "max_inflight": 0, "truncated": 0}
    window, min_gap, cap = opts.window, opts.min_gap, opts.max_parents
    try:
        for time, index, kind, sector, nbytes, action, pid in merge(*(_events(p, k) for k, p in enumerate(paths))):
            if kind == _C:
                for io in matcher.completed(sector, nbytes):
                    io.done = time
                    recent.append(io)
                    if task:
                        last_of[io.pid] = io
                    stats["completed"] += 1
                    outputs[io.file].flush()
                continue
            io = _IO(seq, time, index, pid)
            seq += 1
            inflight = matcher.in_flight + 1
            stats["max_inflight"] = max(stats["max_inflight"], inflight)
            lo, hi = time - window, time - min_gap
            while len(recent) > 1 and recent[1].done < lo:
                recent.popleft()
            chosen, covered = [], set()
            for other in reversed(recent):
                if other.done > hi or task and other.pid != pid:
                    continue
                if other.done < lo and chosen:
                    break
                if other.seq in covered:
                    continue
                chosen.append(other)
                covered.update(other.parents)
                if len(chosen) >= cap or other.done < lo:
                    break
            if task and not chosen:  # none of its task within the window: the task's latest completion
                other = last_of.get(pid)
                if other is not None and other.done <= hi:
                    chosen.append(other)
            deps = [io.seq - p.seq for p in chosen]
            near = len(deps)
            latest = max((p.done for p in chosen), default=None)
            op = classify(action, nbytes)[0]
            if nbytes:
                taken = {p.seq for p in chosen}
                for other in extents.conflicts(io, sector, sector + ((nbytes + 511) >> 9), op in WRITES):
                    if other.seq in taken:
                        continue
                    stats["conflict_parents"] += 1
                    if other.done is None:
                        deps.append((io.seq - other.seq) | DEP_AFTER_ISSUE)
                        stats["issue_parents"] += 1
                    else:
                        deps.append(io.seq - other.seq)
                        chosen.append(other)
                        latest = other.done if latest is None else max(latest, other.done)
            if len(deps) > MAX_DEPS:  # conflicts beyond the format's limit: the nearest ones are kept
                deps = deps[:near] + sorted(deps[near:], key=DEP_DISTANCE.__and__)[:MAX_DEPS - near]
                stats["truncated"] += 1
            io.parents = tuple(p.seq for p in chosen)
            io.row = (io.seq, 0 if latest is None else time - latest, inflight, deps)
            stats["with_parents"] += bool(deps)
            stats["parents"] += len(deps)
            for gone in matcher.queued(sector, nbytes, io):
                gone.lost = True
                outputs[gone.file].flush()
            outputs[index].waiting.append(io)
            outputs[index].flush()
        for out in outputs:
            out.flush(force=True)
    finally:
        for out in outputs:
            out.close()
    stats["ios"] = seq
    stats["unmatched_completions"] = matcher.unmatched
    stats["unknown_latency"] = sum(o.unknown for o in outputs)
    return {k: TimingSource(*o.paths, o.ios, o.unknown) for k, o in enumerate(outputs)}, stats


class TimingSource:
    """One CPU file's timing as ``analyse`` wrote it, read in step with the converter: ``take(bounds)`` gives the
    bunch extensions of its next IOs."""

    def __init__(self, fixed_path, deps_path, ios, unknown=0):
        self.fixed = open(fixed_path, "rb")
        self.deps = open(deps_path, "rb")
        self.ios = ios
        self.unknown = unknown  # of its IOs, those whose completion was not recorded
        self.taken = 0

    def take(self, bounds):
        """The extensions of the bunches that start at ``bounds`` (then the end of the last), for the next
        ``bounds[-1]`` IOs of the file."""
        n = bounds[-1]
        size = TIMING.size
        fixed = self.fixed.read(size * n)
        if len(fixed) != size * n:
            raise BlkfleetError(f"{self.fixed.name}: {self.taken + len(fixed) // size} IOs of timing for "
                                f"{self.taken + n} IOs (the trace changed while it was converted?)")
        self.taken += n
        ndeps = map(int.__or__, fixed[24::size], map(int.__lshift__, fixed[25::size], repeat(8)))  # u16 at 24
        at = [0, *accumulate(ndeps)]
        deps = self.deps.read(4 * at[-1])
        exts = []
        for a, b in zip(bounds, bounds[1:]):
            tail = deps[4 * at[a]:4 * at[b]]
            exts.append(fixed[size * a:size * b] + tail + bytes(-len(tail) % 8))
        return exts

    def close(self):
        self.fixed.close()
        self.deps.close()

    def finish(self):
        """Check every IO's timing was used, then close."""
        left = self.fixed.read(1)
        self.close()
        if left or self.taken != self.ios:
            raise BlkfleetError(f"{self.fixed.name}: timing of {self.ios} IOs for {self.taken} converted")

"""The feeder: reads the replay files while the replay runs and keeps every worker's window filled ahead.

Each worker slot replays the streams (replay files) of the recorded CPUs that map onto it (CPU mod workers, as
btreplay does), merged in time order (equal times: the streams' order, then file order). A btrecord file whose
time steps back keeps its order: an IO timed before the one ahead of it is due with it, as btreplay issues it
at once (``Source`` keeps a running maximum of the times). Every IO is due at ``(time - genesis) / acc`` ns
after its iteration's start, ``genesis`` being the earliest first IO of all files.

The feeder runs in the parent, between the checks of its supervision loop: ``pump`` writes, per window, the IOs
due up to ``WINDOW_NS`` ahead of the worker's time, as far as the free slots go (the collector frees them),
a bounded amount of work per call. Per chunk of IOs it does column work only (translate tables, 64-bit lanes,
one sort to merge streams and one ``itemgetter`` to gather every column in that order), about 0.4 µs per IO
from one stream, 0.7 µs with two merged into one window (``bench/feed_bench.py``). Every IO is checked against
its target (aligned to its logical block size, within its size) before it enters a window; with -W a write-type
IO needs a target that passed the write checks. Discards, flushes and write-zeroes without -W are counted as
skipped and never enter a window.

The parent shares its CPU with the kernel threads that finish the workers' IOs (a loop device's, the softirq
thread). Once one of them is preempted there, the scheduler may hand the CPU back to the parent and keep it
waiting until the next tick (4 ms at HZ=250): the device then completes nothing while the worker waits for it.
So a timed pump whose window is more than ``SHARE_LEAD_NS`` ahead writes ``SHARE_IOS`` IOs at a time and offers
its CPU (``sched_yield``: a no-op when nothing else is ready there) between them; with less lead it does not
(the window must not run dry). The collector folds completions the same way (``run``).
"""

import os
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from functools import reduce
from itertools import accumulate, chain, repeat
from operator import add, lshift, or_, sub

from ..errors import BlkfleetError, TraceFormatError
from ..names import check_name
from ..percpu import find_devices, find_per_cpu
from ..replayfile import open_replay
from ..replayfile.ops import DISCARD, F_FUA, F_PREFLUSH, FLUSH, READ, WRITE, WRITE_ZEROES
from ..replayfile.reader import DEP_AFTER_ISSUE, DEP_DISTANCE
from . import lanes
from .ioengines.base import RWF_DSYNC
from .window import (
    CMD_FDSYNC,
    CMD_PREAD,
    CMD_PWRITE,
    CMD_SPECIAL,
    END,
    FED,
    FREED,
    IOCB_WORDS,
    ISSUED,
    LEAD,
    NOT_YET,
    PARENTS,
    SPECIALS,
    W_BUF,
    W_DATA,
    W_NBYTES,
    W_OFFSET,
    W_OP_FD,
    W_RW_FLAGS,
    WINDOW_NS,
)

SKIP = 0xFF  # issued op of an IO that is not replayed (without -W: discard, flush, write-zeroes)
NO_LIMIT = 0xFFFFFFFF  # load mode's limit of an IO whose recorded in-flight count is 0 (not known): none
LATEST = NOT_YET - 1  # a due or think time that -x below 1 stretches beyond 2^63 ns is this (never reached)
PUMP_IOS = 16384  # IOs one pump writes into one window at most (bounds the time a pump takes: ~20 ms)
PUMP_GROW = 2048  # IOs a pump writes beyond what the worker took since the last one (the window fills up)
SHARE_IOS = 256  # IOs the parent feeds or folds between offers of its CPU (about 0.2-0.4 ms of work)
SHARE_LEAD_NS = 100_000_000  # a window this far ahead of its worker can wait while the CPU is offered
_CMD = {READ: CMD_PREAD, WRITE: CMD_PWRITE, FLUSH: CMD_FDSYNC, DISCARD: CMD_SPECIAL, WRITE_ZEROES: CMD_SPECIAL}
_KEY_BITS = 22  # merge keys: time offset << 22 | position among the IOs being merged


class Source:
    """One replay file, read a chunk (replayfile.IOChunk: the columns of a block of the file) at a time:
    @device, @cpu, @path, @format ("native" or "btrecord"), @target (index, set by the caller); the IOs read and
    not yet taken: @times (a running maximum: the due order), @sectors, @nbytes, @ops, @flags from @pos on;
    @eof once the file is read to its end."""

    def __init__(self, device, cpu, path, timing=False):
        self.device, self.cpu, self.path = device, cpu, path
        self.target = None
        self.format = None
        self.reader = None
        self.timing = timing  # keep each IO's recorded timing (the load and dependency modes)
        self.timed = False  # @rows: (seq, in flight, think, its parents as stored, nearest first) per IO
        self.rewind()

    def rewind(self):
        """From the first IO again (the next iteration)."""
        self.close()
        self.reader = open_replay(self.path, self.timing)
        self.format = self.reader.kind
        self.timed = self.timing and getattr(self.reader, "timing", False)  # a version 1 file has none
        self._chunks = self.reader.chunks()
        self.times, self.sectors, self.nbytes = array("q"), array("q"), array("q")
        self.ops = self.flags = b""
        self.rows = [] if self.timed else None
        self.pos = 0
        self.eof = False
        self._latest = None  # the running maximum of the times read so far

    def close(self):
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def __len__(self):
        return len(self.times) - self.pos

    def more(self):
        """Read the next chunk (dropping what was taken); False at the end of the file."""
        if self.eof:
            return False
        chunk = next(self._chunks, None)
        if chunk is None:
            self.eof = True
            self.close()
            return False
        times = chunk.times
        if len(times) and (self._latest is not None and times[0] < self._latest or not lanes.ascending(times)):
            if self.format == "native":
                raise TraceFormatError(self.path, 0, "IO times go backwards")
            first = times[0] if self._latest is None else self._latest
            times = array("q", accumulate(chain((first,), times), max))[1:]
        if len(times):
            self._latest = times[-1]
        if self.pos:
            del self.times[:self.pos], self.sectors[:self.pos], self.nbytes[:self.pos]
            self.ops, self.flags = self.ops[self.pos:], self.flags[self.pos:]
            if self.rows is not None:
                del self.rows[:self.pos]
            self.pos = 0
        self.times += times
        self.sectors += chunk.sectors
        self.nbytes += chunk.nbytes
        self.ops += chunk.ops
        self.flags += chunk.flags
        if self.rows is not None:
            t = chunk.timing
            self.rows += zip(t.seqs, t.inflight, t.thinks, t.stored_parents())
        return True

    def first_time(self):
        """The time of the next IO not taken (reading as needed), or None at the end."""
        while not len(self) and self.more():
            pass
        return self.times[self.pos] if len(self) else None

    def read_until(self, time, most):
        """Read until an IO after ``time`` is buffered, the end, or ``most`` IOs are buffered."""
        while not self.eof and len(self) < most and (not len(self) or self.times[-1] <= time):
            self.more()

    def take(self, count):
        """(times, sectors, nbytes, ops, flags, timing rows or None) of the next ``count`` IOs."""
        a, b = self.pos, self.pos + count
        self.pos = b
        return (self.times[a:b], self.sectors[a:b], self.nbytes[a:b], self.ops[a:b], self.flags[a:b],
                None if self.rows is None else self.rows[a:b])


def open_sources(directory, devices, base="replay", find=False, timing=False):
    """A Source per non-empty replay file of the devices (``-F``: every device with ``*.BASE.*`` files);
    ``timing``: they keep the IOs' recorded timing (``Source.timed``)."""
    names = list(dict.fromkeys(devices))
    if find:
        names += [d for d in find_devices(directory, base) if d not in names]
    if not names:
        raise BlkfleetError("no device given (name devices, or use -F to find replay files)")
    sources = []
    try:
        for dev in names:
            check_name(dev, "recorded device name")
            for cpu, path in enumerate(find_per_cpu(directory, dev, base)):
                source = Source(dev, cpu, path, timing)
                if source.first_time() is None:
                    source.close()
                else:
                    sources.append(source)
    except BaseException:
        for source in sources:
            source.close()
        raise
    if not sources:
        raise BlkfleetError(f"{directory}: the replay files of {', '.join(names)} hold no IO")
    return sources


def merge(sources, counts, most, with_flags=False):
    """The first ``most`` of the next ``counts[i]`` IOs of each source (their times ascending) in due order (ties:
    source order, then file order), taken from the sources: (times, sectors, nbytes, ops, flags, target per
    IO, timing rows); ``flags`` is None unless ``with_flags``, ``target`` an int when all are of one target,
    the timing rows None unless the sources keep them (``Source.timed``)."""
    if len(sources) == 1:
        source = sources[0]
        times, sectors, nbytes, ops, flags, rows = source.take(min(counts[0], most))
        return times, sectors, nbytes, ops, flags if with_flags else None, source.target, rows
    times, sectors, nbytes = array("q"), array("q"), array("q")
    ops, flags = b"", b""
    rows = [] if sources[0].rows is not None else None
    starts = [0]
    for s, c in zip(sources, counts):
        a, b = s.pos, s.pos + c
        times += s.times[a:b]
        sectors += s.sectors[a:b]
        nbytes += s.nbytes[a:b]
        ops += s.ops[a:b]
        if with_flags:
            flags += s.flags[a:b]
        if rows is not None:
            rows += s.rows[a:b]
        starts.append(len(times))
    n = len(times)
    base = min(s.times[s.pos] for s in sources)  # each source's IOs are in ascending order
    span_ok = max(s.times[s.pos + c - 1] for s, c in zip(sources, counts)) - base < 1 << (63 - _KEY_BITS)
    # keys: (time - base) << 22 | position, each below 2^63 while the times span less than 2^41 ns (36 min)
    if span_ok:
        keys = lanes.column(((lanes.lanes(times) - lanes.repeat(base, n)) << _KEY_BITS) + lanes.indexes(n), n)
    else:
        keys = array("q", map(or_, map(lshift, map(sub, times, repeat(base)), repeat(_KEY_BITS)), range(n)))
    keys = array("q", sorted(keys)[:most])
    m = len(keys)
    if span_ok:  # the positions and the times, back out of the sorted keys as lanes
        order = lanes.column(lanes.lanes(keys) & lanes.repeat((1 << _KEY_BITS) - 1, m), m)
        merged = lanes.column(((lanes.lanes(keys) >> _KEY_BITS) & lanes.repeat((1 << (64 - _KEY_BITS)) - 1, m))
                              + lanes.repeat(base, m), m)
    else:
        order = array("q", [k & ((1 << _KEY_BITS) - 1) for k in keys])
        merged = array("q", map(times.__getitem__, order))
    if m < n:  # each source gives up its IOs among the first ``most``
        taken = sorted(order)
        for s, a, b in zip(sources, starts, starts[1:]):
            s.pos += bisect_left(taken, b) - bisect_left(taken, a)
    else:
        for s, c in zip(sources, counts):
            s.pos += c
    pick = lanes.gather(order)
    targets = {s.target for s in sources}
    if len(targets) == 1:
        target = targets.pop()
    else:
        per = array("H")
        for s, a, b in zip(sources, starts, starts[1:]):
            per += array("H", [s.target]) * (b - a)
        target = array("H", pick(per))
    return (merged, array("q", pick(sectors)), array("q", pick(nbytes)), bytes(pick(ops)),
            bytes(pick(flags)) if with_flags else None, target, None if rows is None else list(pick(rows)))


class Lane:
    """What the feeder keeps for one worker slot: @slot, @sources (its streams, in stream order), @window,
    @next (absolute index of the next IO to write), @ended (the iteration's last IO is written), @skipped
    (target, planned op) -> IOs not replayed, counted until the collector takes them, @largest_read and
    @largest_write (bytes), @ios (IOs written in the current iteration)."""

    def __init__(self, slot, sources, window):
        self.slot, self.sources, self.window = slot, sources, window
        self.next = 0
        self.ended = False
        self.skipped = Counter()
        self.taken = 0  # the worker's ISSUED at the last pump
        self.kinds = window.kinds  # (target, op) of the IOs written (the collector's fast path: only one)
        self.largest_read = self.largest_write = 0
        self.ios = 0

    @property
    def streams(self):
        return [f"{s.device}.{s.cpu}" for s in self.sources]


class Feeder:
    """Keeps the lanes' windows filled (see the module docstring). ``targets``: the opened Targets (fd, size,
    block_size, path, recorded), indexed like the sources' ``target``."""

    def __init__(self, lanes, genesis, acc, targets, write_enable, no_stall, mode="timed"):
        self.lanes = lanes
        self.genesis, self.acc = genesis, acc
        self.mode = mode
        # load and dependency modes: per target, {recorded seq: absolute index} of its latest IOs written (a
        # parent is found there; one farther back has left the window, so it completed) and their order
        self.index_of = [{} for _t in targets]
        self.indexed = [deque() for _t in targets]
        self.recorded_depths = [Counter() for _t in targets]  # recorded IOs in flight at each IO written
        self.targets = targets
        self.write_enable = write_enable
        self.no_stall = no_stall
        table = bytearray(range(256))
        if not write_enable:
            table[WRITE] = READ
            for op in (DISCARD, FLUSH, WRITE_ZEROES):
                table[op] = SKIP
        self.op_table = bytes(table)

    # -- iterations ---------------------------------------------------------------------------------------------

    def start_iteration(self, first):
        """Make ready for an iteration; ``first``: it is the first (the sources are already open)."""
        for index, order in zip(self.index_of, self.indexed):
            index.clear()
            order.clear()
        for lane in self.lanes:
            if not first:
                for s in lane.sources:
                    s.rewind()
            lane.ended = False
            lane.ios = 0
            lane.window.control[END] = NOT_YET

    def pump(self, now_ns, budget=None):
        """Fill every window with the IOs due up to ``now_ns + WINDOW_NS`` (``now_ns``: ns after the iteration's
        start; before it, 0); returns the IOs written. At most ``budget`` IOs each; by default about what its
        worker took since the last pump, and PUMP_GROW more: the work comes in a steady trickle, not in bursts
        that would take the CPU from the kernel threads finishing the workers' IOs."""
        written = 0
        for lane in self.lanes:
            if not lane.ended:
                most = budget
                if most is None:
                    taken = lane.window.control[ISSUED]
                    most = min(PUMP_IOS, taken - lane.taken + PUMP_GROW)
                    lane.taken = taken
                # -N, load and dependency modes: the replay may run ahead of the recorded times, so the window
                # is filled as far as its slots go, whatever the IOs' times
                ahead = self.no_stall or self.mode != "timed"
                share = not ahead and lane.window.control[LEAD] - now_ns > SHARE_LEAD_NS
                written += self._fill(lane, None if ahead else now_ns + WINDOW_NS, most, share)
        return written

    # -- one window -----------------------------------------------------------------------------------------------

    def _fill(self, lane, until_due, budget, share=False):
        """``share``: write SHARE_IOS IOs at a time and offer the CPU between them."""
        win = lane.window
        ctl = win.control
        written = 0
        step = SHARE_IOS if share else budget
        while written < budget:
            free = win.capacity - (lane.next - ctl[FREED])
            if free <= 0:
                break
            if written and share:
                os.sched_yield()
            bound = None if until_due is None else self.genesis + int(until_due * self.acc)
            got = self._take(lane, bound, min(free, budget - written, step))
            if got is None:  # every source is at its end (END first: a worker that sees the new lead sees it)
                ctl[END] = lane.next
                ctl[LEAD] = NOT_YET
                lane.ended = True
                break
            if not got:
                break
            written += got
        if not lane.ended:
            ctl[LEAD] = self._lead(lane, until_due)
        return written

    def _lead(self, lane, until_due):
        """The due time up to which the window holds every IO of the iteration (ns after its start)."""
        nexts = [s.times[s.pos] for s in lane.sources if len(s)]
        if any(not len(s) and not s.eof for s in lane.sources):
            return -1  # a source not read ahead: nothing beyond what was written is known
        if not nexts:
            return NOT_YET
        due = self._due_of(min(nexts))
        return due - 1 if until_due is None else min(due - 1, until_due)

    def _due_of(self, t):
        return t - self.genesis if self.acc == 1 else min(int((t - self.genesis) / self.acc), LATEST)

    def _take(self, lane, bound, most):
        """Write up to ``most`` IOs with times up to ``bound`` (None: any); the count written (0: none due
        yet), or None when every source is at its end."""
        live = []
        for s in lane.sources:
            s.read_until(NOT_YET if bound is None else bound, most)
            if len(s):
                live.append(s)
        if not live:
            return None
        # IOs that may go now: up to the bound, and not beyond what every unfinished source has read (an IO of
        # a source read less far could come before them).
        limit = NOT_YET if bound is None else bound
        if len(live) > 1:
            for s in live:
                if not s.eof:  # its unread IOs are due no earlier than its last one read
                    limit = min(limit, s.times[-1] - 1)
        counts = [min(bisect_right(s.times, limit, s.pos) - s.pos, most) for s in live]
        if not sum(counts):
            return 0
        if sum(counts) > most and len(live) > 1:  # about ``most`` in all: the time that many IOs reach
            lo = min(s.times[s.pos] for s, c in zip(live, counts) if c)
            hi = max(s.times[s.pos + c - 1] for s, c in zip(live, counts) if c)
            while lo < hi:
                mid = (lo + hi) // 2
                if sum(bisect_right(s.times, mid, s.pos, s.pos + c) - s.pos for s, c in zip(live, counts)) >= most:
                    hi = mid
                else:
                    lo = mid + 1
            counts = [bisect_right(s.times, lo, s.pos, s.pos + c) - s.pos for s, c in zip(live, counts)]
        taken = [(s, c) for s, c in zip(live, counts) if c]
        cols = merge([s for s, _c in taken], [c for _s, c in taken], most, self.write_enable)
        self._write(lane, *cols)
        return len(cols[0])

    def _write(self, lane, times, sectors, nbytes, ops, flags, tgt, rows=None):
        """Write IOs (columns in due order; ``tgt``: an int when all go to one target; ``rows``: their recorded
        timing, in the load and dependency modes) into the lane's window."""
        issued = ops.translate(self.op_table)
        if SKIP in issued:
            keep = [i for i, o in enumerate(issued) if o != SKIP]
            single = isinstance(tgt, int)
            lane.skipped.update((tgt if single else tgt[i], ops[i]) for i, o in enumerate(issued) if o == SKIP)
            if not keep:
                return
            times, sectors, nbytes = (array("q", map(c.__getitem__, keep)) for c in (times, sectors, nbytes))
            issued = bytes(map(issued.__getitem__, keep))
            flags = None if flags is None else bytes(map(flags.__getitem__, keep))
            tgt = tgt if single else array("H", map(tgt.__getitem__, keep))
            rows = None if rows is None else list(map(rows.__getitem__, keep))
        n = len(times)
        if self.acc == 1:
            due = lanes.column(lanes.lanes(times) - lanes.repeat(self.genesis, n), n)  # times >= genesis
        else:
            g, acc = self.genesis, self.acc
            due = [int((t - g) / acc) for t in times]
            due = array("q", due if max(due, default=0) <= LATEST else [min(d, LATEST) for d in due])
        offsets = lanes.column(lanes.lanes(sectors) << 9, n)  # sectors are below 2^54 (the readers check it)
        self._check(tgt, offsets, nbytes, issued)
        win = lane.window
        targets = self.targets
        one_op = min(issued) == max(issued)
        if isinstance(tgt, int):
            fd = targets[tgt].descriptor << 32
            op_fd = (array("q", (_CMD[issued[0]] | fd,)) * n if one_op
                     else array("q", map([_CMD.get(op, 0) | fd for op in range(256)].__getitem__, issued)))
            lane.kinds.update((tgt, op) for op in set(issued))
        else:
            op_fd = array("q", [_CMD.get(op, 0) | targets[t].descriptor << 32 for t, op in zip(tgt, issued)])
            lane.kinds.update(zip(tgt, issued))
        bufs = [0] * 256
        bufs[READ], bufs[WRITE] = win.read_buffer, win.write_buffer
        buf = array("q", (bufs[issued[0]],)) * n if one_op else array("q", map(bufs.__getitem__, issued))
        rw_flags = None
        if flags is not None and WRITE in issued and any(f & (F_FUA | F_PREFLUSH) for f in flags):
            rw_flags = array("q", [RWF_DSYNC << 32 if op == WRITE and f & (F_FUA | F_PREFLUSH) else 0
                                   for op, f in zip(issued, flags)])
        if max(issued) <= WRITE:
            big = max(nbytes)  # reads and writes use the buffers
            size = big if nbytes.count(big) == n else 0
        else:
            big = max((b for b, op in zip(nbytes, issued) if op <= WRITE), default=0)
            size = 0
        win.one_size = size if win.one_size in (None, size) else 0
        if WRITE in issued:
            lane.largest_write = max(lane.largest_write, max(b for b, op in zip(nbytes, issued) if op == WRITE))
            lane.largest_read = max(lane.largest_read, max((b for b, op in zip(nbytes, issued) if op == READ),
                                                           default=0))
        else:
            lane.largest_read = max(lane.largest_read, big)
        if big > win.io_bytes:
            raise BlkfleetError(f"an IO of {big} bytes is larger than the {win.io_bytes >> 20} MiB IO buffers "
                                "(address space is not overcommitted here: vm.overcommit_memory)")
        first = lane.next
        data = lanes.column(lanes.indexes(n) + lanes.repeat(first, n), n)
        q = win.iocb
        for a, b, k in win.slots(first, first + n):
            x, y = k - first, k - first + (b - a)
            lo, hi = IOCB_WORDS * a, IOCB_WORDS * b
            q[lo + W_DATA:hi:IOCB_WORDS] = data[x:y]
            q[lo + W_RW_FLAGS:hi:IOCB_WORDS] = rw_flags[x:y] if rw_flags is not None else array("q", bytes(8 * (y - x)))
            q[lo + W_OP_FD:hi:IOCB_WORDS] = op_fd[x:y]
            q[lo + W_BUF:hi:IOCB_WORDS] = buf[x:y]
            q[lo + W_NBYTES:hi:IOCB_WORDS] = nbytes[x:y]
            q[lo + W_OFFSET:hi:IOCB_WORDS] = offsets[x:y]
            win.due[a:b] = due[x:y]
            win.target[a:b] = array("H", (tgt,)) * (y - x) if isinstance(tgt, int) else tgt[x:y]
            win.op[a:b] = issued[x:y]
        if rows is not None:
            self._write_order(win, first, tgt, rows)
        ctl = win.control
        if DISCARD in issued or WRITE_ZEROES in issued:
            specials = ctl[SPECIALS]
            for i, op in enumerate(issued):
                if op in (DISCARD, WRITE_ZEROES):
                    win.special[specials & win.mask] = first + i
                    specials += 1
            ctl[SPECIALS] = specials
        lane.next = first + n
        lane.ios += n
        ctl[FED] = lane.next

    def _write_order(self, win, first, tgt, rows):
        """The load and dependency modes' columns of IOs ``first ..``: each one's parents as absolute indexes, an
        issue parent (it was in flight when this one was issued) as -1 - its index (those of skipped IOs, and
        those that left the window long ago, are not waited for), the watermark for parents beyond PARENTS (all
        IOs below it completed: more than an issue parent asks), its think time (÷ -x) and its recorded
        in-flight count (none when not known)."""
        mask, acc = win.mask, self.acc
        keep = 4 * win.capacity  # seqs remembered per target
        parents, nparents, need, think, limit = win.parents, win.nparents, win.need, win.think, win.limit
        for k, (seq, inflight, pause, stored) in enumerate(rows):
            t = tgt if isinstance(tgt, int) else tgt[k]
            index, order = self.index_of[t], self.indexed[t]
            at = first + k
            slot = at & mask
            found = []  # window indexes, an issue parent's as -1 - it
            for d in stored:
                p = index.get(seq - (d & DEP_DISTANCE))
                if p is not None:
                    found.append(~p if d & DEP_AFTER_ISSUE else p)
            near = found[:PARENTS]
            parents[slot * PARENTS:slot * PARENTS + len(near)] = array("q", near)
            nparents[slot] = len(near)
            need[slot] = max((p if p >= 0 else ~p for p in found[PARENTS:]), default=-1) + 1
            think[slot] = pause if acc == 1 else min(int(pause / acc), LATEST)
            limit[slot] = inflight or NO_LIMIT  # 0 would hold it back for ever (busy >= 0)
            self.recorded_depths[t][inflight] += 1
            index[seq] = at
            order.append(seq)
            if len(order) > keep:
                del index[order.popleft()]

    def _check(self, tgt, offsets, nbytes, issued):
        """Every IO aligned to its target's logical block size and within its size (flushes aside)."""
        if isinstance(tgt, int):
            groups = [(tgt, offsets, nbytes, issued)]
        else:
            groups = self._by_target(tgt, offsets, nbytes, issued)
        for t, offs, sizes, ops in groups:
            target = self.targets[t]
            if FLUSH in ops:
                keep = [i for i, op in enumerate(ops) if op != FLUSH]
                if not keep:
                    continue
                offs, sizes = [offs[i] for i in keep], [sizes[i] for i in keep]
            lbs, size = target.block_size, target.size
            if lbs & (lbs - 1) == 0 and isinstance(offs, array):  # whole columns (lanes: every IO ends below 2^63)
                n, offs_lanes, sizes_lanes = len(offs), lanes.lanes(offs), lanes.lanes(sizes)
                if not (offs_lanes | sizes_lanes) & lanes.repeat(lbs - 1, n) and not lanes.above(
                        offs_lanes + sizes_lanes, size, n):
                    continue
            elif (reduce(or_, offs) | reduce(or_, sizes)) % lbs == 0 and (
                    max(offs) + max(sizes) <= size or max(map(add, offs, sizes)) <= size):
                continue
            first = next((o, n) for o, n in zip(offs, sizes) if o % lbs or n % lbs or o + n > size)
            raise BlkfleetError(
                f"{target.path}: IOs of {target.recorded} do not fit it (size {size} bytes, logical block size "
                f"{lbs}); first: offset {first[0]} + {first[1]} bytes")

    @staticmethod
    def _by_target(tgt, offsets, nbytes, issued):
        groups = {}
        for t, o, n, op in zip(tgt, offsets, nbytes, issued):
            g = groups.setdefault(t, ([], [], []))
            g[0].append(o)
            g[1].append(n)
            g[2].append(op)
        return [(t, o, n, bytes(op)) for t, (o, n, op) in groups.items()]


def genesis_of(sources):
    """The earliest first IO time over all sources."""
    return min(s.first_time() for s in sources)

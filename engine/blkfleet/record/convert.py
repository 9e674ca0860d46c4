"""Bunch queued IOs into replay files: btrecord's exact rules (``--compat``) or the native format.

Bunching (both formats): a bunch starts at an IO's time; the next IO closes it and starts a new one if the
bunch already holds ``max_pkts`` IOs or the IO is more than ``max_time`` ns after the bunch's first IO
(btrecord takes that difference as an unsigned 64-bit number). Only the bunch boundaries are found IO by IO;
everything else works on whole columns of a batch (see trace.queued.Batch).
"""

import struct
from bisect import bisect_right
from collections import Counter
from functools import lru_cache
from itertools import compress

from ..errors import TraceFormatError
from ..replayfile.ops import classify
from ..trace.actions import C_FLUSH, C_READ, is_queue
from ..trace.reader import TraceReader

M64 = (1 << 64) - 1


@lru_cache(maxsize=1024)
def _compat_bunch(n):
    return struct.Struct("<QQ" + "QQI4x" * n)


@lru_cache(maxsize=1024)
def _native_bunch(n):
    return struct.Struct("<IIQ" + "QIIBBxxI" * n)


def queue_offset(path, index):
    """Byte offset of the index-th Q event of a trace file (only used to word an error)."""
    seen = 0
    with TraceReader(path) as reader:
        for rec in reader:
            if is_queue(rec.action):
                if seen == index:
                    return reader.offset
                seen += 1
    return -1


def cuts(times, state, max_time, max_pkts):
    """Indexes of ``times`` where a new bunch starts; ``state`` = [bunch start time, IOs in bunch].

    Non-decreasing times (the usual case) are cut with a binary search per bunch; otherwise IO by IO, with
    btrecord's unsigned difference.
    """
    start, count = state
    n = len(times)
    out = []
    if times == sorted(times) and (not count or times[0] >= start):
        i = bisect_right(times, start + max_time, 0, min(max_pkts - count, n)) if count else 0
        if i == n:
            state[1] = count + n
            return out
        while True:
            out.append(i)
            j = bisect_right(times, times[i] + max_time, i, min(i + max_pkts, n))
            if j == n:
                state[0], state[1] = times[i], n - i
                return out
            i = j
    for i, t in enumerate(times):
        if count and count < max_pkts and (t - start) & M64 <= max_time:
            count += 1
        else:
            out.append(i)
            start = t
            count = 1
    state[0], state[1] = start, count
    return out


def tally(summary, batch):
    """Add a batch's IO counts and bytes per action word (bitwise-not for empty bios) to the summary."""
    acts, sizes, table = batch.actions, batch.nbytes, summary.by_action
    uniform = min(sizes) == max(sizes)
    for action, count in Counter(acts).items():
        if uniform:
            empty = count if sizes[0] == 0 and action & C_FLUSH else 0
            nbytes = sizes[0] * count
        else:
            chosen = list(compress(sizes, map(action.__eq__, acts)))
            empty = chosen.count(0) if action & C_FLUSH else 0
            nbytes = sum(chosen)
        for key, n, b in ((action, count - empty, nbytes), (~action, empty, 0)):
            if n:
                entry = table.setdefault(key, [0, 0])
                entry[0] += n
                entry[1] += b


def _interleave(cols):
    """One flat list of a batch's packets' fields, field by field (the order ``struct.pack`` wants)."""
    width = len(cols)
    flat = [0] * (width * len(cols[0]))
    for k, col in enumerate(cols):
        flat[k::width] = col
    return flat


class _Bunches:
    """Turns a flat field list and the cut indexes into encoded bunches; carries the open bunch over."""

    def __init__(self, width, encode):
        self.width = width
        self.encode = encode  # (npkts, time, fields) -> bytes
        self.time = 0
        self.open = []

    def feed(self, flat, times, cut_at):
        """Encoded bunches closed by this batch, as (data, npkts, first_time, last_time, fields)."""
        w = self.width
        done = []
        lo = 0
        for c in cut_at:
            fields = self.open + flat[w * lo : w * c] if self.open else flat[w * lo : w * c]
            if fields:
                done.append(self._close(fields, times[c - 1] if c else self.last))
            self.time = times[c]
            self.open = []
            lo = c
        self.open = self.open + flat[w * lo :] if self.open else flat[w * lo :]
        self.last = times[-1]
        return done

    def finish(self):
        return [self._close(self.open, self.last)] if self.open else []

    def _close(self, fields, last_time):
        n = len(fields) // self.width
        return self.encode(n, self.time, fields), n, self.time, last_time, fields

    last = 0


def to_btrecord(batches, writer, summary, max_time, max_pkts, trace_path, log=None):
    """btrecord's rules: per-file genesis (the first non-zero time), time inversion below it is fatal,
    rw = READ bit, the writer keeps its header quirks."""
    genesis = seen = 0
    state = [0, 0]
    bunches = _Bunches(3, lambda n, time, fields: _compat_bunch(n).pack(n, time, *fields))

    def write(done):
        if done:
            writer.add_raw_bunches([d[0] for d in done], [d[1] for d in done])
        if log:
            for _data, _n, time, _last, fields in done:
                log.bunch(time, genesis, fields[0::3], fields[1::3], fields[2::3])

    for batch in batches:
        times = batch.times
        if not times:
            continue
        set_at = -1
        if genesis == 0:
            set_at = next((i for i, t in enumerate(times) if t), -1)
            if set_at >= 0:
                genesis = writer.genesis = times[set_at]
        inversion = None
        if genesis and len(times) > set_at + 1 and min(times[set_at + 1 :]) < genesis:
            i = next(i for i, t in enumerate(times) if i > set_at and t < genesis)
            inversion = TraceFormatError(trace_path, queue_offset(trace_path, seen + i),
                                         f"time inversion: {times[i]} ns is before genesis {genesis} ns")
            batch = type(batch)(*(col[:i] for col in batch))  # btrecord wrote the bunches closed before it
            times = batch.times
        if times:
            rws = list(map(bool, map(C_READ.__and__, batch.actions)))
            if log:
                log.ios(times, batch.sectors, batch.nbytes, rws, set_at, genesis)
            flat = _interleave([batch.sectors, batch.nbytes, rws])
            write(bunches.feed(flat, times, cuts(times, state, max_time, max_pkts)))
        if inversion:
            raise inversion
        tally(summary, batch)
        seen += len(times)
    write(bunches.finish())
    summary.ios = seen
    summary.bunches = writer.bunches
    summary.first_time = genesis
    summary.last_time = bunches.last


def to_native(batches, writer, summary, max_time, max_pkts, trace_path):
    """Native rules: per-IO times (offset from the bunch time), ops kept; time must not go backwards."""
    state = [0, 0]
    kinds = {}

    def encode(n, start, fields):
        fields[2::6] = [t - start for t in fields[2::6]]
        keys = fields[3::6]
        fields[3::6] = [kinds[k][0] for k in keys]
        fields[4::6] = [kinds[k][1] for k in keys]
        return _native_bunch(n).pack(n, 0, start, *fields)

    bunches = _Bunches(6, encode)
    last = seen = 0
    for batch in batches:
        times = batch.times
        if not times:
            continue
        if times[0] < last or times != sorted(times):
            prev = [last, *times]
            i = next(i for i in range(len(times)) if times[i] < prev[i])
            raise TraceFormatError(trace_path, queue_offset(trace_path, seen + i),
                                   f"time goes backwards: {times[i]} ns after {prev[i]} ns")
        acts, sizes = batch.actions, batch.nbytes
        flushes = any(a & C_FLUSH for a in set(acts))
        keys = [a if n else ~a for a, n in zip(acts, sizes)] if flushes else acts
        for key in set(keys):
            if key not in kinds:
                kinds[key] = classify(~key, 0) if key < 0 else classify(key, 1)
        flat = _interleave([batch.sectors, sizes, times, keys, keys, batch.pids])
        done = bunches.feed(flat, times, cuts(times, state, max_time, max_pkts))
        if done:
            writer.add_raw_bunches([d[0] for d in done], sum(d[1] for d in done), done[0][2], done[-1][3])
        tally(summary, batch)
        seen += len(times)
        last = times[-1]
    for data, n, time, last_time, _fields in bunches.finish():
        writer.add_raw_bunches([data], n, time, last_time)
    summary.ios = seen
    summary.bunches = writer.bunches
    summary.first_time = writer.genesis
    summary.last_time = last

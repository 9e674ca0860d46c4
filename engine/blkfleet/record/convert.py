"""Bunch queued IOs into replay files: btrecord's exact rules (``--compat``) or the native format.

Bunching (both formats): a bunch starts at an IO's time; the next IO closes it and starts a new one if the
bunch already holds ``max_pkts`` IOs or the IO is more than ``max_time`` ns after the bunch's first IO
(btrecord takes that difference as an unsigned 64-bit number).

The IOs come in chunks of record headers (trace.queued.QueuedChunk); the IOs of the bunch still open at the
end of a chunk are carried over to the next one, so that every chunk starts a bunch. A chunk is converted on
whole columns, without a Python object per IO (the old per-IO lists, listcomps and ``struct.pack`` arguments
cost about 800 ns per IO; the columns about 140):

* times: one big integer of 64-bit lanes; whether they rise and the native ``dt`` (time minus the bunch's time)
  are each one subtraction of lanes (_Times);
* bunch boundaries: for rising times (always in the native format; in practice in btrecord captures too), full
  bunches are found many at once (the first and last time of every group of ``max_pkts`` IOs compared by
  ``map`` over two strided memoryviews), and a binary search cuts the others;
* packets: every field is a strided copy between memoryview casts of the headers and of the output; the op and
  flags come from the action word's bytes through 256-byte ``bytes.translate`` tables built from ``classify``
  itself;
* bunches: full ones of a small -M laid out by strided copies, others a header and a slice of packets each.

The reference path (IO by IO cuts, one ``struct.pack`` per bunch with every field as an argument) converts
times that step back (btrecord format), a time inversion below genesis, the chunks of a big-endian host, and
btrecord's ``-v`` logs. tests/record/test_convert_paths.py keeps both paths equal.
"""

import struct
import sys
from array import array
from bisect import bisect_right
from functools import lru_cache
from itertools import compress, count, repeat
from operator import gt, sub

from ..errors import TraceFormatError
from ..replayfile.ops import OP_NAMES, classify
from ..trace.actions import C_AHEAD, C_DISCARD, C_FLUSH, C_FUA, C_META, C_READ, C_SYNC, C_WRITE_ZEROES, is_queue
from ..trace.queued import QueuedChunk
from ..trace.reader import TraceReader
from ..trace.record import FIELDS

M64 = (1 << 64) - 1
FAST = sys.byteorder == "little"  # the strided copies write the host's byte order; the files are little-endian
# Both formats: a bunch header is {npkts, time} as two little-endian u64 (native: npkts u32 and a reserved 0),
# and a packet is 24 bytes.
BUNCH = struct.Struct("<QQ")
EXT_BUNCH = struct.Struct("<IIQ")  # a native version 2 bunch header: npkts, extension bytes, time
PACKET_SIZE = 24
STRIDED_MAX = 16  # up to this -M, full bunches are laid out with one strided copy per packet field
_WIDTH = {"Q": 8, "I": 4, "B": 1}


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


# ----------------------------------------------------------------------------------------- bunch boundaries


def cuts(times, state, max_time, max_pkts):
    """Indexes of ``times`` where a new bunch starts; ``state`` = [bunch start time, IOs in bunch].

    The reference: IO by IO, with btrecord's unsigned difference, whatever the order of the times.
    """
    start, n = state
    out = []
    for i, t in enumerate(times):
        if n and n < max_pkts and (t - start) & M64 <= max_time:
            n += 1
        else:
            out.append(i)
            start = t
            n = 1
    state[0], state[1] = start, n
    return out


def sorted_starts(times, max_time, max_pkts):
    """Indexes where a bunch starts, for non-decreasing ``times`` (a sequence; a memoryview is sliced without a
    copy) of which the first starts a bunch (the same as ``cuts``). Runs of full bunches are found many at
    once; a binary search cuts the others."""
    n = len(times)
    view = times
    starts = []
    add = starts.append
    i = 0
    while i < n:
        hi = i + max_pkts
        if hi <= n and times[hi - 1] - times[i] <= max_time:
            full = (n - i) // max_pkts
            span = full * max_pkts
            firsts = view[i : i + span : max_pkts]
            lasts = view[hi - 1 : i + span : max_pkts]
            ok = next(compress(count(), map(gt, map(sub, lasts, firsts), repeat(max_time))), full)
            starts.extend(range(i, i + ok * max_pkts, max_pkts))
            i += ok * max_pkts
            continue
        add(i)
        i = bisect_right(times, times[i] + max_time, i, hi if hi < n else n)
    return starts


# --------------------------------------------------------------------------------------------- op and flags

# Key bits: the bits of the action word that decide the op, and those that decide the flags, each given one bit
# of a key byte; the key's top bit says "no data" (an empty flush is a flush, one with data a PREFLUSH).
_OP_BITS = ((C_READ, 1), (C_FLUSH, 2), (C_DISCARD, 4), (C_WRITE_ZEROES, 8))
_FLAG_BITS = ((C_FUA, 1), (C_SYNC, 2), (C_META, 4), (C_AHEAD, 8), (C_FLUSH, 16), (C_DISCARD, 32), (C_WRITE_ZEROES, 64))
_EMPTY = 128
_ACTION_BYTES = (2, 3, 4)  # the bytes of the action word that hold those bits (4: v8's write-zeroes)


def _key_tables(bits, pick):
    """``pick(classify(...))`` of every key byte, and per action byte (``_ACTION_BYTES``) the key bits that
    each of its values carries."""
    table = bytearray(256)
    for key in range(256):
        action = 0
        for bit, k in bits:
            if key & k:
                action |= bit
        table[key] = pick(classify(action, 0 if key & _EMPTY else 1))
    per_byte = []
    for at in _ACTION_BYTES:
        keys = bytearray(256)
        for bit, k in bits:
            bit >>= 8 * at
            if 0 < bit < 256:
                for value in range(256):
                    if value & bit:
                        keys[value] |= k
        per_byte.append(bytes(keys))
    return bytes(table), per_byte


_OPS, _OP_PER_BYTE = _key_tables(_OP_BITS, lambda c: c[0])
_FLAGS, _FLAG_PER_BYTE = _key_tables(_FLAG_BITS, lambda c: c[1])
_EMPTY_KEY = bytes([0, _EMPTY]) + bytes(254)
_NOT_FLUSH = bytes(b for b in range(256) if not b & C_FLUSH >> 16)  # values of action byte 2 without FLUSH
_NONZERO = bytes([0] + [1] * 255)
_ISZERO = bytes([1] + [0] * 255)
_READ_BIT = bytes(b & C_READ >> 16 for b in range(256))
_SELECT = [bytes(1 if b == op else 0 for b in range(256)) for op in range(len(OP_NAMES))]
_BELOW_2_63 = bytes(range(128))  # deleted by translate: the top bytes of u64 lanes below 2^63


def _or(n, parts):
    """Bytewise OR of byte strings of length ``n`` (through big integers)."""
    value = 0
    for part in parts:
        value |= int.from_bytes(part, "little")
    return value.to_bytes(n, "little")


class Columns:
    """The fields of the first ``end`` IOs of a chunk, as views and byte strings (the host is little-endian)."""

    def __init__(self, chunk, end):
        self.chunk, self.end = chunk, end
        self.size = chunk.size
        self.action = FIELDS[chunk.version]["action"][0]

    def view(self, name):
        return self.chunk.column(name)[: self.end]

    def action_byte(self, k):
        """Byte ``k`` (0 = least significant) of every IO's action word."""
        at = self.action + k
        return bytes(self.chunk.heads[at : at + self.size * self.end : self.size])

    def empty(self):
        """1 for every IO of no data, else 0."""
        at = FIELDS[self.chunk.version]["bytes"][0]
        heads, size, stop = self.chunk.heads, self.size, self.size * self.end
        return _or(self.end, (bytes(heads[at + k : stop : size]).translate(_NONZERO) for k in range(4))).translate(
            _ISZERO)

    def kinds(self, flags=True):
        """(op, flags) byte strings of the IOs (``flags`` False: the op only): key bytes (_OP_BITS, _FLAG_BITS)
        made of the action bytes, through the tables."""
        present = _ACTION_BYTES if self.chunk.version == 8 else _ACTION_BYTES[:2]
        raw = [self.action_byte(k) for k in present]
        empty = self.empty().translate(_EMPTY_KEY) if raw[0].translate(None, _NOT_FLUSH) else None  # a flush?
        out = []
        for tables, result in ((_OP_PER_BYTE, _OPS), (_FLAG_PER_BYTE, _FLAGS))[: 2 if flags else 1]:
            keys = [b.translate(t) for b, t in zip(raw, tables)]
            out.append(_or(self.end, keys + [empty] if empty else keys).translate(result))
        return out


def _tally(summary, ops, sizes):
    """Add IOs and bytes per op (``ops``: op byte of every IO; ``sizes``: their lengths) to the summary."""
    table = summary.by_op
    n = len(ops)
    first = sizes[0]
    uniform = sizes == memoryview(array("I", [first]) * n)
    left = n
    for op in range(len(OP_NAMES)):
        if not left:
            break
        ios = ops.count(op)
        if not ios:
            continue
        left -= ios
        if uniform:
            nbytes = ios * first
        elif ios == n:
            nbytes = sum(sizes)
        else:
            nbytes = sum(compress(sizes, ops.translate(_SELECT[op])))
        table[op][0] += ios
        table[op][1] += nbytes


def _tally_rows(summary, rows):
    """The same from (nbytes, action) pairs, IO by IO (reference path)."""
    table = summary.by_op
    for nbytes, action in rows:
        op = classify(action, nbytes)[0]
        table[op][0] += 1
        table[op][1] += nbytes


def encode_bunches(fields, bounds, bunch_times, max_pkts, exts=None):
    """The bunches, each header followed by its packets (``bounds``: index of every bunch's first IO, then the
    end; ``fields``: (column, byte offset in a packet, struct code 'Q', 'I' or 'B') of every packet field), and
    by its extension when ``exts`` gives one per bunch (native version 2).

    When every bunch is full (``max_pkts`` IOs) and -M is small, the columns go straight to their places, one
    strided copy per field and packet slot (btrecord's -M 8: 14 ns per IO, against 34 for packets joined
    with a header per bunch); otherwise the packets are made with one strided copy per field, then joined
    with a header and a slice per bunch."""
    bunches, size = len(bounds) - 1, max_pkts
    if exts is None and bunches > 1 and size <= STRIDED_MAX and bounds[-1] == size * bunches:  # all of -M IOs
        width = BUNCH.size + PACKET_SIZE * size
        out = bytearray(width * bunches)
        views = {"Q": memoryview(out).cast("Q"), "I": memoryview(out).cast("I"), "B": out}
        views["Q"][0 :: width // 8] = memoryview(array("Q", [size]) * bunches)
        views["Q"][1 :: width // 8] = memoryview(array("Q", bunch_times))
        for slot in range(size):
            for column, offset, code in fields:
                step = _WIDTH[code]
                views[code][(BUNCH.size + PACKET_SIZE * slot + offset) // step :: width // step] = column[slot::size]
        return out
    packets = bytearray(PACKET_SIZE * bounds[-1])
    views = {"Q": memoryview(packets).cast("Q"), "I": memoryview(packets).cast("I"), "B": packets}
    for column, offset, code in fields:
        views[code][offset // _WIDTH[code] :: PACKET_SIZE // _WIDTH[code]] = column
    ends = bounds[1:]
    at = [PACKET_SIZE * b for b in bounds]
    slices = map(bytes(packets).__getitem__, map(slice, at, at[1:]))  # bytes: half the cost of memoryviews
    if exts is not None:
        parts = [b""] * (3 * bunches)
        parts[0::3] = map(EXT_BUNCH.pack, map(sub, ends, bounds), map(len, exts), bunch_times)
        parts[1::3] = slices
        parts[2::3] = exts
        return b"".join(parts)
    parts = [b""] * (2 * bunches)
    parts[0::2] = map(BUNCH.pack, map(sub, ends, bounds), bunch_times)
    parts[1::2] = slices
    return b"".join(parts)


class _Times:
    """The times of a chunk's IOs: ``view`` (a memoryview of u64: indexed, searched and sliced without a copy),
    ``value`` (all of them as one big integer of 64-bit lanes) and ``rising`` (they never go down).

    No Python object per IO: the lane arithmetic below costs about 20 ns per IO where a list of the times and
    ``sorted`` cost 28, and the offsets from the bunch times 19 where ``map(sub, ...)`` costs 43."""

    def __init__(self, chunk):
        self.view = chunk.column("time")
        self.raw = self.view.tobytes()
        self.value = int.from_bytes(self.raw, "little")
        self._rising = None

    def __len__(self):
        return len(self.view)

    def __getitem__(self, i):
        return self.view[i]

    def list(self):
        return self.view.tolist()

    @property
    def rising(self):
        """The steps between neighbours as one subtraction of lanes: with every time below 2^63, the first step
        down (if any) makes its lane borrow, which sets the lane's top bit; until then every lane is its step,
        below 2^63. Times of 2^63 ns or more are compared one by one."""
        if self._rising is None:
            n, raw = len(self.view), self.raw
            if n < 2:
                self._rising = True
            elif raw[7::8].translate(None, _BELOW_2_63):
                values = self.view.tolist()
                self._rising = values == sorted(values)
            else:
                steps = (self.value >> 64) - int.from_bytes(raw[:-8], "little")
                self._rising = steps >= 0 and not steps.to_bytes(8 * (n - 1), "little")[7::8].translate(
                    None, _BELOW_2_63)
        return self._rising

    def offsets(self, bounds):
        """Every IO's time minus its bunch's time (``bounds``: the first IO of each bunch, then the end of the
        last; the IOs after it count from the first of them), as u32: a memoryview of the low halves of the
        lanes of one subtraction. No lane borrows from the next because the times rise, and every difference is
        at most -m < 2^32."""
        n, end = len(self.view), bounds[-1]
        starts = list(map(self.view.__getitem__, bounds[:-1]))
        counts = list(map(sub, bounds[1:], bounds))
        if end < n:
            starts.append(self.view[end])
            counts.append(n - end)
        lanes = b"".join(map(bytes.__mul__, map(int.to_bytes, starts, repeat(8), repeat("little")), counts))
        return memoryview((self.value - int.from_bytes(lanes, "little")).to_bytes(8 * n, "little")).cast("I")[
            0 : 2 * end : 2]


def _interleave(cols):
    """One flat list of a batch's packets' fields, field by field (the order ``struct.pack`` wants)."""
    width = len(cols)
    flat = [0] * (width * len(cols[0]))
    for k, col in enumerate(cols):
        flat[k::width] = col
    return flat


# ------------------------------------------------------------------------------------------------ converters


class _Converter:
    """Feeds the chunks of one trace file to ``convert``, carrying the IOs of the open bunch over; subclasses
    write one format. ``convert(chunk, times, final)`` writes the bunches that the chunk closes (all of them
    when ``final``) and returns the index of the first IO of the bunch still open."""

    def __init__(self, writer, summary, max_time, max_pkts, trace_path, fast=FAST):
        self.writer, self.summary = writer, summary
        self.max_time, self.max_pkts = max_time, max_pkts
        self.path = trace_path
        self.fast = fast
        self.seen = 0  # IOs of the file before the chunk being converted

    def run(self, chunks):
        pending = None
        for chunk in chunks:
            if not len(chunk):
                continue
            self.arrived(chunk)
            if pending is not None:
                chunk = QueuedChunk(b"".join((pending.heads, chunk.heads)), chunk.version)
            times = _Times(chunk)
            at = self.convert(chunk, times, False)
            pending = QueuedChunk(chunk.heads[at * chunk.size :], chunk.version)
            self.seen += at
            self.summary.last_time = times[-1]
        if pending is not None:
            self.convert(pending, _Times(pending), True)
            self.seen += len(pending)
        self.summary.ios = self.seen
        self.summary.bunches = self.writer.bunches
        self.summary.first_time = self.writer.genesis

    def arrived(self, chunk):
        """A chunk as read from the trace (before the open bunch is put in front of it)."""

    def bunches(self, chunk, times, final, ordered):
        """(index of every bunch's first IO, then the end of the last closed bunch) and that open bunch's start."""
        if ordered and self.fast:
            starts = sorted_starts(times.view, self.max_time, self.max_pkts)
        else:
            starts = cuts(times.list(), [0, 0], self.max_time, self.max_pkts)
        if final:
            return starts + [len(times)], len(times)
        return starts, starts[-1]


class NativeConverter(_Converter):
    """Native rules: per-IO times (offset from the bunch time), ops kept; time must not go backwards. ``timing``:
    the file's ``deps.TimingSource``, whose extensions the bunches carry (version 2)."""

    def __init__(self, *args, timing=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.timing = timing

    def convert(self, chunk, times, final):
        if not times.rising:  # the open bunch is in front: the order across chunks is checked too
            values = times.list()
            i = next(i for i in range(1, len(values)) if values[i] < values[i - 1])
            raise TraceFormatError(self.path, queue_offset(self.path, self.seen + i),
                                   f"time goes backwards: {values[i]} ns after {values[i - 1]} ns")
        bounds, end = self.bunches(chunk, times, final, True)
        if end == 0:
            return 0
        exts = self.timing.take(bounds) if self.timing else None
        if self.fast:
            cols = Columns(chunk, end)
            self._fast(cols, times, bounds, *cols.kinds(), exts=exts)
        else:
            self._reference(chunk, times, bounds, end, exts)
        self.writer.add_encoded_bunches(self._data, len(bounds) - 1, end, times[0], times[end - 1])
        return end

    def _fast(self, cols, times, bounds, ops, flags, exts=None):
        sizes = cols.view("bytes")
        fields = [(cols.view("sector"), 0, "Q"), (sizes, 8, "I"), (times.offsets(bounds), 12, "I"), (ops, 16, "B"),
                  (flags, 17, "B"), (cols.view("pid"), 20, "I")]
        self._data = encode_bunches(fields, bounds, list(map(times.view.__getitem__, bounds[:-1])), self.max_pkts,
                                    exts)
        _tally(self.summary, ops, sizes)

    def _reference(self, chunk, times, bounds, end, exts=None):
        batch = chunk.head(end).batch()
        times = batch.times
        keys = [(a, 1 if n else 0) for a, n in zip(batch.actions, batch.nbytes)]
        kinds = {k: classify(*k) for k in set(keys)}
        flat = _interleave([batch.sectors, batch.nbytes, batch.times, [kinds[k][0] for k in keys],
                            [kinds[k][1] for k in keys], batch.pids])
        data = []
        for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
            fields = flat[6 * a : 6 * b]
            fields[2::6] = [t - times[a] for t in fields[2::6]]
            ext = exts[k] if exts else b""
            data.append(_native_bunch(b - a).pack(b - a, len(ext), times[a], *fields) + ext)
        self._data = b"".join(data)
        _tally_rows(self.summary, zip(batch.nbytes, batch.actions))


class CompatConverter(_Converter):
    """btrecord's rules: per-file genesis (the first non-zero time), time inversion below it is fatal,
    rw = READ bit, the writer keeps its header quirks; ``log``: btrecord's -v output (reference path)."""

    def __init__(self, *args, log=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = log
        self.genesis = 0
        self.after = 0  # the file's IOs from this index on must not be below genesis
        self.arrivals = 0  # IOs read so far

    def arrived(self, chunk):
        set_at = -1
        if not self.genesis:
            times = chunk.column("time")
            set_at = next((i for i, t in enumerate(times) if t), -1)
            if set_at >= 0:
                self.genesis = self.writer.genesis = times[set_at]
                self.after = self.arrivals + set_at + 1
            else:
                self.after = self.arrivals + len(times)
        if self.log:
            batch = chunk.batch()
            bad = self._inversion(batch.times, self.after - self.arrivals)
            rws = list(map(bool, map(C_READ.__and__, batch.actions)))
            self.log.ios(batch.times[:bad], batch.sectors, batch.nbytes, rws, set_at, self.genesis)
        self.arrivals += len(chunk)

    def _inversion(self, times, first, ordered=False):
        """Index of the first IO from ``first`` on with a time below genesis, else None (``ordered``: the times
        do not go down, so the first of them is the least)."""
        first = max(first, 0)
        if self.genesis and len(times) > first and (times[first] if ordered else min(times[first:])) < self.genesis:
            return next(i for i in range(first, len(times)) if times[i] < self.genesis)
        return None

    def convert(self, chunk, times, final):
        ordered = times.rising
        bad = self._inversion(times.view if ordered else times.list(), self.after - self.seen, ordered)
        if bad is not None:
            inversion = TraceFormatError(self.path, queue_offset(self.path, self.seen + bad),
                                         f"time inversion: {times[bad]} ns is before genesis {self.genesis} ns")
            if bad:  # btrecord wrote the bunches closed before it
                head = chunk.head(bad)
                self.convert(head, _Times(head), False)
            raise inversion
        bounds, end = self.bunches(chunk, times, final, ordered)
        if end == 0:
            return 0
        if self.fast and not self.log:
            self._fast(Columns(chunk, end), times, bounds)
        else:
            self._reference(chunk, times, bounds, end)
        self.writer.add_encoded_bunches(self._data, len(bounds) - 1, end, bounds[-1] - bounds[-2])
        return end

    def _fast(self, cols, times, bounds):
        sizes = cols.view("bytes")  # u32 into the low half of btrecord's u64 (the packet is zeroed)
        fields = [(cols.view("sector"), 0, "Q"), (sizes, 8, "I"), (cols.action_byte(2).translate(_READ_BIT), 16, "B")]
        self._data = encode_bunches(fields, bounds, list(map(times.view.__getitem__, bounds[:-1])), self.max_pkts)
        _tally(self.summary, cols.kinds(flags=False)[0], sizes)

    def _reference(self, chunk, times, bounds, end):
        batch = chunk.head(end).batch()
        times = batch.times
        rws = list(map(bool, map(C_READ.__and__, batch.actions)))
        flat = _interleave([batch.sectors, batch.nbytes, rws])
        data = []
        for a, b in zip(bounds, bounds[1:]):
            fields = flat[3 * a : 3 * b]
            data.append(_compat_bunch(b - a).pack(b - a, times[a], *fields))
            if self.log:
                self.log.bunch(times[a], self.genesis, fields[0::3], fields[1::3], fields[2::3])
        self._data = b"".join(data)
        _tally_rows(self.summary, zip(batch.nbytes, batch.actions))

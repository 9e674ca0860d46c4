"""Fast selection of queued IOs (Q events) from a trace file, for the converter.

The Q events come out in chunks (QueuedChunk): their record headers back to back, in the host's byte order, so
that the converter works on whole columns (memoryview casts, strided slices) instead of one Python object per
IO. Each window of the file takes the cheapest way that describes it:

* One pattern of records repeated (``blkfleet capture``'s events mode: only Q records without payload; the blk
  tracer for IOs submitted one at a time: Q, G, P, U): every test is a strided slice of the window (magic,
  payload length, action bytes of all records at once), and the Q headers are the window as it is or strided
  copies of it. Nothing is done per record in Python.
* Other records with the usual payload sizes (the blk tracer's Q, G, P, U, ...): a compiled regular expression walks
  the record framing in C. ``re.split`` with it returns, for every run of non-Q records ended by a Q record,
  the run and the Q record; the Q headers are joined.
* Anything else (unusual payload sizes, a bad magic, a record cut at the end of the window, protocol version
  8): the generic decoder, so the result is exactly what filtering TraceReader would give.
"""

import re
import struct
import sys
from collections import namedtuple
from operator import itemgetter

from ..errors import TraceFormatError
from ..files import open_file
from .actions import C_QUEUE, is_queue
from .reader import TraceReader, detect
from .record import FIELDS, HEADER_SIZE, MAGIC, layout

CHUNK = 4 << 20
WINDOW = 256 << 10
MIN_WINDOW = 4 << 10
MAX_WINDOW = 512 << 10
ROWS = 4096  # Q events per chunk on the generic paths
FAST_PDU_LENS = (0, 8, 16, 24)
_SIZE = HEADER_SIZE[7]
_ACTION_AT = FIELDS[7]["action"][0]
_PDU_LEN_AT = FIELDS[7]["pdu_len"][0]
_AT = {name: i for i, name in enumerate(FIELDS[7])}  # positions in a decoded v7 header
_ROW = itemgetter(*(_AT[n] for n in ("time", "sector", "bytes", "action", "pid")))  # a Batch row
NATIVE = "<" if sys.byteorder == "little" else ">"
MAX_PERIOD = 8  # records in a pattern that _periodic looks for
_QUEUE_BIT = bytes(1 if b & (C_QUEUE >> 16) else 0 for b in range(256))  # the action's third byte
_IS_ONE = bytes(1 if b == 1 else 0 for b in range(256))
_IS_ZERO = bytes(1 if b == 0 else 0 for b in range(256))


class Batch(namedtuple("Batch", "times sectors nbytes actions pids")):
    """Consecutive Q events of one file as columns (lists of equal length)."""

    __slots__ = ()

    @classmethod
    def from_rows(cls, rows):
        return cls(*map(list, zip(*rows))) if rows else cls([], [], [], [], [])


class QueuedChunk:
    """Consecutive Q events of one file: ``heads`` holds their record headers (protocol ``version``, host byte
    order, payloads left out) back to back, in file order."""

    __slots__ = ("heads", "version")

    def __init__(self, heads, version=7):
        self.heads = heads
        self.version = version

    @classmethod
    def from_rows(cls, rows, version=7):
        """A chunk of (time, sector, bytes, action, pid) rows."""
        pack = layout(version, NATIVE).pack
        magic = MAGIC | version
        if version == 8:
            heads = b"".join(pack(magic, 0, t, s, n, p, a, 0, 0, 0, 0) for t, s, n, a, p in rows)
        else:
            heads = b"".join(pack(magic, 0, t, s, n, a, p, 0, 0, 0, 0) for t, s, n, a, p in rows)
        return cls(heads, version)

    @property
    def size(self):
        """Bytes per header."""
        return HEADER_SIZE[self.version]

    def __len__(self):
        return len(self.heads) // HEADER_SIZE[self.version]

    def column(self, name):
        """A memoryview of one header field (``time``, ``sector``, ``bytes``, ``action``, ``pid``) of every IO."""
        offset, code = FIELDS[self.version][name]
        width = struct.calcsize(code)
        return memoryview(self.heads).cast(code)[offset // width :: self.size // width]

    def head(self, count):
        """The chunk of the first ``count`` IOs."""
        return QueuedChunk(self.heads[: count * self.size], self.version)

    def batch(self):
        """The chunk as a Batch of lists."""
        return Batch(*(self.column(n).tolist() for n in ("time", "sector", "bytes", "action", "pid")))


def queued_chunks(path):
    """Yield a QueuedChunk per run of Q events of a trace file, in file order; a format error is raised after
    the chunks of every Q event before it."""
    with open_file(path) as f:
        head = f.read(64)
        if not head:
            return
        order, version = detect(head, path)
        f.seek(0)
        if version == 7:
            yield from _scan_v7(path, f, order)
            return
        rows = []
        try:
            for r in TraceReader(path, f):
                if is_queue(r.action):
                    rows.append((r.time, r.sector, r.bytes, r.action, r.pid))
                    if len(rows) >= ROWS:
                        yield QueuedChunk.from_rows(rows, version)
                        rows = []
        except TraceFormatError:  # the IOs before a bad record, then the error
            if rows:
                yield QueuedChunk.from_rows(rows, version)
            raise
        if rows:
            yield QueuedChunk.from_rows(rows, version)


def queued_batches(path):
    """Yield a Batch per run of Q events of a trace file, in file order."""
    for chunk in queued_chunks(path):
        yield chunk.batch()


def queued_ios(path):
    """Yield (time, sector, bytes, action, pid) for every Q event of a trace file, in file order."""
    for batch in queued_batches(path):
        yield from zip(*batch)


# ------------------------------------------------------------------------------------------- protocol v7


def _byte_class(pred):
    return b"[" + b"".join(re.escape(bytes([b])) for b in range(256) if pred(b)) + b"]"


def _pattern(order):
    """Two expressions for v7 records in a byte order: ``(run of non-Q records)(Q record with no payload | end
    of text)`` for ``re.split``, and the framing of any run of such records (Q records without payload, others
    with the usual payload sizes).

    Split is only given text that the framing expression consumed whole: every attempt then starts at a record
    boundary and succeeds, so the walk is linear (a failed attempt would be retried at every later offset,
    which once took 40 s for 6000 records of Q records with a payload)."""
    magic = re.escape(struct.pack(order + "I", MAGIC | 7))
    bit = _byte_class(lambda b: b & 0x10)
    nobit = _byte_class(lambda b: not b & 0x10)
    if order == "<":  # action bytes a0 a1 a2 a3: Q iff a0 == 1, a1 == 0 (no cgroup flag), a2 has QUEUE
        q_action = rb"\x01\x00" + bit + b"."
        other_action = rb"(?:[^\x01]...|\x01[^\x00]..|\x01\x00" + nobit + b".)"
    else:  # a3 a2 a1 a0
        q_action = b"." + bit + rb"\x00\x01"
        other_action = b"(?:." + nobit + rb"..|..[^\x00].|..\x00[^\x01])"
    pdu = b"(?:" + b"|".join(re.escape(struct.pack(order + "H", n)) + b".{%d}" % n for n in FAST_PDU_LENS) + b")"
    head = magic + b".{%d}" % (_ACTION_AT - 4)  # sequence .. bytes
    between = b".{%d}" % (_PDU_LEN_AT - _ACTION_AT - 4)  # pid .. error
    other_rest = other_action + between + pdu
    queue_rest = q_action + between + re.escape(struct.pack(order + "H", 0))
    other, queue = head + other_rest, head + queue_rest
    # possessive: no backtracking into the run. Not before 3.11.5: CPython gh-106052 (possessive repeats of a
    # subpattern that backtracks could match wrongly) breaks it on Debian 12's Python 3.11.2.
    star = b"*+" if sys.version_info >= (3, 11, 5) else b"*"
    run = b"(?:" + other + b")" + star
    # A Q record with a payload (never written by a kernel) ends the framing; the head is shared (0.56 ms per
    # 512 KiB of blk tracer records here, against 0.83 for the two records side by side).
    framing = b"(?:" + head + b"(?:" + queue_rest + b"|" + other_rest + b"))*"
    return re.compile(b"(" + run + b")(" + queue + rb"|\Z)", re.DOTALL), re.compile(framing, re.DOTALL)


_PATTERNS = {}


def _compiled(order):
    if order not in _PATTERNS:
        _PATTERNS[order] = _pattern(order)
    return _PATTERNS[order]


def _framed(block, at, stride, size, order):
    """Whether the records at ``at`` in every ``stride`` bytes of ``block`` have the magic and the payload length
    of ``size``-byte v7 records: strided byte columns, each compared at once."""
    count = len(block) // stride
    magic = struct.pack(order + "I", MAGIC | 7)
    pdu = struct.pack(order + "H", size - _SIZE)
    return (all(block[at + k :: stride] == magic[k : k + 1] * count for k in range(4))
            and all(block[at + _PDU_LEN_AT + k :: stride] == pdu[k : k + 1] * count for k in range(2)))


def _action_columns(block, at, stride, order):
    """The three low bytes of the action word (least significant first) of those records, as byte columns."""
    lsb = 0 if order == "<" else 3  # where the low byte of a little-endian u32 is, per byte order
    return [block[at + _ACTION_AT + abs(lsb - k) :: stride] for k in range(3)]


def _queue_mask(action):
    """An integer with byte 1 for each of those records that is a Q (action code 1, no cgroup flag, QUEUE
    category), else 0."""
    a0, a1, a2 = action
    return (int.from_bytes(a0.translate(_IS_ONE), "little") & int.from_bytes(a1.translate(_IS_ZERO), "little")
            & int.from_bytes(a2.translate(_QUEUE_BIT), "little"))


def _periodic(buf, pos, end, order):
    """(Q headers, end) of the whole repetitions of one pattern of records that ``buf[pos:end]`` starts with,
    or None when it does not start that way.

    The pattern (up to MAX_PERIOD records: their sizes and which are Q records) is read from the first records;
    then every record of every repetition is tested at once per field, as strided byte columns of the window:
    the magic, the payload length its size says, and the action bytes of a Q record (or of no Q record, for
    the others). That the sizes hold record after record is what makes the framing right, so nothing is walked.
    ``blkfleet capture`` writes such windows: events mode only header-sized Q records (a pattern of one: the window
    is the chunk as it is); the blk tracer, for IOs submitted one at a time (fio, databases), Q, G, P, U.
    A pattern of bare headers that the action bytes break (events mode's Q and C records, queued and completed in
    runs) goes on as ``_bare_headers`` would, on the block already copied and checked."""
    pdu_at, action_at = struct.Struct(order + "H").unpack_from, struct.Struct(order + "I").unpack_from
    kinds = []
    at = pos
    while len(kinds) < 2 * MAX_PERIOD and at + _SIZE <= end:
        size = _SIZE + pdu_at(buf, at + _PDU_LEN_AT)[0]
        kinds.append((size, is_queue(action_at(buf, at + _ACTION_AT)[0])))
        at += size
    period = next((p for p in range(1, MAX_PERIOD + 1) if kinds[p : 2 * p] == kinds[:p]), 0)
    slots = kinds[:period]
    length = sum(size for size, _q in slots)
    count = (end - pos) // length if period and 2 * period <= len(kinds) else 0
    if not count or not any(q for _size, q in slots) or any(size % 8 for size, _q in slots):
        return None
    block = bytes(buf[pos : pos + count * length])
    offsets = [sum(size for size, _q in slots[:i]) for i in range(period)]
    if not all(_framed(block, at, length, size, order) for at, (size, _q) in zip(offsets, slots)):
        return None
    zeros, ones = bytes(count), b"\x01" * count
    queued = []
    for at, (_size, q) in zip(offsets, slots):
        action = _action_columns(block, at, length, order)
        if q:
            if not (action[0] == ones and action[1] == zeros and action[2].translate(_QUEUE_BIT) == ones):
                return _bare_found(block, pos, order) if length == _SIZE * period else None
            queued.append(at)
        elif b"\x01" in action[0] and _queue_mask(action):
            return _bare_found(block, pos, order) if length == _SIZE * period else None  # a Q record out of place
    if slots == [(_SIZE, True)]:  # the records are the headers
        return block, pos + len(block)
    heads = bytearray(_SIZE * len(queued) * count)
    into, words = memoryview(heads).cast("Q"), memoryview(block).cast("Q")
    per_head = _SIZE // 8  # 64-bit words of a header
    width = per_head * len(queued)
    for r, offset in enumerate(queued):
        for w in range(per_head):
            into[per_head * r + w :: width] = words[offset // 8 + w :: length // 8]
    return bytes(heads), pos + len(block)


def _bare_headers(buf, pos, end, order):
    """(Q headers, end) of the whole records of ``buf[pos:end]`` when every one is a bare header (no payload),
    in any order of kinds, or None.

    ``blkfleet capture``'s events mode writes such windows: its Q and C records, interleaved as the IOs were queued
    and completed. As in ``_periodic``, every record is tested at once per field as strided byte columns (magic,
    payload length 0); ``_bare_found`` then takes the Q records out."""
    count = (end - pos) // _SIZE
    if count < 2 or buf[pos + _PDU_LEN_AT : pos + _PDU_LEN_AT + 2] != b"\0\0":
        return None  # (the first record has a payload: no copy of the window to find that out)
    block = bytes(buf[pos : pos + count * _SIZE])
    return _bare_found(block, pos, order) if _framed(block, 0, _SIZE, _SIZE, order) else None


def _bare_found(block, pos, order):
    """(Q headers, end) of a block of bare headers read at ``pos`` whose magic and payload lengths are checked:
    a byte per record says which are Q records (``_queue_mask``), and they are copied out as the runs
    they form (an application queues and completes IOs in runs), a slice per run."""
    queued = _queue_mask(_action_columns(block, 0, _SIZE, order)).to_bytes(len(block) // _SIZE, "little")
    runs, find = [], queued.find
    start = find(1)
    while start >= 0:  # a find per end of a run: a third less than a regular expression's matches
        stop = find(0, start)
        if stop < 0:
            runs.append(block[start * _SIZE :])
            break
        runs.append(block[start * _SIZE : stop * _SIZE])
        start = find(1, stop)
    return b"".join(runs), pos + len(block)


def _native_heads(heads, order, version=7):
    """Headers in the host's byte order."""
    if order == NATIVE:
        return heads
    foreign, native = layout(version, order), layout(version, NATIVE)
    return b"".join(native.pack(*fields) for fields in foreign.iter_unpack(heads))


def _q_headers(split, text):
    """The Q headers (joined) of a run of regular records, or None if the walk went astray (never expected)."""
    parts = split(text)
    if any(parts[0::3]):
        return None
    return b"".join(parts[2::3])


def _scan_v7(path, f, order):
    splitter, framing = _compiled(order)
    split = splitter.split
    regular = framing.match
    hdr = layout(7, order)
    expect = MAGIC | 7
    size = _SIZE
    i_magic, i_action, i_pdu_len = _AT["magic"], _AT["action"], _AT["pdu_len"]
    fast_pdu = set(FAST_PDU_LENS)
    state = _Buffer(f)
    window = WINDOW
    while True:
        state.fill(window)
        buf, pos = state.buf, state.pos
        n = len(buf)
        if pos >= n:
            return
        end = min(n, pos + window)
        found = _periodic(buf, pos, end, order)
        if found is None:
            found = _bare_headers(buf, pos, end, order)
        if found is not None:  # whole records: what is left of the window starts the next one
            heads, state.pos = found
            yield QueuedChunk(_native_heads(heads, order))
            window = min(window * 2, MAX_WINDOW)
            continue
        stop = regular(buf, pos, end).end()
        if stop > pos:
            heads = _q_headers(split, buf[pos:stop])
            if heads is None:
                stop = pos  # decode generically below
            elif heads:
                yield QueuedChunk(_native_heads(heads, order))
        state.pos = pos = stop
        if pos == end or end < n and end - pos < size + FAST_PDU_LENS[-1]:
            window = min(window * 2, MAX_WINDOW)
            continue  # all of the window, or all but a record cut by its end: the next window starts there
        # A record the expression does not describe, or cut by the end of the data read so far: decode
        # generically, and go on doing so while records are irregular.
        rows = []
        error = None
        while True:
            state.fill(size)
            buf, pos = state.buf, state.pos
            if len(buf) - pos < size:
                if len(buf) > pos:
                    error = TraceFormatError(path, state.base + pos,
                                             f"truncated record ({len(buf) - pos} of {size} bytes)")
                break
            fields = hdr.unpack_from(buf, pos)
            if fields[i_magic] != expect:
                error = TraceFormatError(path, state.base + pos,
                                         f"bad magic 0x{fields[i_magic]:08x} (expected 0x{expect:08x})")
                break
            pdu = fields[i_pdu_len]
            state.fill(size + pdu)
            buf, pos = state.buf, state.pos
            if len(buf) - pos < size + pdu:
                error = TraceFormatError(path, state.base + pos,
                                         f"truncated payload ({len(buf) - pos - size} of {pdu} bytes)")
                break
            if is_queue(fields[i_action]):
                rows.append(_ROW(fields))
            state.pos = pos + size + pdu
            if pdu in fast_pdu:
                break
            window = max(window // 4, MIN_WINDOW)
        if rows:
            yield QueuedChunk.from_rows(rows)
        if error:
            raise error


class _Buffer:
    """The bytes read so far that are not consumed yet: ``buf[pos:]``, ``base`` = file offset of ``buf[0]``.

    ``buf`` is a memoryview of one buffer that every ``fill`` reuses (the unconsumed bytes are moved to its
    front and the file is read after them): a new multi-megabyte object per read costs page faults (about 15 %
    of a conversion). Whatever must outlive the next ``fill`` is copied out of it."""

    def __init__(self, f):
        self.f = f
        self.store = bytearray()
        self.buf = memoryview(self.store)
        self.pos = self.base = 0
        self.eof = False

    def fill(self, need):
        """Make ``need`` unconsumed bytes available, or all that is left of the file."""
        have = len(self.buf) - self.pos
        if self.eof or have >= need:
            return
        size = have + max(CHUNK, need - have)
        left = self.buf[self.pos :]
        if len(self.store) < size:
            self.store = bytearray(max(size, CHUNK + MAX_WINDOW))
        view = memoryview(self.store)
        view[:have] = left  # within one buffer: a memmove
        filled = have
        while filled < need:
            got = self.f.readinto(view[filled:])
            if not got:
                self.eof = True
                break
            filled += got
        self.base += self.pos
        self.pos = 0
        self.buf = view[:filled]

"""Fast selection of queued IOs (Q events) from a trace file, for the converter.

A compiled regular expression walks the record framing in C. ``re.split`` with it returns, for every run of
non-Q records ended by a Q record, the run and the Q record; the Q headers are then decoded in bulk with
``memoryview.cast`` (or ``struct.iter_unpack`` for a foreign byte order) into columns. Whatever the expression
does not describe (unusual payload sizes, a bad magic, a record cut at the end of the window, protocol
version 8) goes to the generic decoder, so the result is exactly what filtering TraceReader would give.
"""

import re
import struct
import sys
from typing import NamedTuple

from ..errors import TraceFormatError
from .actions import is_queue
from .reader import TraceReader, detect
from .record import HEADER_SIZE, MAGIC, layout

CHUNK = 4 << 20
WINDOW = 256 << 10
MIN_WINDOW = 4 << 10
MAX_WINDOW = 2 << 20
FAST_PDU_LENS = (0, 8, 16, 24)


def _byte_class(pred):
    return b"[" + b"".join(re.escape(bytes([b])) for b in range(256) if pred(b)) + b"]"


def _pattern(order):
    """Two expressions for v7 records in a byte order: ``(run of non-Q records)(Q record with no payload | end
    of text)`` for ``re.split``, and the framing of any run of records with the usual payload sizes.

    Split is only given text that the framing expression consumed whole: every attempt then starts at a record
    boundary and succeeds, so the walk is linear (a failed attempt would be retried at every later offset)."""
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
    head = magic + b".{24}"
    other = head + other_action + b".{14}" + pdu
    queue = head + q_action + b".{14}" + re.escape(struct.pack(order + "H", 0))
    # possessive: no backtracking into the run. Not before 3.11.5: CPython gh-106052 (possessive repeats of a
    # subpattern that backtracks could match wrongly) breaks it on Debian 12's Python 3.11.2.
    star = b"*+" if sys.version_info >= (3, 11, 5) else b"*"
    run = b"(?:" + other + b")" + star
    framing = b"(?:" + head + b".{18}" + pdu + b")*"
    return re.compile(b"(" + run + b")(" + queue + rb"|\Z)", re.DOTALL), re.compile(framing, re.DOTALL)


_PATTERNS = {}


def _compiled(order):
    if order not in _PATTERNS:
        _PATTERNS[order] = _pattern(order)
    return _PATTERNS[order]


class Batch(NamedTuple):
    """Consecutive Q events of one file as columns (lists of equal length)."""

    times: list
    sectors: list
    nbytes: list
    actions: list
    pids: list

    @classmethod
    def from_rows(cls, rows):
        return cls(*map(list, zip(*rows))) if rows else cls([], [], [], [], [])


def _columns_of(heads, order):
    """Columns of a run of 48-byte v7 Q headers."""
    if (order == "<") == (sys.byteorder == "little"):
        view = memoryview(heads)
        q, i = view.cast("Q"), view.cast("I")
        return Batch(q[1::6].tolist(), q[2::6].tolist(), i[6::12].tolist(), i[7::12].tolist(), i[8::12].tolist())
    return Batch.from_rows(list(struct.iter_unpack(order + "8xQQIII12x", heads)))


def queued_batches(path):
    """Yield a Batch per run of Q events of a trace file, in file order."""
    with open(path, "rb") as f:
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
                    if len(rows) >= 4096:
                        yield Batch.from_rows(rows)
                        rows = []
        except TraceFormatError:  # the IOs before a bad record, then the error
            if rows:
                yield Batch.from_rows(rows)
            raise
        if rows:
            yield Batch.from_rows(rows)


def queued_ios(path):
    """Yield (time, sector, bytes, action, pid) for every Q event of a trace file, in file order."""
    for batch in queued_batches(path):
        yield from zip(*batch)


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
    size = HEADER_SIZE[7]
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
        stop = regular(buf, pos, end).end()
        if stop > pos:
            heads = _q_headers(split, buf[pos:stop])
            if heads is None:
                stop = pos  # decode generically below
            elif heads:
                yield _columns_of(heads, order)
        state.pos = pos = stop
        if pos == end:
            window = min(window * 2, MAX_WINDOW)
            continue
        if end < n and end - pos < size + FAST_PDU_LENS[-1]:
            continue  # a record cut by the window's end: the next window starts with it
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
            if fields[0] != expect:
                error = TraceFormatError(path, state.base + pos,
                                         f"bad magic 0x{fields[0]:08x} (expected 0x{expect:08x})")
                break
            pdu = fields[10]
            state.fill(size + pdu)
            buf, pos = state.buf, state.pos
            if len(buf) - pos < size + pdu:
                error = TraceFormatError(path, state.base + pos,
                                         f"truncated payload ({len(buf) - pos - size} of {pdu} bytes)")
                break
            if is_queue(fields[5]):
                rows.append((fields[2], fields[3], fields[4], fields[5], fields[6]))
            state.pos = pos + size + pdu
            if pdu in fast_pdu:
                break
            window = max(window // 4, MIN_WINDOW)
        if rows:
            yield Batch.from_rows(rows)
        if error:
            raise error


class _Buffer:
    """The bytes read so far that are not consumed yet: ``buf[pos:]``, ``base`` = file offset of ``buf[0]``."""

    def __init__(self, f):
        self.f = f
        self.buf = b""
        self.pos = self.base = 0
        self.eof = False

    def fill(self, need):
        """Make ``need`` unconsumed bytes available, or all that is left of the file."""
        have = len(self.buf) - self.pos
        if self.eof or have >= need:
            return
        parts = [self.buf[self.pos :]]
        while have < need:
            more = self.f.read(max(CHUNK, need - have))
            if not more:
                self.eof = True
                break
            parts.append(more)
            have += len(more)
        self.base += self.pos
        self.pos = 0
        self.buf = b"".join(parts)

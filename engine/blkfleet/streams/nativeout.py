"""Native replay files written from IOChunk columns (import and transform), bunched as ``blkfleet record`` does.

A file is written as ``NAME.partial`` and renamed when complete, so a failed run leaves no replay file. The IOs
of the bunch still open at the end of a chunk wait for the next one; bunch boundaries, packet layout and
bunch headers are the converter's own (record.convert: ``sorted_starts``, ``encode_bunches``), so a file written
here is laid out exactly as ``blkfleet record`` would lay out the same IOs.
"""

import os
from array import array
from itertools import chain, compress, repeat
from operator import sub

from ..errors import BlkfleetError
from ..files import open_new
from ..record.convert import encode_bunches, sorted_starts
from ..record.run import NATIVE_DEFAULTS
from ..record.summary import FileSummary
from ..replayfile import native
from ..replayfile.ops import OP_NAMES
from ..replayfile.reader import MAX_END, MAX_NBYTES, MAX_TIME
from . import chunks as ch


class NativeFile:
    """One native replay file being written: ``add(chunk)`` in time order, then ``close()`` (or ``abort()``).

    @path: the final name, @ios/@nbytes: IOs and bytes written, @by_op: [IOs, bytes] per op,
    @first/@last: first and last IO time (None while empty)."""

    def __init__(self, path, device=0, cpu=0, max_time=NATIVE_DEFAULTS[0], max_pkts=NATIVE_DEFAULTS[1]):
        self.path = str(path)
        self.max_time, self.max_pkts = max_time, max_pkts
        self._partial = self.path + ".partial"
        if os.path.lexists(self._partial):  # left by a run that died: never written through
            os.unlink(self._partial)
        self._file = open_new(self._partial)
        self._writer = native.NativeWriter(self._file, device, cpu, max_pkts)
        self._open = None  # the IOs of the bunch still open
        self.ios = self.nbytes = 0
        self.by_op = [[0, 0] for _ in OP_NAMES]
        self.first = self.last = None

    def add(self, chunk, checked=False):
        """Append IOs. Their times must not go below the last time written, and every IO must be one a replay file
        can hold (BlkfleetError); ``checked``: the caller made sure of both."""
        if not len(chunk):
            return
        if self.last is not None and chunk.times[0] < self.last:
            raise BlkfleetError(f"{self.path}: time goes backwards ({chunk.times[0]} ns after {self.last} ns)")
        if not checked:
            drop = ch.first_drop(chunk.times)
            if drop is not None:
                raise BlkfleetError(f"{self.path}: time goes backwards ({chunk.times[drop]} ns after "
                                    f"{chunk.times[drop - 1]} ns)")
            _check_limits(self.path, chunk)
        self._tally(chunk)
        if self.first is None:
            self.first = chunk.times[0]
        self.last = chunk.times[-1]
        pending = ch.join([self._open, chunk]) if self._open is not None else chunk
        starts = sorted_starts(pending.times, self.max_time, self.max_pkts)
        self._write(ch.cut(pending, 0, starts[-1]), starts)
        self._open = ch.cut(pending, starts[-1])

    def close(self):
        """Write the last bunch and the header; put the file in place."""
        self.finish()
        self.commit()

    def finish(self):
        """Write the last bunch and the header (the file is still ``NAME.partial``)."""
        if self._open is not None and len(self._open):
            self._write(self._open, sorted_starts(self._open.times, self.max_time, self.max_pkts) + [len(self._open)])
            self._open = None
        self._writer.close()
        self._file.close()

    def commit(self):
        """Put a finished file in place."""
        try:
            os.replace(self._partial, self.path)
        except OSError as e:
            raise BlkfleetError(f"{self.path}: cannot write the replay file: {e.strerror}") from None

    def abort(self):
        self._writer.abort()
        self._file.close()
        try:
            os.unlink(self._partial)
        except OSError:
            pass

    def _write(self, chunk, bounds):
        """The IOs of ``chunk`` as the bunches starting at ``bounds`` (then the end)."""
        n = len(chunk)
        if not n:
            return
        counts = list(map(sub, bounds[1:], bounds))
        bunch_times = list(map(chunk.times.__getitem__, bounds[:-1]))
        dts = array("I", map(sub, chunk.times, chain.from_iterable(map(repeat, bunch_times, counts))))
        sectors = memoryview(chunk.sectors).cast("B").cast("Q")
        pids = chunk.pids if chunk.pids is not None else array("I", bytes(4 * n))
        fields = [(sectors, 0, "Q"), (array("I", chunk.nbytes), 8, "I"), (dts, 12, "I"), (chunk.ops, 16, "B"),
                  (chunk.flags, 17, "B"), (pids, 20, "I")]
        data = encode_bunches(fields, bounds, bunch_times, self.max_pkts)
        self._writer.add_encoded_bunches(data, len(bounds) - 1, n, chunk.times[0], chunk.times[-1])

    def _tally(self, chunk):
        self.nbytes += tally(self.by_op, chunk)
        self.ios += len(chunk)

    def summary(self, device, source, cpu=0):
        """What ``blkfleet record`` reports of a file it wrote (record.summary.FileSummary), for this one."""
        s = FileSummary(device, cpu, source, self.path, "native")
        s.ios, s.bunches, s.by_op = self.ios, self._writer.bunches, [list(t) for t in self.by_op]
        s.first_time, s.last_time = self.first or 0, self.last or 0
        return s


_SELECT = [bytes(1 if b == op else 0 for b in range(256)) for op in range(len(OP_NAMES))]


def tally(by_op, chunk):
    """Add the chunk's IOs and bytes per op to ``by_op`` ([IOs, bytes] per op number); returns its bytes."""
    ops, sizes = chunk.ops, chunk.nbytes
    present = set(ops)
    total = sum(sizes)
    for op in present:
        if len(present) == 1:
            n, b = len(ops), total
        else:
            mask = ops.translate(_SELECT[op])
            n, b = mask.count(1), sum(compress(sizes, mask))
        by_op[op][0] += n
        by_op[op][1] += b
    return total


def _check_limits(path, chunk):
    """What no replay file can hold: a time of 2^63 ns or more, a negative time or sector, a length above a u32,
    an extent ending beyond 2^63 - 1 bytes, an op the format does not know."""
    problem = None
    if min(chunk.times) < 0 or max(chunk.times) > MAX_TIME:
        problem = "a time outside 0 .. 2^63 - 1 ns"
    elif min(chunk.sectors) < 0 or min(chunk.nbytes) < 0:
        problem = "a negative offset or length"
    elif max(chunk.nbytes) > MAX_NBYTES:
        problem = f"an IO longer than {MAX_NBYTES} bytes"
    elif max(chunk.sectors) > (MAX_END - MAX_NBYTES) // 512 and any(
            s * 512 + n > MAX_END for s, n in zip(chunk.sectors, chunk.nbytes)):
        problem = "an extent ending beyond 2^63 - 1 bytes"
    elif max(chunk.ops) >= len(OP_NAMES):
        problem = "an unknown operation"
    if problem:
        raise BlkfleetError(f"{path}: cannot hold {problem}")

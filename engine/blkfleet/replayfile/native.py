"""blkfleet's native replay file (``DEV.replay.CPU``, format version 1): see docs/formats.md.

It fixes btrecord's quirks: a magic and version, true counts, operations kept as such (read, write,
discard, flush, write-zeroes with FUA/sync/meta/readahead/preflush flags) and a time for every IO.
"""

import struct
from array import array
from functools import reduce
from operator import itemgetter, or_

from ..errors import TraceFormatError
from .ops import FLAG_NAMES, OP_NAMES
from .reader import MAX_TIME, PACKET_SIZE, IOChunk, ReplayReader, check_extents, check_time, small_sectors, u32_lanes

MAGIC = b"BFREPLAY"
VERSION = 1
HEADER = struct.Struct("<8sHHIQQQQIIII")
BUNCH = struct.Struct("<IIQ")
HEAD = struct.Struct("<I4xQ")  # what a reader takes from a bunch header: npkts and time
PACKET = struct.Struct("<QIIBBxxI")
F_COMPLETE = 1
MAX_DT = 0xFFFFFFFF  # a packet's offset from its bunch time is a u32 of nanoseconds
MAX_BUNCH = 1 << 16  # IOs in one bunch at most (record writes at most 4096): a bunch is read whole
KNOWN_FLAGS = sum(bit for bit, _name in FLAG_NAMES)
_SECTOR, _NBYTES, _DT, _OP, _FLAGS, _PID = map(itemgetter, range(6))


class NativeWriter:
    """Write one native file: ``add_bunch(time, packets)`` per bunch, then ``close()``."""

    def __init__(self, path, device=0, cpu=0, max_pkts=0):
        """``path``: a file name, or a binary file open for writing and seeking (``files.atomic_file``), which
        ``close`` and ``abort`` leave open for its owner."""
        self._i_opened_the_file = not hasattr(path, "write")
        self._f = open(path, "wb") if self._i_opened_the_file else path
        self.device = device
        self.cpu = cpu
        self.max_pkts = max_pkts
        self.genesis = 0
        self.last_time = 0
        self.ios = 0
        self.bunches = 0
        self._write_header(0)

    def _write_header(self, flags):
        self._f.seek(0)
        self._f.write(
            HEADER.pack(
                MAGIC, VERSION, HEADER.size, flags, self.genesis, self.last_time, self.ios, self.bunches,
                self.device, self.cpu, self.max_pkts, 0,
            )
        )
        self._f.seek(0, 2)

    def add_bunch(self, time, packets):
        """Append a bunch of (sector, nbytes, dt, op, flags, pid) packets."""
        data = BUNCH.pack(len(packets), 0, time) + b"".join(PACKET.pack(*p) for p in packets)
        self.add_encoded_bunches(data, 1, len(packets), time, time + max(p[2] for p in packets))

    def add_encoded_bunches(self, data, bunches, ios, time, last_time):
        """Append ``bunches`` encoded bunches holding ``ios`` IOs in all, from ``time`` to ``last_time``."""
        if not self.bunches:
            self.genesis = time
        self._f.write(data)
        self.bunches += bunches
        self.ios += ios
        self.last_time = last_time

    def close(self):
        self._write_header(F_COMPLETE)
        if self._i_opened_the_file:
            self._f.close()

    def abort(self):
        if self._i_opened_the_file and not self._f.closed:
            self._f.close()


class NativeReader(ReplayReader):
    """Read a native file; ``bunches()`` yields (time, [(sector, nbytes, dt, op, flags, pid), ...]), ``chunks()``
    IOChunks (with pids)."""

    kind = "native"
    COUNT = "I"  # how a bunch header's first field, npkts, is stored
    HEAD, PACKET, MAX_PKTS = HEAD, PACKET, MAX_BUNCH

    def _read_header(self):
        head = self._f.read(HEADER.size)
        if len(head) < HEADER.size:
            raise TraceFormatError(self.path, 0, f"truncated header ({len(head)} of {HEADER.size} bytes)")
        (magic, version, hsize, flags, self.genesis, self.last_time, self.io_count, self.bunch_count,
         self.device, self.cpu, self.max_pkts, _) = HEADER.unpack(head)
        if magic != MAGIC:
            raise TraceFormatError(self.path, 0, "not a blkfleet replay file (bad magic)")
        if version > VERSION:
            raise TraceFormatError(self.path, 8, f"replay format version {version} is newer than this engine's")
        if hsize < HEADER.size:
            raise TraceFormatError(self.path, 10, f"bad header size {hsize}")
        if self.max_pkts > MAX_BUNCH:
            raise TraceFormatError(self.path, 56, f"bad max_pkts {self.max_pkts} (at most {MAX_BUNCH})")
        if not flags & F_COMPLETE:
            raise TraceFormatError(self.path, 12, "incomplete replay file (its conversion did not finish)")
        self.version = version
        self._data = hsize

    def _checked_runs(self):
        ios = bunches = 0
        for run in super()._checked_runs():
            ios += sum(run.counts)
            bunches += len(run.counts)
            yield run
        if ios != self.io_count or bunches != self.bunch_count:
            raise TraceFormatError(
                self.path, self._end,
                f"holds {ios} IOs in {bunches} bunches, its header says {self.io_count} in {self.bunch_count}",
            )

    def _fast_ok(self, run):
        """Every IO of the run within the limits, tested on columns."""
        return (max(run.stamps) <= MAX_TIME - MAX_DT  # whatever the dt
                and not run.column(16).translate(None, _OPS_OK) and not run.column(17).translate(None, _FLAGS_OK)
                and small_sectors(run))

    def _check_bunch(self, offset, time, packets):
        """The first problem of a bunch, IO by IO (ops, flags, times and extents: see reader.py), else None."""
        problem = check_time(self.path, offset + 8, time + max(map(_DT, packets)))
        if problem:
            return problem
        if max(map(_OP, packets)) >= len(OP_NAMES) or reduce(or_, map(_FLAGS, packets)) & ~KNOWN_FLAGS:
            i, p = next((i, p) for i, p in enumerate(packets) if p[3] >= len(OP_NAMES) or p[4] & ~KNOWN_FLAGS)
            what = f"op {p[3]} (0..{len(OP_NAMES) - 1})" if p[3] >= len(OP_NAMES) else f"flags 0x{p[4]:02x}"
            return TraceFormatError(self.path, offset + BUNCH.size + i * PACKET.size + 16, f"unknown {what}")
        return check_extents(self.path, offset, packets, BUNCH.size, PACKET.size)

    def _columns(self, run):
        """An IOChunk of the run: time = bunch time + dt, added as 64-bit lanes of two big integers (no lane
        carries into the next: every time is below 2^63, checked)."""
        n = len(run.packets) // PACKET_SIZE
        dts = bytearray(8 * n)
        memoryview(dts).cast("I")[0::2] = run.words(3, "I")
        times = array("q")
        sums = int.from_bytes(dts, "little") + int.from_bytes(run.repeated_stamps(), "little")
        times.frombytes(sums.to_bytes(8 * n, "little"))
        pids = array("I")
        pids.frombytes(run.words(5, "I").tobytes())
        return IOChunk(times, run.sectors(), u32_lanes(run.words(2, "I")), run.column(16), run.column(17), pids)

    @staticmethod
    def _columns_from_tuples(packets, stamps):
        return IOChunk(array("q", [s + p[2] for s, p in zip(stamps, packets)]), array("q", map(_SECTOR, packets)),
                       array("q", map(_NBYTES, packets)), bytes(map(_OP, packets)), bytes(map(_FLAGS, packets)),
                       array("I", map(_PID, packets)))


_OPS_OK = bytes(range(len(OP_NAMES)))
_FLAGS_OK = bytes(range(KNOWN_FLAGS + 1))

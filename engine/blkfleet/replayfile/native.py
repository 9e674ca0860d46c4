"""blkfleet's native replay file (``DEV.replay.CPU``, format version 1): see docs/formats.md.

It fixes btrecord's quirks: a magic and version, true counts, operations kept as such (read, write,
discard, flush, write-zeroes with FUA/sync/meta/readahead/preflush flags) and a time for every IO.
"""

import struct
from functools import reduce
from operator import itemgetter, or_

from ..errors import TraceFormatError
from .ops import FLAG_NAMES, OP_NAMES
from .reader import ReplayReader, check_extents, check_time

MAGIC = b"BFREPLAY"
VERSION = 1
HEADER = struct.Struct("<8sHHIQQQQIIII")
BUNCH = struct.Struct("<IIQ")
PACKET = struct.Struct("<QIIBBxxI")
F_COMPLETE = 1
MAX_DT = 0xFFFFFFFF  # a packet's offset from its bunch time is a u32 of nanoseconds
MAX_BUNCH = 1 << 16  # IOs in one bunch at most (record writes at most 4096): a bunch is read whole
KNOWN_FLAGS = sum(bit for bit, _name in FLAG_NAMES)
_DT, _OP, _FLAGS = itemgetter(2), itemgetter(3), itemgetter(4)


class NativeWriter:
    """Write one native file: ``add_bunch(time, packets)`` per bunch, then ``close()``."""

    def __init__(self, path, device=0, cpu=0, max_pkts=0):
        self.path = str(path)
        self._f = open(path, "wb")
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
        self._f.close()

    def abort(self):
        if not self._f.closed:
            self._f.close()


class NativeReader(ReplayReader):
    """Read a native file; ``bunches()`` yields (time, [(sector, nbytes, dt, op, flags, pid), ...])."""

    kind = "native"

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

    def bunches(self):
        ios = bunches = 0
        offset = self._data
        for offset, (npkts, _, time), packets in self._walk(self._data, BUNCH, PACKET, MAX_BUNCH):
            self._check(offset, time, packets)
            yield time, packets
            ios += npkts
            bunches += 1
            offset += BUNCH.size + PACKET.size * npkts
        if ios != self.io_count or bunches != self.bunch_count:
            raise TraceFormatError(
                self.path, offset,
                f"holds {ios} IOs in {bunches} bunches, its header says {self.io_count} in {self.bunch_count}",
            )

    def _check(self, offset, time, packets):
        """Ops, flags, times and extents that every consumer can hold (see reader.py)."""
        check_time(self.path, offset + 8, time + max(map(_DT, packets)))
        if max(map(_OP, packets)) >= len(OP_NAMES) or reduce(or_, map(_FLAGS, packets)) & ~KNOWN_FLAGS:
            i, p = next((i, p) for i, p in enumerate(packets) if p[3] >= len(OP_NAMES) or p[4] & ~KNOWN_FLAGS)
            what = f"op {p[3]} (0..{len(OP_NAMES) - 1})" if p[3] >= len(OP_NAMES) else f"flags 0x{p[4]:02x}"
            raise TraceFormatError(self.path, offset + BUNCH.size + i * PACKET.size + 16, f"unknown {what}")
        check_extents(self.path, offset, packets, BUNCH.size, PACKET.size)

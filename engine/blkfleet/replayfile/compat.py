"""btrecord 1.2.0 replay files (``DEV.replay.CPU``), byte for byte, quirks included.

Layout (host order, little-endian here): a 32-byte header {version 0x10000, genesis, nbunches, total_pkts},
then bunches {npkts, time_stamp} each followed by npkts packets {sector, nbytes, rw (1 read, 0 write), pad}.
btrecord writes the final header *before* flushing the last bunch, so nbunches and total_pkts exclude it;
BtrecordWriter reproduces that.
"""

import struct

from ..errors import TraceFormatError
from .reader import ReplayReader, check_extents, check_time

VERSION = 0x10000
HEADER = struct.Struct("<QQQQ")
BUNCH = struct.Struct("<QQ")
PACKET = struct.Struct("<QQI4x")
MAX_PKTS = 512


class BtrecordWriter:
    """Write one btrecord file; call ``add_bunch`` per closed bunch and ``close`` at the end."""

    def __init__(self, path):
        self.path = str(path)
        self._f = open(path, "wb")
        self.genesis = 0
        self.bunches = 0
        self.packets = 0
        self._last = 0
        self.write_header()

    def write_header(self):
        """(Re)write the header with btrecord's counts: the last bunch is not included."""
        self._f.seek(0)
        self._f.write(HEADER.pack(VERSION, self.genesis, self.header_bunches, self.header_packets))
        self._f.seek(0, 2)

    @property
    def header_bunches(self):
        return max(self.bunches - 1, 0)

    @property
    def header_packets(self):
        return self.packets - self._last

    def add_bunch(self, time_stamp, packets):
        """Append a bunch of (sector, nbytes, rw) packets."""
        self.add_raw_bunch(BUNCH.pack(len(packets), time_stamp) + b"".join(PACKET.pack(*p) for p in packets))

    def add_raw_bunch(self, data):
        """Append an encoded bunch (16-byte header then its packets)."""
        npkts = (len(data) - BUNCH.size) // PACKET.size
        self.add_encoded_bunches(data, 1, npkts, npkts)

    def add_encoded_bunches(self, data, bunches, packets, last_packets):
        """Append ``bunches`` encoded bunches holding ``packets`` packets, ``last_packets`` in the last one."""
        self._f.write(data)
        self.bunches += bunches
        self.packets += packets
        self._last = last_packets

    def close(self, finalize=True):
        """Write the final header (unless the run failed: btrecord then leaves the provisional one)."""
        if self._f.closed:
            return
        if finalize:
            self.write_header()
        self._f.close()


class BtrecordReader(ReplayReader):
    """Read a btrecord file: header fields, then ``bunches()`` yields (time_stamp, [(sector, nbytes, rw)])."""

    kind = "btrecord"

    def _read_header(self):
        head = self._f.read(HEADER.size)
        if len(head) < HEADER.size:
            raise TraceFormatError(self.path, 0, f"truncated btrecord header ({len(head)} of 32 bytes)")
        self.version, self.genesis, self.nbunches, self.total_pkts = HEADER.unpack(head)
        if self.version != VERSION:
            raise TraceFormatError(self.path, 0, f"not a btrecord replay file (version 0x{self.version:x})")

    def bunches(self):
        for offset, (_npkts, stamp), packets in self._walk(HEADER.size, BUNCH, PACKET, MAX_PKTS):
            check_time(self.path, offset + 8, stamp)
            check_extents(self.path, offset, packets, BUNCH.size, PACKET.size)
            yield stamp, packets

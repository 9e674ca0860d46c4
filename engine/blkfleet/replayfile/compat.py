"""btrecord 1.2.0 replay files (``DEV.replay.CPU``), byte for byte, quirks included.

Layout (host order, little-endian here): a 32-byte header {version 0x10000, genesis, nbunches, total_pkts},
then bunches {npkts, time_stamp} each followed by npkts packets {sector, nbytes, rw (1 read, 0 write), pad}.
btrecord writes the final header *before* flushing the last bunch, so nbunches and total_pkts exclude it;
BtrecordWriter reproduces that.
"""

import struct
from array import array

from ..errors import TraceFormatError
from ..files import atomic_file
from .ops import READ, WRITE
from .reader import MAX_TIME, ZERO, IOChunk, ReplayReader, check_extents, check_time, small_sectors

VERSION = 0x10000
HEADER = struct.Struct("<QQQQ")
BUNCH = struct.Struct("<QQ")
PACKET = struct.Struct("<QQI4x")
MAX_PKTS = 512


class BtrecordWriter:
    """Write one btrecord file; call ``add_bunch`` per closed bunch and ``close`` at the end. It is written under a
    new name beside ``path`` and renamed over it at ``close`` (``files.atomic_file``): a link there is replaced,
    never written through."""

    def __init__(self, path):
        self.path = str(path)
        self._atomic = atomic_file(path, sync=False)
        self._f = self._atomic.__enter__()
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
        self._atomic.__exit__(None, None, None)


class BtrecordReader(ReplayReader):
    """Read a btrecord file: header fields, then ``bunches()`` yields (time_stamp, [(sector, nbytes, rw)]),
    ``chunks()`` IOChunks (every IO at its bunch's time; reads and writes only)."""

    kind = "btrecord"
    COUNT = "Q"  # how a bunch header's first field, npkts, is stored
    HEAD, PACKET, MAX_PKTS = BUNCH, PACKET, MAX_PKTS

    def _read_header(self):
        head = self._f.read(HEADER.size)
        if len(head) < HEADER.size:
            raise TraceFormatError(self.path, 0, f"truncated btrecord header ({len(head)} of 32 bytes)")
        self.version, self.genesis, self.nbunches, self.total_pkts = HEADER.unpack(head)
        if self.version != VERSION:
            raise TraceFormatError(self.path, 0, f"not a btrecord replay file (version 0x{self.version:x})")
        self._data = HEADER.size
        self._counted = (self.nbunches, self.total_pkts)

    def _checked_runs(self):
        """ReplayReader's; then a file that holds fewer bunches or IOs than its header counts (btrecord's counts
        leave out the last bunch, a provisional header has none) is refused as cut short."""
        ios = bunches = 0
        for run in super()._checked_runs():
            ios += sum(run.counts)
            bunches += len(run.counts)
            yield run
        if bunches < self.nbunches or ios < self.total_pkts:
            raise TraceFormatError(self.path, self._end, f"holds {ios} IOs in {bunches} bunches, fewer than its "
                                   f"header's {self.total_pkts} in {self.nbunches}: cut short")

    def _fast_ok(self, run):
        """Every IO of the run within the limits, tested on columns: times, lengths (u32) and extents."""
        return (max(run.stamps) <= MAX_TIME and not run.column(12, 4).translate(None, ZERO)
                and small_sectors(run))

    def _check_bunch(self, offset, stamp, packets):
        return check_time(self.path, offset + 8, stamp) or check_extents(self.path, offset, packets, BUNCH.size,
                                                                          PACKET.size)

    def _columns(self, run):
        times = array("q")
        times.frombytes(run.repeated_stamps())
        nbytes = array("q")
        nbytes.frombytes(run.words(1).tobytes())  # u32 values in u64 fields (checked)
        return IOChunk(times, run.sectors(), nbytes, run.column(16, 4).translate(_OP_OF_RW), bytes(len(nbytes)))

    @staticmethod
    def _columns_from_tuples(packets, stamps):
        return IOChunk(array("q", stamps), array("q", (p[0] for p in packets)), array("q", (p[1] for p in packets)),
                       bytes(READ if p[2] else WRITE for p in packets), bytes(len(packets)))


_OP_OF_RW = bytes([WRITE] + [READ] * 255)  # rw: 0 write, anything else read (btreplay tests it for non-zero)

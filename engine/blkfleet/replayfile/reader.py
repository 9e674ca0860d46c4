"""What both replay file readers share: the open file, walking its bunches, and the limits every IO obeys.

Every consumer (bundle create, replay, compare) stores IOs in signed 64-bit arrays and turns sectors into byte
offsets, so the readers refuse what cannot be held there: an op the format does not define, unknown flag bits,
a time of 2^63 ns or more, and an extent that ends beyond 2^63 - 1 bytes. A bunch's packet count is checked
against the bytes left in the file before anything is read, so a header count never decides an allocation.
"""

import os
from operator import itemgetter

from ..errors import TraceFormatError

MAX_TIME = (1 << 63) - 1  # ns: times live in signed 64-bit arrays
MAX_END = (1 << 63) - 1  # bytes: sector * 512 + nbytes is a signed 64-bit file offset
MAX_SECTOR = MAX_END // 512


class ReplayReader:
    """A replay file open for reading; subclasses read their header in ``_read_header``."""

    kind = "?"

    def __init__(self, path):
        self.path = str(path)
        self._f = open(path, "rb")
        try:
            self._size = os.fstat(self._f.fileno()).st_size
            self._read_header()
        except BaseException:
            self._f.close()
            raise

    def _read_header(self):
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._f.close()

    def _walk(self, start, bunch, packet, max_pkts):
        """Yield (offset, bunch header fields, packets) from ``start`` to the end of the file; ``bunch``'s
        first field is the packet count (1..max_pkts, and no more than the bytes left in the file hold)."""
        f = self._f
        f.seek(start)
        offset = start
        while True:
            head = f.read(bunch.size)
            if not head:
                return
            if len(head) < bunch.size:
                raise TraceFormatError(self.path, offset, f"truncated bunch header ({len(head)} of {bunch.size} bytes)")
            fields = bunch.unpack(head)
            npkts = fields[0]
            if not 0 < npkts <= max_pkts:
                raise TraceFormatError(self.path, offset, f"bad bunch size {npkts} (1..{max_pkts})")
            size = packet.size * npkts
            left = max(self._size - offset - bunch.size, 0)
            if size > left:
                raise TraceFormatError(self.path, offset + bunch.size,
                                       f"truncated bunch ({left} of {size} bytes for {npkts} IOs)")
            body = f.read(size)
            if len(body) < size:
                raise TraceFormatError(self.path, offset + bunch.size, f"truncated bunch ({len(body)} of {size} bytes)")
            yield offset, fields, list(packet.iter_unpack(body))
            offset += bunch.size + size


_SECTOR = itemgetter(0)
_NBYTES = itemgetter(1)
MAX_NBYTES = 0xFFFFFFFF  # a traced IO's length is a u32 (btrecord stores it in 64 bits)


def check_extents(path, offset, packets, header_size, packet_size):
    """Refuse a packet whose extent (sector, nbytes: its first two fields) ends beyond MAX_END bytes, or whose
    length is more than a u32."""
    if max(map(_NBYTES, packets)) > MAX_NBYTES:
        i, p = next((i, p) for i, p in enumerate(packets) if p[1] > MAX_NBYTES)
        raise TraceFormatError(path, offset + header_size + i * packet_size + 8,
                               f"IO length {p[1]} bytes is more than {MAX_NBYTES}")
    if max(map(_SECTOR, packets)) < MAX_SECTOR - (1 << 23):  # the usual case: far below, whatever nbytes (u32)
        return
    for i, p in enumerate(packets):
        if p[0] > MAX_SECTOR or p[0] * 512 + p[1] > MAX_END:
            raise TraceFormatError(path, offset + header_size + i * packet_size,
                                   f"sector {p[0]} + {p[1]} bytes ends beyond 2^63 - 1 bytes")


def check_time(path, offset, time):
    if time > MAX_TIME:
        raise TraceFormatError(path, offset, f"time {time} ns is 2^63 ns or more")

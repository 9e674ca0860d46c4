"""What both replay file readers share: the open file, and walking its bunches."""

from ..errors import TraceFormatError


class ReplayReader:
    """A replay file open for reading; subclasses read their header in ``_read_header``."""

    kind = "?"

    def __init__(self, path):
        self.path = str(path)
        self._f = open(path, "rb")
        try:
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
        first field is the packet count (1..max_pkts)."""
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
            body = f.read(size)
            if len(body) < size:
                raise TraceFormatError(self.path, offset + bunch.size, f"truncated bunch ({len(body)} of {size} bytes)")
            yield offset, fields, list(packet.iter_unpack(body))
            offset += bunch.size + size

"""Writer of blktrace record files (used by the ftrace capture backend and by tests)."""

from .record import HEADER_SIZE, MAGIC, TraceRecord, layout


class TraceWriter:
    """Append records to a ``DEV.blktrace.CPU`` file in a chosen byte order and protocol version."""

    def __init__(self, path_or_file, version=7, byteorder="<"):
        if version not in HEADER_SIZE:
            raise ValueError(f"unsupported blktrace protocol version {version}")
        self._own = isinstance(path_or_file, (str, bytes)) or hasattr(path_or_file, "__fspath__")
        self._f = open(path_or_file, "wb") if self._own else path_or_file
        self.version = version
        self._hdr = layout(version, byteorder)
        self._magic = MAGIC | version
        self.records = 0
        self.bytes_written = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._own:
            self._f.close()

    def encode(self, rec: TraceRecord):
        """The bytes of one record (header + payload)."""
        if self.version == 8:
            head = self._hdr.pack(
                self._magic, rec.sequence, rec.time, rec.sector, rec.bytes, rec.pid, rec.action,
                rec.device, rec.cpu, rec.error & 0xFFFF, len(rec.pdu),
            )
        else:
            head = self._hdr.pack(
                self._magic, rec.sequence, rec.time, rec.sector, rec.bytes, rec.action & 0xFFFFFFFF,
                rec.pid, rec.device, rec.cpu, rec.error & 0xFFFF, len(rec.pdu),
            )
        return head + rec.pdu

    def write(self, rec: TraceRecord):
        data = self.encode(rec)
        self._f.write(data)
        self.records += 1
        self.bytes_written += len(data)

    def write_raw(self, data):
        """Append already-encoded records (same version and byte order)."""
        self._f.write(data)
        self.bytes_written += len(data)

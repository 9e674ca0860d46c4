"""Streaming reader of ``DEV.blktrace.CPU`` files, native or byte-swapped, protocol versions 7 and 8."""

import struct

from ..errors import TraceFormatError
from ..files import open_file
from .record import HEADER_SIZE, MAGIC, MAGIC_MASK, SUPPORTED_VERSIONS, TraceRecord, layout

CHUNK = 1 << 20


def detect(head, path="<trace>"):
    """Return (byteorder, version) from the first record's magic, or raise TraceFormatError."""
    if len(head) < 4:
        raise TraceFormatError(path, 0, f"truncated record ({len(head)} of {HEADER_SIZE[7]} bytes)")
    for order in ("<", ">"):
        (magic,) = struct.unpack_from(order + "I", head)
        if magic & MAGIC_MASK == MAGIC:
            version = magic & 0xFF
            if version not in SUPPORTED_VERSIONS:
                raise TraceFormatError(path, 0, f"unsupported blktrace protocol version {version}")
            return order, version
    (magic,) = struct.unpack_from("<I", head)
    raise TraceFormatError(path, 0, f"not a blktrace file (bad magic 0x{magic:08x})")


class TraceReader:
    """Iterate the records of one trace file with bounded memory.

    >>> with TraceReader("sda.blktrace.0") as r:
    ...     for rec in r: ...

    ``byteorder`` and ``version`` are known after the first record (``None`` for an empty file).
    Bad magic, an unsupported version or a truncated record raise TraceFormatError with the byte offset.
    """

    def __init__(self, path, fileobj=None):
        self.path = str(path)
        self._own = fileobj is None
        self._f = open_file(path) if fileobj is None else fileobj
        self.byteorder = None
        self.version = None
        self.offset = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._own:
            self._f.close()

    def __iter__(self):
        f, path = self._f, self.path
        buf = f.read(CHUNK)
        if not buf:
            return
        self.byteorder, self.version = detect(buf, path)
        hdr = layout(self.version, self.byteorder)
        size = HEADER_SIZE[self.version]
        expect = MAGIC | self.version
        v8 = self.version == 8
        pos = 0
        base = 0
        while True:
            if len(buf) - pos < size:
                more = f.read(CHUNK)
                buf = buf[pos:] + more
                base += pos
                pos = 0
                if not more:
                    if buf:
                        raise TraceFormatError(path, base, f"truncated record ({len(buf)} of {size} bytes)")
                    return
                continue
            fields = hdr.unpack_from(buf, pos)
            if fields[0] != expect:
                raise TraceFormatError(path, base + pos, f"bad magic 0x{fields[0]:08x} (expected 0x{expect:08x})")
            pdu_len = fields[10]
            end = pos + size + pdu_len
            if end > len(buf):
                more = f.read(max(CHUNK, end - len(buf)))
                buf = buf[pos:] + more
                base += pos
                pos = 0
                if len(buf) < size + pdu_len:
                    raise TraceFormatError(
                        path, base, f"truncated payload ({len(buf) - size} of {pdu_len} bytes)"
                    )
                continue
            self.offset = base + pos
            pdu = bytes(buf[pos + size:end]) if pdu_len else b""
            if v8:
                _, seq, t, sector, nbytes, pid, action, device, cpu, err, _ = fields
            else:
                _, seq, t, sector, nbytes, action, pid, device, cpu, err, _ = fields
            yield TraceRecord(t, sector, nbytes, action, pid, device, cpu, err, pdu, seq, self.version)
            pos = end


def read_records(path):
    """All records of a file as a generator (convenience over TraceReader)."""
    with TraceReader(path) as reader:
        yield from reader

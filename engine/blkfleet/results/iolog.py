"""The per-IO log of a replay (``blkfleet replay --io-log FILE``): every IO's submit time, lateness, latency and
result, streamed to disk as the replay runs (docs/formats.md, "Per-IO log").

Layout, little-endian. A header of ``header_size`` bytes:

====== ===== =====================================================================================
offset type  field
====== ===== =====================================================================================
0      8s    magic ``BFIOLOG\\0``
8      u16   version (1)
10     u16   header_size: 64 + the device table, a multiple of 8
12     u32   flags: bit 0 set once the log was closed cleanly (its counts are then final)
16     i64   start_monotonic_ns: CLOCK_MONOTONIC of the first iteration's start instant
24     i64   start_wall_ns: CLOCK_REALTIME (ns since the epoch) at that instant, as the host saw it
32     u64   records: IOs in the log (final once closed)
40     u64   blocks
48     u32   devices: entries of the device table
52     12x   reserved (0)
64     ...   device table: per device u16 name length, u16 target length, the recorded name and the target
             path (UTF-8); zero-padded to a multiple of 8
====== ===== =====================================================================================

then blocks, each a 32-byte header {4s ``IOBK``, u32 count, u32 iteration (1-based), u32 worker slot, i64
iteration_start_monotonic_ns, 8x} and ``count`` IOs as columns, each zero-padded to a multiple of 8 bytes:
submit_ns i64 (after the iteration's start), lateness_ns i64 (submit - due), latency_ns i64, result i64 (bytes
done, or -errno), offset u64 (bytes), nbytes u32, device u16 (index into the device table), op u8 (the
operation done: 0 read, 1 write, 2 discard, 3 flush, 4 write-zeroes). IOs are in the order they completed.

A log whose writer was killed has flag bit 0 clear: its whole blocks are read, a cut-off last block is ignored.
"""

import os
import struct
from array import array

from ..errors import BlkfleetError, TraceFormatError
from ..files import open_file, open_new
from ..replayfile.ops import OP_NAMES

MAGIC = b"BFIOLOG\0"
VERSION = 1
HEADER = struct.Struct("<8sHHIqqQQI12x")
BLOCK = struct.Struct("<4sIIIq8x")
BLOCK_MAGIC = b"IOBK"
F_COMPLETE = 1
COLUMNS = (("submit_ns", "q"), ("lateness_ns", "q"), ("latency_ns", "q"), ("result", "q"), ("offset", "Q"),
           ("nbytes", "I"), ("device", "H"), ("op", "B"))
MAX_BLOCK = 1 << 20  # IOs in one block at most (a reader never allocates more for one)


def _pad(n):
    return -n % 8


def _column_bytes(code, count):
    size = array(code).itemsize * count
    return size + _pad(size)


def block_size(count):
    return BLOCK.size + sum(_column_bytes(code, count) for _name, code in COLUMNS)


class IOLogWriter:
    """Append blocks to a new log (created O_EXCL|O_NOFOLLOW: an existing file is never overwritten)."""

    def __init__(self, path, devices, start_monotonic_ns, start_wall_ns):
        self.path = path
        table = b""
        for name, target in devices:
            a, b = name.encode(), target.encode()
            table += struct.pack("<HH", len(a), len(b)) + a + b
        table += bytes(_pad(len(table)))
        self.header_size = HEADER.size + len(table)
        self.ndevices = len(devices)
        self.start = (start_monotonic_ns, start_wall_ns)
        self.records = self.blocks = 0
        try:
            self._f = open_new(path, 0o644)
        except OSError as e:
            raise BlkfleetError(f"{path}: cannot create the IO log: {e.strerror}") from None
        self._f.write(self._header(0) + table)

    def _header(self, flags):
        return HEADER.pack(MAGIC, VERSION, self.header_size, flags, self.start[0], self.start[1], self.records,
                           self.blocks, self.ndevices)

    def set_start(self, start_monotonic_ns, start_wall_ns):
        self.start = (start_monotonic_ns, start_wall_ns)

    def write_block(self, iteration, worker, iteration_start_ns, columns):
        """``columns``: sequences in COLUMNS order, all of one length."""
        count = len(columns[0])
        for first in range(0, count, MAX_BLOCK):
            last = min(count, first + MAX_BLOCK)
            parts = [BLOCK.pack(BLOCK_MAGIC, last - first, iteration, worker, iteration_start_ns)]
            for (_name, code), values in zip(COLUMNS, columns):
                data = array(code, values[first:last]).tobytes()
                parts.append(data + bytes(_pad(len(data))))
            self._f.write(b"".join(parts))
            self.records += last - first
            self.blocks += 1

    def close(self):
        if self._f.closed:
            return
        self._f.flush()
        self._f.seek(0)
        self._f.write(self._header(F_COMPLETE))
        self._f.close()


class IOLog:
    """A log opened for reading: ``devices`` [(name, target)], ``start_monotonic_ns``, ``start_wall_ns``,
    ``complete``; ``blocks()`` yields (iteration, worker, iteration_start_ns, {column name: array})."""

    def __init__(self, path):
        self.path = str(path)
        try:
            self._f = open_file(path)
        except OSError as e:
            raise BlkfleetError(f"{path}: cannot read the IO log: {e.strerror}") from None
        try:
            self._size = os.fstat(self._f.fileno()).st_size
            self._read_header()
        except BaseException:
            self._f.close()
            raise

    def _read_header(self):
        head = self._f.read(HEADER.size)
        if len(head) < HEADER.size or head[:8] != MAGIC:
            raise TraceFormatError(self.path, 0, "not a blkfleet IO log (bad magic)")
        (_m, version, hsize, flags, self.start_monotonic_ns, self.start_wall_ns, self.records, self.block_count,
         ndev) = HEADER.unpack(head)
        if version > VERSION:
            raise TraceFormatError(self.path, 8, f"IO log version {version} is newer than this engine's")
        if version < 1:
            raise TraceFormatError(self.path, 8, f"bad IO log version {version} (versions start at 1)")
        if hsize < HEADER.size or hsize % 8 or hsize > self._size:
            raise TraceFormatError(self.path, 10, f"bad header size {hsize}")
        table = self._f.read(hsize - HEADER.size)
        self.devices = []
        pos = 0
        for _ in range(ndev):
            if pos + 4 > len(table):
                raise TraceFormatError(self.path, HEADER.size + pos, "device table cut short")
            a, b = struct.unpack_from("<HH", table, pos)
            pos += 4
            if pos + a + b > len(table):
                raise TraceFormatError(self.path, HEADER.size + pos, "device table cut short")
            try:
                self.devices.append((table[pos:pos + a].decode(), table[pos + a:pos + a + b].decode()))
            except UnicodeDecodeError:
                raise TraceFormatError(self.path, HEADER.size + pos, "device name is not UTF-8") from None
            pos += a + b
        self.complete = bool(flags & F_COMPLETE)
        self._data = hsize

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def blocks(self):
        f = self._f
        offset = self._data
        f.seek(offset)
        records = blocks = 0
        while True:
            head = f.read(BLOCK.size)
            if not head:
                break
            if len(head) == BLOCK.size:  # a whole header is checked before its size is trusted
                magic, count, iteration, worker, it_start = BLOCK.unpack(head)
                if magic != BLOCK_MAGIC or count > MAX_BLOCK:
                    raise TraceFormatError(self.path, offset, "bad block header")
            if len(head) < BLOCK.size or offset + block_size(count) > self._size:
                if self.complete:
                    raise TraceFormatError(self.path, offset, "truncated block")
                break  # the writer was killed: its last block was cut off
            size = block_size(count)
            cols = {}
            for name, code in COLUMNS:
                col = array(code)
                n = _column_bytes(code, count)
                col.frombytes(f.read(n)[:col.itemsize * count])
                cols[name] = col
            ndev = len(self.devices)
            if count:
                if max(cols["device"]) >= ndev:
                    raise TraceFormatError(self.path, offset, f"device index beyond the {ndev}-entry device table")
                if max(cols["op"]) >= len(OP_NAMES):
                    raise TraceFormatError(self.path, offset, f"operation code {max(cols['op'])} unknown")
                if min(cols["submit_ns"]) < 0 or min(cols["latency_ns"]) < 0:
                    raise TraceFormatError(self.path, offset, "a negative submit time or latency")
                if max(cols["offset"]) >= 1 << 63:
                    raise TraceFormatError(self.path, offset, "an offset beyond 2^63 bytes")
            yield iteration, worker, it_start, cols
            records += count
            blocks += 1
            offset += size
        if self.complete and (records != self.records or blocks != self.block_count):
            raise TraceFormatError(self.path, offset, f"holds {records} IOs in {blocks} blocks, its header says "
                                   f"{self.records} in {self.block_count}")


def is_iolog(path):
    """Whether ``path`` is a regular file starting with the IO log's magic."""
    try:
        with open_file(path) as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False

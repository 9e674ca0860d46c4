"""blkfleet's native replay file (``DEV.replay.CPU``, format versions 1 and 2): see docs/formats.md.

It fixes btrecord's quirks: a magic and version, true counts, operations kept as such (read, write,
discard, flush, write-zeroes with FUA/sync/meta/readahead/preflush flags) and a time for every IO. Version 2
(header flag ``TIMING``) adds to every bunch an extension after its packets: per IO a 32-byte timing record
(its number in the device's time order, think time, latency, IOs in flight at issue, number of parents), then
the parents of its IOs as u32 distances back (``reader.Timing``). A file without that flag is written as
version 1, byte for byte what earlier engines wrote.
"""

import struct
from array import array
from functools import reduce
from itertools import chain, repeat
from operator import itemgetter, or_

from ..errors import BlkfleetError, TraceFormatError
from .ops import FLAG_NAMES, OP_NAMES
from .reader import (
    LITTLE,
    MAX_TIME,
    PACKET_SIZE,
    IOChunk,
    ReplayReader,
    Timing,
    check_extents,
    check_time,
    small_sectors,
    u32_lanes,
)

MAGIC = b"BFREPLAY"
VERSION = 2
PLAIN_VERSION = 1  # a file without timing
HEADER = struct.Struct("<8sHHIQQQQIIII")
BUNCH = struct.Struct("<IIQ")  # npkts, extension bytes (version 2; 0 in version 1), time
HEAD = struct.Struct("<I4xQ")  # what a reader takes from a bunch header: npkts and time
PACKET = struct.Struct("<QIIBBxxI")
F_COMPLETE = 1
F_TIMING = 2
EXT = struct.Struct("<I")  # a version 2 bunch header's second field: bytes of extension after its packets
TIMING = struct.Struct("<QQIIH6x")  # per IO: seq, think ns, latency ns, in flight, number of parents
LATENCY_UNKNOWN = 0xFFFFFFFF  # the latency field of an IO whose completion was not recorded
LATENCY_MAX = LATENCY_UNKNOWN - 1  # longer latencies are stored as this
MAX_DEPS = 1024  # parents of one IO at most
MAX_DT = 0xFFFFFFFF  # a packet's offset from its bunch time is a u32 of nanoseconds
MAX_BUNCH = 1 << 16  # IOs in one bunch at most (record writes at most 4096): a bunch is read whole
KNOWN_FLAGS = sum(bit for bit, _name in FLAG_NAMES)
_TOP = 3 if LITTLE else 0  # the byte of a native u32 that holds its top bit
_LOW7 = bytes(b & 0x7F for b in range(256))
_SECTOR, _NBYTES, _DT, _OP, _FLAGS, _PID = map(itemgetter, range(6))


class NativeWriter:
    """Write one native file: ``add_bunch(time, packets)`` per bunch, then ``close()``.

    ``timing``: every bunch carries the timing extension (version 2, flag TIMING); ``add_bunch`` then takes it
    as ``timings`` (see ``encode_timing``)."""

    def __init__(self, path, device=0, cpu=0, max_pkts=0, timing=False):
        """``path``: a file name, or a binary file open for writing and seeking (``files.atomic_file``), which
        ``close`` and ``abort`` leave open for its owner."""
        self._i_opened_the_file = not hasattr(path, "write")
        self._f = open(path, "wb") if self._i_opened_the_file else path
        self.device = device
        self.cpu = cpu
        self.max_pkts = max_pkts
        self.timing = timing
        self.genesis = 0
        self.last_time = 0
        self.ios = 0
        self.bunches = 0
        self._write_header(0)

    def _write_header(self, flags):
        self._f.seek(0)
        self._f.write(
            HEADER.pack(
                MAGIC, VERSION if self.timing else PLAIN_VERSION, HEADER.size, flags | (F_TIMING if self.timing else 0),
                self.genesis, self.last_time, self.ios, self.bunches, self.device, self.cpu, self.max_pkts, 0,
            )
        )
        self._f.seek(0, 2)

    def add_bunch(self, time, packets, timings=None):
        """Append a bunch of (sector, nbytes, dt, op, flags, pid) packets (with ``timing``: and the
        (seq, think, latency, inflight, parents) of each, ``encode_timing``'s)."""
        ext = encode_timing(timings) if self.timing else b""
        data = BUNCH.pack(len(packets), len(ext), time) + b"".join(PACKET.pack(*p) for p in packets) + ext
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


def encode_timing(timings):
    """A bunch's extension from (seq, think, latency or None, inflight, [dep, ...]) per IO (deps as stored:
    distance back, bit 31 for an after-issue parent): the fixed records, then every IO's parents, padded to 8."""
    fixed, deps = [], []
    for seq, think, latency, inflight, parents in timings:
        if len(parents) > MAX_DEPS:
            raise BlkfleetError(f"IO {seq}: {len(parents)} parents, a replay file holds at most {MAX_DEPS} per IO")
        lat = LATENCY_UNKNOWN if latency is None or latency < 0 else min(latency, LATENCY_MAX)
        fixed.append(TIMING.pack(seq, think, lat, inflight, len(parents)))
        deps += parents
    tail = struct.pack(f"<{len(deps)}I", *deps)
    return b"".join(fixed) + tail + bytes(-len(tail) % 8)


class NativeReader(ReplayReader):
    """Read a native file; ``bunches()`` yields (time, [(sector, nbytes, dt, op, flags, pid), ...]), ``chunks()``
    IOChunks (with pids)."""

    kind = "native"
    decode_timing = False  # chunks carry the IOs' Timing (else the extensions are only checked for size)
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
        if version < 1:
            raise TraceFormatError(self.path, 8, f"bad replay format version {version} (versions start at 1)")
        if flags & F_TIMING and version < 2:
            raise TraceFormatError(self.path, 12, f"version {version} file with the TIMING flag (version 2 on)")
        if version >= 2 and not flags & F_TIMING:  # its bunches' extension sizes would be taken for reserved zeros
            raise TraceFormatError(self.path, 12, f"version {version} file without the TIMING flag (a file without "
                                   "timing is version 1)")
        if hsize < HEADER.size:
            raise TraceFormatError(self.path, 10, f"bad header size {hsize}")
        if self.max_pkts > MAX_BUNCH:
            raise TraceFormatError(self.path, 56, f"bad max_pkts {self.max_pkts} (at most {MAX_BUNCH})")
        if not flags & F_COMPLETE:
            raise TraceFormatError(self.path, 12, "incomplete replay file (its conversion did not finish)")
        self.version = version
        self.timing = bool(flags & F_TIMING)
        if self.timing:
            self.EXT = EXT
            self._last_seq = -1
        self._data = hsize
        self._counted = (self.bunch_count, self.io_count)

    def _checked_runs(self):
        ios = bunches = 0
        for run in super()._checked_runs():
            ios += sum(run.counts)
            bunches += len(run.counts)
            if run.exts is not None and self.decode_timing:
                run.timing = self._timing(run)
            yield run
        if ios != self.io_count or bunches != self.bunch_count:
            raise TraceFormatError(
                self.path, self._end,
                f"holds {ios} IOs in {bunches} bunches, its header says {self.io_count} in {self.bunch_count}",
            )

    @staticmethod
    def _ext_fits(npkts, extra):
        """Whether a bunch of ``npkts`` IOs may have ``extra`` bytes of extension (before reading them): a bound,
        the limit of MAX_DEPS parents being each IO's (``_timing`` checks it IO by IO)."""
        return extra % 8 == 0 and TIMING.size * npkts <= extra <= (TIMING.size + 4 * MAX_DEPS) * npkts + 4

    def _timing(self, run):
        """The run's Timing, its every field checked: each extension's size, parents that come before their
        child (and after the device's first IO), numbers that rise through the file."""
        size = TIMING.size
        fixed = b"".join(e[:size * n] for e, n in zip(run.exts, run.counts))
        if LITTLE:
            words, halves = memoryview(fixed).cast("Q"), memoryview(fixed).cast("I")
            seqs, thinks, lats = array("q"), array("q"), u32_lanes(halves[4::8])
            seqs.frombytes(words[0::4].tobytes())
            thinks.frombytes(words[1::4].tobytes())
            inflight = array("I")
            inflight.frombytes(halves[5::8].tobytes())
            ndeps = array("H")
            ndeps.frombytes(memoryview(fixed).cast("H")[12::16].tobytes())
        else:
            rows = list(TIMING.iter_unpack(fixed))
            seqs, thinks = array("q", [r[0] for r in rows]), array("q", [r[1] for r in rows])
            lats, inflight, ndeps = (array("q", [r[2] for r in rows]), array("I", [r[3] for r in rows]),
                                     array("H", [r[4] for r in rows]))
        if LATENCY_UNKNOWN in lats:
            lats = array("q", [-1 if v == LATENCY_UNKNOWN else v for v in lats])
        if max(ndeps) > MAX_DEPS:
            raise self._too_many_parents(run, ndeps)
        parts, at = [], 0
        for offset, n, ext in zip(run.offsets, run.counts, run.exts):
            want = 4 * sum(ndeps[at:at + n])
            if len(ext) != size * n + want + (-want % 8):
                raise TraceFormatError(self.path, offset + 4, f"bunch extension of {len(ext)} bytes, its IOs "
                                       f"need {size * n + want + (-want % 8)}")
            parts.append(ext[size * n:size * n + want])
            at += n
        deps = array("I")
        deps.frombytes(b"".join(parts))
        if not LITTLE:
            deps.byteswap()
        problem = self._timing_problem(seqs, thinks, ndeps, deps)
        if problem:
            raise TraceFormatError(self.path, run.offsets[0], problem)
        self._last_seq = seqs[-1]
        return Timing(seqs, lats, inflight, thinks, ndeps, deps)

    def _too_many_parents(self, run, ndeps):
        """The error of the run's first IO with more than MAX_DEPS parents, naming its timing record's ndeps."""
        at = 0
        for offset, n in zip(run.offsets, run.counts):
            for k in range(n):
                if ndeps[at + k] > MAX_DEPS:
                    return TraceFormatError(self.path, offset + BUNCH.size + PACKET.size * n + TIMING.size * k + 24,
                                            f"an IO with {ndeps[at + k]} parents (at most {MAX_DEPS})")
            at += n
        return None

    def _timing_problem(self, seqs, thinks, ndeps, deps):
        """What no replay can hold in a run's timing, or None: numbers that do not rise, a parent at or after its
        child or before the first IO, a negative think time."""
        if seqs[0] <= self._last_seq or any(map(int.__le__, seqs[1:], seqs)):
            return "IO numbers (seq) do not rise"
        if min(seqs) < 0 or min(thinks) < 0:
            return "a negative IO number or think time"
        if deps:
            raw = bytearray(deps.tobytes())  # the distances: each u32 with its top bit (the issue flag) cleared
            raw[_TOP::4] = raw[_TOP::4].translate(_LOW7)
            distances = array("I")
            distances.frombytes(raw)
            if not min(distances):
                return "an IO depends on itself"
            if max(distances) > seqs[0]:  # seqs rise: only then may some parent reach before the first IO
                children = chain.from_iterable(map(repeat, seqs, ndeps))
                if any(map(int.__gt__, distances, children)):
                    return "a parent before the device's first IO"
        return None

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
        return IOChunk(times, run.sectors(), u32_lanes(run.words(2, "I")), run.column(16), run.column(17), pids,
                       run.timing)

    def _columns_of_tuples(self, run):
        chunk = super()._columns_of_tuples(run)
        chunk.timing = run.timing
        return chunk

    @staticmethod
    def _columns_from_tuples(packets, stamps):
        return IOChunk(array("q", [s + p[2] for s, p in zip(stamps, packets)]), array("q", map(_SECTOR, packets)),
                       array("q", map(_NBYTES, packets)), bytes(map(_OP, packets)), bytes(map(_FLAGS, packets)),
                       array("I", map(_PID, packets)))


_OPS_OK = bytes(range(len(OP_NAMES)))
_FLAGS_OK = bytes(range(KNOWN_FLAGS + 1))

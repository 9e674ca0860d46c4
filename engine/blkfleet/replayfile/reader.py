"""What both replay file readers share: the open file, reading its bunches in runs, the limits every IO obeys,
and the columns that ``chunks()`` gives.

Every consumer (bundle create, replay, compare) stores IOs in signed 64-bit arrays and turns sectors into byte
offsets, so the readers refuse what cannot be held there: an op the format does not define, unknown flag bits,
a time of 2^63 ns or more, and an extent that ends beyond 2^63 - 1 bytes. A bunch's packet count is checked
against the bytes left in the file before anything is read, so a header count never decides an allocation.

The file is read BLOCK bytes at a time. Where the block starts with bunches of one size back to back (what a
conversion of a busy trace writes), their headers are read as strided columns; otherwise they are walked one
by one (their counts decide where the next one starts). Everything else is done on whole runs of bunches: the
limits are tested on columns (``bytes.translate`` deleting the allowed values of a byte column leaves
nothing), and only a run that fails them is checked bunch by bunch, to name the first bad IO and its offset.
The columns of a run are made with memoryview casts and big-integer lane arithmetic, without a Python object
per IO.
"""

import os
import sys
from array import array
from itertools import accumulate, repeat
from operator import itemgetter

from ..errors import TraceFormatError
from ..files import open_file

MAX_TIME = (1 << 63) - 1  # ns: times live in signed 64-bit arrays
MAX_END = (1 << 63) - 1  # bytes: sector * 512 + nbytes is a signed 64-bit file offset
MAX_SECTOR = MAX_END // 512
MAX_NBYTES = 0xFFFFFFFF  # a traced IO's length is a u32 (btrecord stores it in 64 bits)
BLOCK = 256 << 10  # bytes read at a time (a bunch larger than this is read whole)
LITTLE = sys.byteorder == "little"  # the columns are casts of the file's little-endian fields
PACKET_SIZE = 24  # both formats
DEP_AFTER_ISSUE = 1 << 31  # a parent that was in flight when its child was issued
DEP_DISTANCE = DEP_AFTER_ISSUE - 1
SMALL_BUNCH = 16  # up to this many packets per bunch, runs of equal bunches are unpacked by strided copies
ZERO = bytes([0])  # as the deletion table of ``bytes.translate``: what is left of a column is not zero
_SECTOR = itemgetter(0)
_NBYTES = itemgetter(1)


class IOChunk:
    """Consecutive IOs of one replay file as columns of equal length: ``times``, ``sectors``, ``nbytes``
    (``array('q')``), ``ops`` and ``flags`` (``bytes``, one per IO), ``pids`` (``array('I')``, or None for
    btrecord files, which have none), ``timing`` (a ``Timing``: what was recorded of each IO's completion and
    dependencies, or None when the file holds none). Iterating gives (time, sector, nbytes, op, flags) per IO."""

    __slots__ = ("times", "sectors", "nbytes", "ops", "flags", "pids", "timing")

    def __init__(self, times, sectors, nbytes, ops, flags, pids=None, timing=None):
        self.times, self.sectors, self.nbytes = times, sectors, nbytes
        self.ops, self.flags, self.pids, self.timing = ops, flags, pids, timing

    def __len__(self):
        return len(self.ops)

    def __iter__(self):
        return zip(self.times, self.sectors, self.nbytes, self.ops, self.flags)


class Timing:
    """The recorded timing of consecutive IOs (native format version 2, docs/formats.md), as columns:

    @seqs: ``array('q')``, each IO's number among all IOs of its device in time order (0 = the first; the CPU
    files of a device share the numbering);
    @latencies: ``array('q')``, its recorded completion time less its issue time, ns (-1: no completion was
    recorded);
    @inflight: ``array('I')``, IOs of its device in flight when it was issued, itself included (0: not known);
    @thinks: ``array('q')``, its issue time less the recorded completion of its latest completion parent, ns
    (0 without one);
    @ndeps: ``array('H')``, how many parents it has;
    @deps: ``array('I')``, every IO's parents in turn (``ndeps`` of them each): bits 0..30 the distance back in
    ``seqs`` (>= 1), bit 31 set for an IO that was still in flight when this one was issued (this one waits for
    its issue, not its completion).
    """

    __slots__ = ("seqs", "latencies", "inflight", "thinks", "ndeps", "deps")

    def __init__(self, seqs, latencies, inflight, thinks, ndeps, deps):
        self.seqs, self.latencies, self.inflight, self.thinks = seqs, latencies, inflight, thinks
        self.ndeps, self.deps = ndeps, deps

    def __len__(self):
        return len(self.seqs)

    def stored_parents(self):
        """Per IO, its parents as stored (``deps`` entries: distance back, bit 31 for an issue parent), one
        ``array('I')`` slice each: what the replay's feeder decodes, without a Python object per parent."""
        ends = list(accumulate(self.ndeps))
        deps = self.deps
        return [deps[a:b] for a, b in zip([0, *ends], ends)]

    def parents(self):
        """Per IO, its parents as a list of (seq, after_issue) pairs (reference: one Python list per IO)."""
        return [[(seq - (d & DEP_DISTANCE), bool(d & DEP_AFTER_ISSUE)) for d in stored]
                for seq, stored in zip(self.seqs, self.stored_parents())]


class Run:
    """Whole bunches read back to back: ``offsets`` (file offset of each), ``counts`` (its IOs), ``stamps``
    (its time), ``packets`` (the packets of all, without their bunch headers) and ``exts`` (each bunch's
    extension, the bytes after its packets; None for files whose bunches have none)."""

    __slots__ = ("offsets", "counts", "stamps", "packets", "exts", "timing")

    def __init__(self, offsets, counts, stamps, packets, exts=None):
        self.offsets, self.counts, self.stamps, self.packets, self.exts = offsets, counts, stamps, packets, exts
        self.timing = None  # the Timing of its IOs, once decoded from ``exts``

    def head(self, bunches):
        """The run of the first ``bunches`` bunches."""
        end = PACKET_SIZE * sum(self.counts[:bunches])
        return Run(self.offsets[:bunches], self.counts[:bunches], self.stamps[:bunches], self.packets[:end],
                   None if self.exts is None else self.exts[:bunches])

    def column(self, at, width=1):
        """Byte ``at`` of every packet (``width`` > 1: the bytes at..at+width-1, OR-ed together)."""
        if width == 1:
            return self.packets[at::PACKET_SIZE]
        value = 0
        for k in range(width):
            value |= int.from_bytes(self.packets[at + k :: PACKET_SIZE], "little")
        return value.to_bytes(len(self.packets) // PACKET_SIZE, "little")

    def words(self, index, code="Q"):
        """A memoryview of one field of every packet: 64-bit word ``index`` (or 32-bit half, ``code`` 'I')."""
        per = PACKET_SIZE // (8 if code == "Q" else 4)
        return memoryview(self.packets).cast(code)[index::per]

    def repeated_stamps(self):
        """Every IO's bunch time as 64-bit little-endian lanes."""
        return b"".join(map(bytes.__mul__, map(int.to_bytes, self.stamps, repeat(8), repeat("little")),
                            self.counts))

    def sectors(self):
        """The first field of every packet (sectors: all below 2^63, checked) as ``array('q')``."""
        out = array("q")
        out.frombytes(self.words(0).tobytes())
        return out


def small_sectors(run):
    """True when every sector is below 2^48 (its bytes 6 and 7 are 0), so that no extent can end beyond
    2^63 - 1 bytes whatever its u32 length."""
    return not run.column(6, 2).translate(None, ZERO)


def u32_lanes(view):
    """A u32 column widened to ``array('q')`` (the values into the low halves of zeroed 64-bit lanes)."""
    lanes = bytearray(8 * len(view))
    memoryview(lanes).cast("I")[0::2] = view
    out = array("q")
    out.frombytes(lanes)
    return out


class ReplayReader:
    """A replay file open for reading; subclasses read their header in ``_read_header`` and say how a run is
    checked (``_fast_ok``, ``_check_bunch``) and turned into columns (``_columns``).

    Format, per subclass: ``HEAD`` (struct of a bunch header's npkts and time), ``COUNT`` (the array code that
    npkts is stored as), ``PACKET`` (struct of a packet) and ``MAX_PKTS`` (the largest npkts); ``EXT``: None, or
    (per file) the struct of the u32 at offset 4 of a bunch header that says how many bytes of extension follow
    its packets, which ``_ext_fits`` bounds."""

    kind = "?"
    EXT = None

    def __init__(self, path):
        self.path = str(path)
        self._f = open_file(path)
        try:
            self._size = os.fstat(self._f.fileno()).st_size
            self._read_header()
            least = self._data + self._counted[0] * self.HEAD.size + self._counted[1] * self.PACKET.size
            if self._size < least:  # known before any IO is used (a replay would find it only at the end)
                raise TraceFormatError(self.path, self._size, f"{self._size} bytes, fewer than the {least} its "
                                       f"header's {self._counted[1]} IOs in {self._counted[0]} bunches take: cut short")
        except BaseException:
            self._f.close()
            raise

    def _read_header(self):
        """Read the header: sets ``_data`` (where bunches begin) and ``_counted`` (the bunches and IOs it counts
        at least)."""
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._f.close()

    def bunches(self):
        """Yield (time, [packet tuple, ...]) per bunch, in file order."""
        unpack = self.PACKET.iter_unpack
        for run in self._checked_runs():
            view = memoryview(run.packets)
            at = 0
            for count, stamp in zip(run.counts, run.stamps):
                end = at + PACKET_SIZE * count
                yield stamp, list(unpack(view[at:end]))
                at = end

    def chunks(self):
        """Yield an IOChunk per run of whole bunches (a block of the file, about BLOCK bytes), in file order."""
        for run in self._checked_runs():
            yield self._columns(run) if LITTLE else self._columns_of_tuples(run)

    def _checked_runs(self):
        """Runs whose every IO is within the limits; a bad one yields the bunches before the first bad IO, then
        raises (as does a bad bunch header, after the run before it)."""
        for run, error in self._runs():
            if run.counts and not self._fast_ok(run):
                view, at = memoryview(run.packets), 0
                for i, (offset, count, stamp) in enumerate(zip(run.offsets, run.counts, run.stamps)):
                    end = at + PACKET_SIZE * count
                    problem = self._check_bunch(offset, stamp, list(self.PACKET.iter_unpack(view[at:end])))
                    if problem:
                        if i:
                            yield run.head(i)
                        raise problem
                    at = end
            if run.counts:
                yield run
            if error:
                raise error

    def _runs(self):
        """Yield (Run, error or None) from the first bunch to the end of the file: the bunches of a block, then
        the problem of the header that ended the walk (a count of 0 or above MAX_PKTS, more bytes than the file
        has left, a truncated header), if any."""
        f, unpack, limit, hsize = self._f, self.HEAD.unpack_from, self.MAX_PKTS, self.HEAD.size
        ext_of = self.EXT.unpack_from if self.EXT else None
        base = self._data  # the file offset of buf[0]
        f.seek(base)
        buf = b""
        while True:
            more = f.read(BLOCK)
            buf = buf + more if buf else more
            end = len(buf)
            room = self._size - base  # bytes of the file from buf[0] on
            starts, counts, stamps, exts = [], [], [], [] if ext_of else None
            error = None
            pos = 0 if ext_of else self._regular(buf, room, starts, counts, stamps)
            while True:
                if end - pos < hsize:
                    if not more and end > pos:
                        error = TraceFormatError(self.path, base + pos,
                                                 f"truncated bunch header ({end - pos} of {hsize} bytes)")
                    break
                npkts, stamp = unpack(buf, pos)
                if not 0 < npkts <= limit:
                    error = TraceFormatError(self.path, base + pos, f"bad bunch size {npkts} (1..{limit})")
                    break
                stop = pos + hsize + PACKET_SIZE * npkts
                if ext_of:
                    extra = ext_of(buf, pos + 4)[0]
                    if not self._ext_fits(npkts, extra):
                        error = TraceFormatError(self.path, base + pos + 4,
                                                 f"bad bunch extension size {extra} for {npkts} IOs")
                        break
                    stop += extra
                if stop > room:
                    left = max(room - pos - hsize, 0)
                    error = TraceFormatError(self.path, base + pos + hsize,
                                             f"truncated bunch ({left} of {stop - pos - hsize} bytes for {npkts} IOs)")
                    break
                if stop > end:
                    if not more:  # the file shrank since its size was taken
                        error = TraceFormatError(self.path, base + pos + hsize, f"truncated bunch "
                                                 f"({end - pos - hsize} of {stop - pos - hsize} bytes)")
                    elif not starts:  # a bunch larger than a block: read the rest of it
                        buf += f.read(stop - end)
                        end = len(buf)
                        continue
                    break
                starts.append(pos)
                counts.append(npkts)
                stamps.append(stamp)
                if ext_of:
                    exts.append(bytes(buf[stop - extra:stop]))
                pos = stop
            self._end = base + pos
            packets = _packets(buf, hsize, starts, counts, exts)
            yield Run([base + a for a in starts], counts, stamps, packets, exts), error
            if error or not more and pos == end:
                return
            buf = buf[pos:]
            base += pos

    def _regular(self, buf, room, starts, counts, stamps):
        """Bunches of one size back to back from the start of ``buf``, all whole (in ``buf`` and in the file),
        walked at once: their headers read as strided columns, where the first header's count says they are.
        Fills the lists; returns where the walk goes on (0: none of them)."""
        hsize = self.HEAD.size
        if len(buf) < hsize or not LITTLE:
            return 0
        npkts = self.HEAD.unpack_from(buf)[0]
        size = hsize + PACKET_SIZE * npkts
        many = min(len(buf), room) // size
        if not 0 < npkts <= self.MAX_PKTS or many < 2:
            return 0
        whole = memoryview(buf)[: many * size]
        npkts_column = whole.cast(self.COUNT)[0 :: size // array(self.COUNT).itemsize]
        if npkts_column != memoryview(array(self.COUNT, [npkts]) * many):
            return 0
        words = whole.cast("Q")
        starts.extend(range(0, many * size, size))
        counts.extend([npkts] * many)
        stamps.extend(words[1 :: size // 8].tolist())
        return many * size

    def _columns_of_tuples(self, run):
        """The columns from packet tuples (a big-endian host; the files are little-endian)."""
        times = [s for s, c in zip(run.stamps, run.counts) for _ in range(c)]
        return self._columns_from_tuples(list(self.PACKET.iter_unpack(run.packets)), times)


def _packets(buf, hsize, starts, counts, exts=None):
    """The packets of the bunches that start at ``starts`` in ``buf``, without their headers (and extensions)."""
    if not starts:
        return b""
    view = memoryview(buf)
    npkts = counts[0]
    size = hsize + PACKET_SIZE * npkts
    many = len(starts)
    if not exts and npkts <= SMALL_BUNCH and many > 2 * npkts and starts[-1] == size * (many - 1) \
            and counts.count(npkts) == many:
        # all of one small size (btrecord's -M 8): one strided copy per packet word beats a slice per bunch
        out = bytearray(PACKET_SIZE * npkts * many)
        into = memoryview(out).cast("Q")
        words = view[: size * many].cast("Q")
        width, stride = 3 * npkts, size // 8
        for w in range(width):
            into[w::width] = words[hsize // 8 + w :: stride]
        return out
    return b"".join([view[a + hsize : a + hsize + PACKET_SIZE * c] for a, c in zip(starts, counts)])


def check_extents(path, offset, packets, header_size, packet_size):
    """The problem (TraceFormatError) of the first packet whose extent (sector, nbytes: its first two fields)
    ends beyond MAX_END bytes, or whose length is more than a u32; None if there is none."""
    if max(map(_NBYTES, packets)) > MAX_NBYTES:
        i, p = next((i, p) for i, p in enumerate(packets) if p[1] > MAX_NBYTES)
        return TraceFormatError(path, offset + header_size + i * packet_size + 8,
                                f"IO length {p[1]} bytes is more than {MAX_NBYTES}")
    if max(map(_SECTOR, packets)) < MAX_SECTOR - (1 << 23):  # the usual case: far below, whatever nbytes (u32)
        return None
    for i, p in enumerate(packets):
        if p[0] > MAX_SECTOR or p[0] * 512 + p[1] > MAX_END:
            return TraceFormatError(path, offset + header_size + i * packet_size,
                                    f"sector {p[0]} + {p[1]} bytes ends beyond 2^63 - 1 bytes")
    return None


def check_time(path, offset, time):
    """The problem (TraceFormatError) of a time of 2^63 ns or more, else None."""
    if time > MAX_TIME:
        return TraceFormatError(path, offset, f"time {time} ns is 2^63 ns or more")
    return None

"""The trace formats ``blkfleet import`` reads, each from its published description (docs/formats.md names the
source of every field and unit):

- ``msr``: SNIA IOTTA's MSR Cambridge traces, ``Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime``:
  time in Windows filetime (100 ns ticks), offset and size in bytes, Type ``Read``/``Write``; one device per
  host and disk number;
- ``alibaba``: Alibaba's block traces (``io_traces.csv``), ``device_id,opcode,offset,length,timestamp``:
  opcode ``R``/``W``, offset and length in bytes, timestamp in microseconds;
- ``tencent``: Tencent CBS traces (SNIA IOTTA), ``Timestamp,Offset,Size,IOType,VolumeID``: time in Unix
  seconds, offset and size in 512-byte sectors, IOType 0 read, 1 write;
- ``fio-iolog``: fio's iolog versions 2 and 3 (fio's HOWTO, "Trace file format"; version 3 timestamps are
  microseconds since the start of the run, as fio's iolog.c writes them);
- ``blkparse``: blkparse's default text output (blkparse(1), "DEFAULT OUTPUT"): its Q events.
"""

import re
from array import array
from itertools import compress, count, repeat
from operator import methodcaller, mul, sub

from ..replayfile.ops import DISCARD, F_AHEAD, F_FUA, F_META, F_PREFLUSH, F_SYNC, FLUSH, READ, WRITE
from .columns import Rows, check_extents, line_numbers, scaled, uniform_lines, whole
from .csvmap import TIME_UNITS, CsvLayout
from .inputs import InputError

SECTOR = 512


def msr():
    return CsvLayout(7, time=0, offset=4, size=5, time_unit=TIME_UNITS["filetime"], op=3,
                     op_values={b"Read": READ, b"Write": WRITE}, device=(1, 2),
                     headers={b"timestamp,hostname,disknumber,type,offset,size,responsetime"})


def alibaba():
    return CsvLayout(5, time=4, offset=2, size=3, time_unit=TIME_UNITS["us"], op=1,
                     op_values={b"R": READ, b"W": WRITE}, device=(0,),
                     headers={b"device_id,opcode,offset,length,timestamp", b"device_id,opcode,offset,length,timestmap"})


def tencent():
    return CsvLayout(5, time=0, offset=1, size=2, time_unit=TIME_UNITS["s"], offset_unit=SECTOR, size_unit=SECTOR,
                     op=3, op_values={b"0": READ, b"1": WRITE}, device=(4,),
                     headers={b"timestamp,offset,size,iotype,volumeid"})


# --------------------------------------------------------------------------------------------------- fio iolog

FIO_HEADERS = {b"fio version 2 iolog": 2, b"fio version 3 iolog": 3}
FIO_IO = {b"read": READ, b"write": WRITE, b"trim": DISCARD, b"sync": FLUSH, b"datasync": FLUSH,
          b"sync_file_range": FLUSH}
FIO_FILE = (b"add", b"open", b"close")


class FioIolog:
    """fio iolog v2 and v3. Version 3: ``TIME FILE ACTION [OFFSET LENGTH]``, TIME in microseconds since the start
    of the run. Version 2: ``FILE ACTION [OFFSET LENGTH]`` without times; ``wait`` lines advance the time by
    OFFSET microseconds (fio's HOWTO: relative to the previous wait). File actions (add, open, close) only
    name the files; trim is a discard, sync/datasync/sync_file_range a flush. The device is the file's name."""

    relative_time = True

    def __init__(self):
        self.version = None
        self.now_ns = 0  # version 2: the time the waits so far add up to
        self.ignored_waits = 0

    def begin(self, name):
        self.version = None
        self.now_ns = 0

    def device_name(self, key):
        return key.rsplit(b"/", 1)[-1].decode("utf-8", "replace")

    def parse(self, name, text, first):
        if first == 1:
            end = text.find(b"\n")
            self.version = FIO_HEADERS.get(text[:end].strip())
            if self.version is None:
                raise InputError(name, 1, "not a fio iolog: the first line is not 'fio version 2 iolog' or "
                                 "'fio version 3 iolog'")
            text, first = text[end + 1:], 2
        each = None
        n = uniform_lines(text, 5) if self.version == 3 else None
        if n is None and self.version == 3:  # blanks other than single spaces, or other lines
            each = text.split(b"\n")[:-1]
            n = len(each) if list(map(len, map(bytes.split, each))).count(5) == len(each) else None
        if n:
            flat = text.split()
            actions = flat[2::5]
            if actions.count(b"read") + actions.count(b"write") == n:
                lines = line_numbers(first, n)
                times = scaled(name, flat[0::5], lines, "time", 1000)
                ops = bytes(map(FIO_IO.__getitem__, actions))
                return self._rows(name, times, flat[3::5], flat[4::5], ops, flat[1::5], lines)
        return self._walk(name, text.split(b"\n")[:-1] if each is None else each, first)

    def _walk(self, name, each, first):
        times, offsets, sizes, ops, files, lines = [], [], [], bytearray(), [], array("q")
        io_width, file_width = (5, 3) if self.version == 3 else (4, 2)
        for k, line in enumerate(each):
            parts = line.split()
            if not parts:
                continue
            at = first + k
            if parts[0] == b"fio" and line.strip() in FIO_HEADERS:
                raise InputError(name, at, "a second iolog starts here (fio appends to an existing write_iolog "
                                 "file): import each run's iolog on its own")
            if len(parts) not in (io_width, file_width):
                raise InputError(name, at, f"{len(parts)} fields, expected {file_width} (file action) or {io_width} "
                                 "(IO)")
            when = None
            if self.version == 3:
                when = scaled(name, parts[:1], [at], "time", 1000)[0]
                parts = parts[1:]
            action = parts[1]
            if len(parts) == 2:
                if action not in FIO_FILE:
                    raise InputError(name, at, f"file action {_text(action)} is not add, open or close")
                continue
            if action == b"wait":
                if self.version == 3:
                    self.ignored_waits += 1  # fio ignores them in version 3, as here
                else:
                    self.now_ns += whole(name, parts[2:3], [at], "wait", 1 << 40)[0] * 1000
                continue
            op = FIO_IO.get(action)
            if op is None:
                raise InputError(name, at, f"action {_text(action)} is not read, write, trim, sync, datasync, "
                                 "sync_file_range or wait")
            times.append(self.now_ns if when is None else when)
            offsets.append(parts[2] if op != FLUSH else b"0")
            sizes.append(parts[3] if op != FLUSH else b"0")
            ops.append(op)
            files.append(parts[0])
            lines.append(at)
        return self._rows(name, times, offsets, sizes, bytes(ops), files, lines)

    def _rows(self, name, times, offsets, sizes, ops, files, lines):
        n = len(ops)
        keys, key = files, b""
        if n and files.count(files[0]) == n:
            keys, key = None, files[0]
        rows = Rows(times, whole(name, offsets, lines, "offset"), whole(name, sizes, lines, "length"),
                    ops, lines, keys, key)
        check_extents(name, rows)
        return rows


# ----------------------------------------------------------------------------------------------- blkparse text

# blkparse's default header, "%3d,%-3d %2d %8d %5d.%09lu %5u %2s %3s ": device, CPU, sequence, time, pid,
# action, RWBS; then what the action prints.
_N = rb"(\d{1,20})"
_HEAD = rb" *" + _N + rb"," + _N + rb" +\d{1,10} +\d{1,20} +" + _N + rb"\.(\d{9}) +\d{1,10} +"
EVENT = re.compile(rb" *\d{1,20},\d{1,20} +\d{1,10} +\d{1,20} +\d{1,20}\.\d{9} +\d{1,10} +\S{1,2} +\S+ ")
QUEUE = re.compile(_HEAD + rb"Q +(\S+) (?:" + _N + rb" \+ " + _N + rb" )?\[")
COMMAND = re.compile(_HEAD + rb"Q +\S+ \d{1,10} \(")  # a SCSI command: its bytes, then its payload
SUMMARY = re.compile(rb"(?:CPU\d+|Total) \(")
RWBS = re.compile(rb"(F?)([DWRN])(F?)(A?)(S?)(M?)")
_OPENS = methodcaller("startswith", b"[")
_NO_DOT = methodcaller("replace", b".", b"")
_HAS_Q = methodcaller("count", b" Q ")


class BlkparseText:
    """blkparse's default text output. Its Q events (a bio queued: what ``blkfleet record`` converts) become IOs:
    ``SECTOR + BLOCKS`` in 512-byte units, RWBS as blkparse writes it (a leading F: a flush, with data a
    preflush; D discard, W write, R read, N no data; then F FUA, A readahead, S sync, M metadata). A Q event
    without data is a flush when its RWBS starts with F; Q events of SCSI commands (a byte count and a payload
    in parentheses) and of no data otherwise are counted, not imported. The device is ``MAJOR_MINOR``.

    Only what an import keeps is read: the Q events (found by their action field, `` Q ``, at C speed), each
    checked field by field; the other events are not parsed, but an input must start with an event line. The
    summary blkparse prints at the end (from the first ``CPUn (`` or ``Total (`` line) is not read. Regular
    expressions over every line would cost about 0.6 µs per line, six lines per IO in a blktrace capture; the Q
    lines are split at once (a NUL token appended to each line keeps them apart) and checked as columns."""

    relative_time = True

    def __init__(self):
        self.done = False
        self.skipped = 0
        self._kinds = {}

    def begin(self, name):
        self.done = False

    def device_name(self, key):
        return key.decode().replace(",", "_")

    def parse(self, name, text, first):
        empty = Rows([], [], [], b"", line_numbers(first, 0))
        if self.done:
            return empty
        if first == 1:
            head = text[:text.find(b"\n") + 1]
            if head.strip() and not EVENT.match(head):
                raise InputError(name, 1, "not an event line of blkparse's default output")
        end = _summary(text)
        if end is not None:
            text, self.done = text[:end], True
        lines, numbers = _queue_lines(text, first)
        if not lines:
            return empty
        rows = self._fast(name, lines, numbers)
        if rows is None:
            rows = self._walk(name, lines, numbers)
        check_extents(name, rows)
        return rows

    def _fast(self, name, lines, numbers):
        """Q events with data only, every field as blkparse writes it: columns at once; else None."""
        n = len(lines)
        flat = (b" \0 ".join(lines) + b" \0").split()  # a NUL token ends every line: 12 tokens a line
        if len(flat) != 12 * n or flat[11::12].count(b"\0") != n:
            return None
        dev, cpu, seq, time, pid, act, rwbs, sector, plus, blocks, command = (flat[k::12] for k in range(11))
        if act.count(b"Q") != n or plus.count(b"+") != n or not all(map(_OPENS, command)) or \
                not b"".join(cpu + seq + pid).isdigit():
            return None
        devices = {d: d.partition(b",") for d in set(dev)}  # few distinct devices: each looked at once
        if any(not (ma.isdigit() and mi.isdigit() and c) or len(d) > 41 for d, (ma, c, mi) in devices.items()):
            return None
        dots = list(map(sub, map(len, time), map(bytes.find, time, repeat(b"."))))
        if dots.count(10) != n:  # SECONDS.NANOSECONDS, 9 digits after the dot
            return None
        try:
            times, sectors, sizes = (whole(name, list(c), numbers, what, MAX_FIELD) for c, what in (
                (list(map(_NO_DOT, time)), "time"), (sector, "sector"), (blocks, "blocks")))
        except InputError:
            return None
        kinds = {r: self._kind(name, numbers[rwbs.index(r)], r, 1) for r in set(rwbs)}
        if None in kinds.values():
            return None
        ops = bytes(map({r: k[0] for r, k in kinds.items()}.__getitem__, rwbs))
        flags = bytes(map({r: k[1] for r, k in kinds.items()}.__getitem__, rwbs))
        keys, key = (None, dev[0]) if len(devices) == 1 else (list(dev), b"")
        dev_t = {d: _dev_t(d) for d in devices}
        return Rows(times, list(map(mul, sectors, repeat(SECTOR))), list(map(mul, sizes, repeat(SECTOR))),
                    ops, numbers, keys, key, flags, dev_t)

    def _walk(self, name, lines, numbers):
        """Q events one by one (flushes, SCSI commands, or a problem to name)."""
        times, offsets, sizes, ops, flags, keys, at = [], [], [], bytearray(), bytearray(), [], array("q")
        dev_t = {}
        for text, line in zip(lines, numbers):
            fields = text.split(None, 6)
            if len(fields) < 7 or fields[5] != b"Q":
                continue  # " Q " in a process name or a message, not a Q event
            m = QUEUE.match(text)
            if not m:
                if COMMAND.match(text):
                    self.skipped += 1
                    continue
                raise InputError(name, line, "a Q event that is neither 'SECTOR + BLOCKS [COMMAND]', '[COMMAND]' "
                                 "nor a SCSI command")
            major, minor, sec, nsec, rwbs, sector, blocks = m.groups()
            nbytes = int(blocks) * SECTOR if blocks else 0
            kind = self._kind(name, line, rwbs, nbytes)
            if kind is None:
                self.skipped += 1
                continue
            key = major + b"," + minor
            dev_t.setdefault(key, _dev_t(key))
            times.append(int(sec) * 1_000_000_000 + int(nsec))
            offsets.append(int(sector) * SECTOR if sector and kind[0] != FLUSH else 0)
            sizes.append(nbytes if kind[0] != FLUSH else 0)
            ops.append(kind[0])
            flags.append(kind[1])
            keys.append(key)
            at.append(line)
        n = len(ops)
        key = b""
        if n and keys.count(keys[0]) == n:
            keys, key = None, keys[0]
        return Rows(times, offsets, sizes, bytes(ops), at, keys, key, bytes(flags), dev_t)

    def _kind(self, name, line, rwbs, nbytes):
        """(op, flags) of a Q event, or None for one not imported."""
        got = self._kinds.get((rwbs, nbytes == 0), False)
        if got is not False:
            return got
        m = RWBS.fullmatch(rwbs)
        if not m:
            raise InputError(name, line, f"RWBS {_text(rwbs)} is not what blkparse writes")
        flush, what, fua, ahead, sync, meta = m.groups()
        flags = (F_FUA if fua else 0) | (F_AHEAD if ahead else 0) | (F_SYNC if sync else 0) | (F_META if meta else 0)
        if flush and nbytes == 0 and what in b"WN":
            got = (FLUSH, flags)
        elif what == b"N":
            got = None
        else:
            op = {b"D": DISCARD, b"W": WRITE, b"R": READ}[what]
            got = (op, flags | (F_PREFLUSH if flush else 0))
        self._kinds[(rwbs, nbytes == 0)] = got
        return got


MAX_FIELD = (1 << 64) - 1


def _dev_t(key):
    major, _comma, minor = key.partition(b",")
    major, minor = int(major), int(minor)
    return major << 20 | minor if major < 1 << 12 and minor < 1 << 20 else 0


def _summary(text):
    """Where blkparse's summary starts in a block (a line ``CPUn (`` or ``Total (``), or None."""
    found = []
    for marker in (b"CPU", b"Total ("):
        at = 0 if text.startswith(marker) else -1
        while True:
            if at >= 0 and SUMMARY.match(text, at):
                found.append(at)
                break
            nxt = text.find(b"\n" + marker, at + 1)
            if nxt < 0:
                break
            at = nxt + 1
    return min(found) if found else None


def _queue_lines(text, first):
    """The lines of a block whose action field may be Q (they hold `` Q ``), and their line numbers: picked
    by C loops (``map`` of ``bytes.count``, ``compress``)."""
    lines = text.split(b"\n")
    mask = list(map(_HAS_Q, lines))
    return list(compress(lines, mask)), array("q", compress(count(first), mask))


def _text(field):
    return repr(field[:40].decode("utf-8", "replace"))


FORMATS = {
    "fio-iolog": (FioIolog, "fio iolog, version 2 or 3"),
    "blkparse": (BlkparseText, "blkparse's default text output (its Q events)"),
    "msr": (msr, "SNIA IOTTA MSR Cambridge CSV"),
    "alibaba": (alibaba, "Alibaba block traces CSV (io_traces.csv)"),
    "tencent": (tencent, "Tencent CBS CSV (SNIA IOTTA)"),
}

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

from ..replayfile.ops import DISCARD, F_AHEAD, F_FUA, F_META, F_PREFLUSH, F_SYNC, FLUSH, READ, WRITE
from .columns import Rows, check_extents, line_numbers, scaled, whole
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
        each = text.split(b"\n")[:-1]
        n = len(each)
        if self.version == 3 and n and list(map(len, map(bytes.split, each))).count(5) == n:
            flat = text.split()
            actions = flat[2::5]
            if actions.count(b"read") + actions.count(b"write") == n:
                lines = line_numbers(first, n)
                times = scaled(name, flat[0::5], lines, "time", 1000)
                ops = bytes(map(FIO_IO.__getitem__, actions))
                return self._rows(name, times, flat[3::5], flat[4::5], ops, flat[1::5], lines)
        return self._walk(name, each, first)

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
_HEAD = rb"^ *" + _N + rb"," + _N + rb" +\d{1,10} +\d{1,20} +" + _N + rb"\.(\d{9}) +\d{1,10} +"
EVENT = re.compile(rb"^ *\d{1,20},\d{1,20} +\d{1,10} +\d{1,20} +\d{1,20}\.\d{9} +\d{1,10} +\S{1,2} +\S+ ", re.M)
NONBLANK = re.compile(rb"^[ \t]*\S", re.M)
QUEUED = re.compile(_HEAD + rb"Q ", re.M)
QUEUE = re.compile(_HEAD + rb"Q +(\S+) (?:" + _N + rb" \+ " + _N + rb" )?\[", re.M)
COMMAND = re.compile(_HEAD + rb"Q +\S+ \d{1,10} \(", re.M)  # a SCSI command: its bytes, then its payload
SUMMARY = re.compile(rb"^(?:CPU\d+|Total) \(", re.M)
RWBS = re.compile(rb"(F?)([DWRN])(F?)(A?)(S?)(M?)")


class BlkparseText:
    """blkparse's default text output. Its Q events (a bio queued: what ``blkfleet record`` converts) become IOs:
    ``SECTOR + BLOCKS`` in 512-byte units, RWBS as blkparse writes it (a leading F: a flush, with data a
    preflush; D discard, W write, R read, N no data; then F FUA, A readahead, S sync, M metadata). A Q event
    without data is a flush when its RWBS starts with F; Q events of SCSI commands (a byte count and a payload
    in parentheses) and of no data otherwise are counted, not imported. The summary blkparse prints at the end
    (from the first ``CPUn (`` or ``Total (`` line) is not read. The device is ``MAJOR_MINOR``."""

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
        summary = SUMMARY.search(text)
        if summary:
            text, self.done = text[:summary.start()], True
        if len(EVENT.findall(text)) != len(NONBLANK.findall(text)):
            for k, line in enumerate(text.split(b"\n")):
                if line.strip() and not EVENT.match(line + b"\n"):
                    raise InputError(name, first + k, "not an event line of blkparse's default output")
        times, offsets, sizes, ops, flags, keys, lines = [], [], [], bytearray(), bytearray(), [], array("q")
        dev_t = {}
        pos, line = 0, first
        queued = 0
        for m in QUEUE.finditer(text):
            queued += 1
            line += text.count(b"\n", pos, m.start())
            pos = m.start()
            major, minor, sec, nsec, rwbs, sector, blocks = m.groups()
            nbytes = int(blocks) * SECTOR if blocks else 0
            kind = self._kind(name, line, rwbs, nbytes)
            if kind is None:
                continue
            key = major + b"," + minor
            if key not in dev_t:
                dev_t[key] = (int(major) << 20 | int(minor)) if int(major) < 1 << 12 and int(minor) < 1 << 20 else 0
            times.append(int(sec) * 1_000_000_000 + int(nsec))
            offsets.append(int(sector) * SECTOR if sector and kind[0] != FLUSH else 0)
            sizes.append(nbytes if kind[0] != FLUSH else 0)
            ops.append(kind[0])
            flags.append(kind[1])
            keys.append(key)
            lines.append(line)
        commands = len(COMMAND.findall(text))
        if len(QUEUED.findall(text)) != queued + commands:
            self._bad_queue(name, text, first)
        self.skipped += commands
        n = len(ops)
        key = b""
        if n and keys.count(keys[0]) == n:
            keys, key = None, keys[0]
        rows = Rows(times, offsets, sizes, bytes(ops), lines, keys, key, bytes(flags), dev_t)
        check_extents(name, rows)
        return rows

    @staticmethod
    def _bad_queue(name, text, first):
        for k, line in enumerate(text.split(b"\n")):
            if QUEUED.match(line) and not (QUEUE.match(line) or COMMAND.match(line)):
                raise InputError(name, first + k, "a Q event that is neither 'SECTOR + BLOCKS [COMMAND]', "
                                 "'[COMMAND]' nor a SCSI command")

    def _kind(self, name, line, rwbs, nbytes):
        """(op, flags) of a Q event, or None for one not imported (counted)."""
        got = self._kinds.get((rwbs, nbytes == 0), False)
        if got is not False:
            if got is None:
                self.skipped += 1
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
        if got is None:
            self.skipped += 1
        return got


def _text(field):
    return repr(field[:40].decode("utf-8", "replace"))


FORMATS = {
    "fio-iolog": (FioIolog, "fio iolog, version 2 or 3"),
    "blkparse": (BlkparseText, "blkparse's default text output (its Q events)"),
    "msr": (msr, "SNIA IOTTA MSR Cambridge CSV"),
    "alibaba": (alibaba, "Alibaba block traces CSV (io_traces.csv)"),
    "tencent": (tencent, "Tencent CBS CSV (SNIA IOTTA)"),
}

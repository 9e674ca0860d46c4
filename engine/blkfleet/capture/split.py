"""Split a stream of v7 records into ``DEV.blktrace.CPU`` files, one per device and CPU.

The stream is what the page decoders of ``rawpages`` make of ftrace ring-buffer pages (and what the ``blk``
tracer's bin output is): v7 records in host byte order, sequence 0, ``cpu`` set, records of several CPUs and
devices. The splitter writes each record to ``DIR/DEV.blktrace.CPU`` with a fresh per-file sequence number
(1, 2, ...; notify records keep 0, as in relay traces) and counts records, queued IOs and their bytes per
file. Drops are accounted per CPU (``add_lost``): the kernel does not say which device lost events. Files exist
for every CPU from 0 to the highest, because btrecord stops at the first missing CPU number. Memory is bounded
by one input chunk plus one partial record.

>>> sp = Splitter("out", ncpus=2)
>>> sp.feed(records); sp.add_lost(1, 42)
>>> summary = sp.close()
"""

import os
import struct
import sys
from dataclasses import asdict, dataclass

from ..errors import TraceFormatError
from ..files import create_new
from ..trace.actions import A_QUEUE, C_NOTIFY, C_QUEUE
from ..trace.record import HEADER_SIZE, MAGIC, MAGIC_MASK, field_layout
from ..trace.writer import TraceWriter

NATIVE = "<" if sys.byteorder == "little" else ">"
HEADER = HEADER_SIZE[7]
WRITE_BUFFER = 1 << 16
_FIELDS = ("bytes", "action", "device", "cpu", "pdu_len")  # what the splitter reads of a v7 header


@dataclass
class Counters:
    """Per device and CPU: records written, queued IOs (Q), their bytes, file size, and the CPU's drops.

    ``drops`` counts the events the kernel reported lost on this CPU and ``drop_reports`` how many times it
    said so (a page's missed-events flag need not carry a count); the kernel does not say which device lost
    events, so with several devices each one shows its CPU's drops.
    """

    records: int = 0
    queued: int = 0
    bytes: int = 0
    file_bytes: int = 0
    drops: int = 0
    drop_reports: int = 0


def cpu_count():
    """Number of CPU numbers to provide files for: highest present CPU + 1."""
    try:
        with open("/sys/devices/system/cpu/present") as f:
            text = f.read().strip()
        return max(int(part.split("-")[-1]) for part in text.split(",")) + 1
    except (OSError, ValueError):
        return os.cpu_count() or 1


def device_name(dev):
    """Kernel name of the block device with kernel dev_t ``dev`` (``major << 20 | minor``)."""
    major, minor = dev >> 20, dev & 0xFFFFF
    path = f"/sys/dev/block/{major}:{minor}"
    if os.path.exists(path):
        return os.path.basename(os.path.realpath(path))
    return f"{major},{minor}"


class _Output:
    """One ``DEV.blktrace.CPU`` file: its writer, sequence counter, counters and not yet written pieces."""

    __slots__ = ("file", "writer", "sequence", "counters", "parts")

    def __init__(self, path, byteorder):
        # A new file, never through a link placed at its name; closed by Splitter.close.
        self.file = os.fdopen(create_new(path), "wb", buffering=WRITE_BUFFER)
        self.writer = TraceWriter(self.file, 7, byteorder)
        self.sequence = 0
        self.counters = Counters()
        self.parts = []

    def flush(self):
        if self.parts:
            self.writer.write_raw(b"".join(self.parts))
            self.parts.clear()


class Splitter:
    """Streaming splitter; ``feed()`` chunks of any size, then ``close()`` (returns ``summary()``).

    ``names`` maps dev_t to a device name (default: looked up in /sys/dev/block); ``devices`` lists dev_t
    values whose files are created even if they see no event; ``ncpus`` is the minimum number of per-CPU
    files per device (default: the machine's CPUs).
    """

    def __init__(self, outdir, ncpus=None, names=None, devices=(), byteorder=NATIVE):
        self.outdir = str(outdir)
        os.makedirs(self.outdir, exist_ok=True)
        self.byteorder = byteorder
        self._fields = field_layout(7, _FIELDS, byteorder)
        self._word = struct.Struct(byteorder + "I")
        self._magic = self._word.pack(MAGIC | 7)
        self._names = dict(names or {})
        self._ncpus = ncpus or cpu_count()
        self._outputs = {}
        self._dev_cpus = {}
        self._pending = b""
        self._offset = 0
        self.lost = {}
        self.skipped_bytes = 0
        self.records = 0
        self.closed = False
        for dev in devices:
            self._add_device(dev)

    def _name(self, dev):
        if dev not in self._names:
            self._names[dev] = device_name(dev)
        return self._names[dev]

    def _add_device(self, dev):
        self._dev_cpus.setdefault(dev, 0)
        self._grow(dev, self._ncpus - 1)

    def _grow(self, dev, cpu):
        """Make sure files 0..cpu exist for ``dev``."""
        have = self._dev_cpus.get(dev, 0)
        for c in range(have, cpu + 1):
            path = os.path.join(self.outdir, f"{self._name(dev)}.blktrace.{c}")
            self._outputs[dev, c] = _Output(path, self.byteorder)
        self._dev_cpus[dev] = max(have, cpu + 1)

    def feed(self, data):
        """Consume the next piece of the stream."""
        buf = self._pending + data if self._pending else bytes(data)
        pos = self._scan(buf)
        self._pending = buf[pos:]
        self._offset += pos

    def _scan(self, buf):
        """Write every complete record in ``buf``; return where the unfinished tail starts."""
        n = len(buf)
        pos = 0
        magic, word, fields = self._magic, self._word, self._fields.unpack_from
        pack_seq = word.pack
        outputs = self._outputs
        records = 0
        while n - pos >= HEADER:
            if not buf.startswith(magic, pos):
                self._refuse(buf, pos)
            nbytes, action, dev, cpu, pdu_len = fields(buf, pos)
            end = pos + HEADER + pdu_len
            if end > n:
                break
            out = outputs.get((dev, cpu)) or self._output(dev, cpu)
            if action & C_NOTIFY:
                out.parts.append(buf[pos:end])
            else:
                out.sequence += 1
                out.parts += (magic, pack_seq(out.sequence), buf[pos + 8:end])
            c = out.counters
            c.records += 1
            c.file_bytes += end - pos
            if action & 0xFFFF == A_QUEUE and action & C_QUEUE:
                c.queued += 1
                c.bytes += nbytes
            records += 1
            pos = end
        self.records += records
        for out in outputs.values():
            out.flush()
        return pos

    def _refuse(self, buf, pos):
        """TraceFormatError for bytes at ``pos`` that are not a v7 record's magic."""
        word = self._word.unpack_from(buf, pos)[0]
        if word & MAGIC_MASK == MAGIC:
            problem = f"unsupported blktrace protocol version {word & 0xFF} (the ftrace blk tracer writes 7)"
        else:
            problem = "not a v7 record (bad magic)"
        raise TraceFormatError("record stream", self._offset + pos, problem)

    def _output(self, dev, cpu):
        self._grow(dev, max(cpu, self._ncpus - 1))
        return self._outputs[dev, cpu]

    def add_lost(self, cpu, events, reports=1):
        """Account ``events`` lost on ``cpu`` (reported ``reports`` times); files are made up to that CPU."""
        have, count = self.lost.get(cpu, (0, 0))
        self.lost[cpu] = (have + events, count + reports)

    def close(self):
        """Flush and close every file (creating missing CPU files); return ``summary()``."""
        if not self.closed:
            self.closed = True
            if self._pending:
                self.skipped_bytes += len(self._pending)
                self._pending = b""
            top = max([n - 1 for n in self._dev_cpus.values()] + list(self.lost), default=0)
            for dev in list(self._dev_cpus):
                self._grow(dev, top)
            for out in self._outputs.values():
                out.file.close()
        return self.summary()

    def counters(self):
        """{(device name, cpu): Counters}, drops included."""
        result = {}
        for (dev, cpu), out in sorted(self._outputs.items()):
            c = Counters(**asdict(out.counters))
            c.drops, c.drop_reports = self.lost.get(cpu, (0, 0))
            result[self._name(dev), cpu] = c
        return result

    def summary(self):
        """A JSON-able account: per device and CPU counters, totals, lost events per CPU, skipped bytes."""
        devices = {}
        for (name, cpu), c in self.counters().items():
            entry = devices.setdefault(name, {"files": {}, "records": 0, "queued": 0, "bytes": 0})
            entry["files"][f"{name}.blktrace.{cpu}"] = asdict(c)
            entry["records"] += c.records
            entry["queued"] += c.queued
            entry["bytes"] += c.bytes
        for dev in self._dev_cpus:
            devices[self._name(dev)]["dev"] = f"{dev >> 20},{dev & 0xFFFFF}"
        return {
            "records": self.records,
            "devices": devices,
            "lost": {str(cpu): {"events": e, "reports": r} for cpu, (e, r) in sorted(self.lost.items())},
            "skipped_bytes": self.skipped_bytes,
        }

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

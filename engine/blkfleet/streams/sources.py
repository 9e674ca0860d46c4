"""Directories of IOs by device: a capture (``DEV.blktrace.CPU``: its queued IOs, the Q events ``blkfleet record``
converts) or replay files (``DEV.BASE.CPU``, native or btrecord), each device's files as streams of IOChunks.

A capture's Q events become IOs exactly as ``blkfleet record`` makes them (the same op and flag tables), so
stats and transforms of a capture and of its recording agree.
"""

import os
from array import array

from ..errors import BlkfleetError
from ..names import name_problem
from ..percpu import find_devices, find_per_cpu
from ..record.convert import FAST, Columns
from ..replayfile import open_replay
from ..replayfile.ops import classify
from ..replayfile.reader import IOChunk
from ..trace.queued import queued_chunks
from ..trace.reader import TraceReader
from .merge import merge

CAPTURE = "blktrace"


class Source:
    """A directory of per-CPU files: ``kind`` ("capture" or "replay"), ``base`` (the file kind: blktrace or the
    replay base), ``devices`` ({name: [path per CPU]}, in name order), ``origin`` (its origin.json, if any)."""

    def __init__(self, directory, kind, base, devices):
        self.directory, self.kind, self.base, self.devices = directory, kind, base, devices

    def files(self, device):
        return self.devices[device]

    def file_chunks(self, path):
        """The IOChunks of one file, in file order."""
        if self.kind == "capture":
            return capture_chunks(path)
        return replay_chunks(path)

    def stream(self, device):
        """All IOs of a device in time order (its CPU files merged)."""
        return merge([self.file_chunks(p) for p in self.files(device)])

    def dev_t(self, device):
        """The device number its files record (0 if none)."""
        for path in self.files(device):
            if self.kind == "capture":
                with TraceReader(path) as reader:
                    for rec in reader:
                        return rec.device
            else:
                with open_replay(path) as reader:
                    value = getattr(reader, "device", 0)
                    if value:
                        return value
        return 0


def open_source(directory, base="replay", devices=()):
    """The Source of ``directory``: a capture when it holds ``*.blktrace.N`` files, else replay files
    ``DEV.BASE.N``; ``devices``: only these (all found by default)."""
    if not os.path.isdir(directory):
        raise BlkfleetError(f"{directory}: not a directory")
    bad = name_problem(base)
    if bad:
        raise BlkfleetError(f"invalid replay file base {base!r}: {bad}")
    found = find_devices(directory, CAPTURE)
    kind, kind_base = "capture", CAPTURE
    if not found:
        found = [d for d in find_devices(directory, base) if not name_problem(d)]
        kind, kind_base = "replay", base
    names = list(dict.fromkeys(devices)) or found
    if not names:
        raise BlkfleetError(f"{directory}: holds neither a capture (DEV.blktrace.N) nor replay files (DEV.{base}.N)")
    for name in names:
        bad = name_problem(name)
        if bad:
            raise BlkfleetError(f"invalid device name {name!r}: {bad}")
    return Source(directory, kind, kind_base, {name: find_per_cpu(directory, name, kind_base) for name in names})


def replay_chunks(path):
    with open_replay(path) as reader:
        yield from reader.chunks()


def capture_chunks(path):
    """The Q events of a trace file as IOChunks (ops and flags as the native converter classifies them)."""
    for q in queued_chunks(path):
        n = len(q)
        if not n:
            continue
        if FAST:
            cols = Columns(q, n)
            ops, flags = cols.kinds()
            sectors, nbytes, pids = cols.view("sector"), cols.view("bytes"), cols.view("pid")
            times = q.column("time")
        else:
            b = q.batch()
            kinds = [classify(a, s) for a, s in zip(b.actions, b.nbytes)]
            ops, flags = bytes(k[0] for k in kinds), bytes(k[1] for k in kinds)
            times, sectors, nbytes, pids = b.times, b.sectors, b.nbytes, b.pids
        yield IOChunk(_signed(times, path), _signed(sectors, path), array("q", nbytes), bytes(ops), bytes(flags),
                      array("I", pids))


def _signed(column, path):
    """A u64 column (memoryview or list) as ``array('q')``; values of 2^63 or more are refused as the replay
    file readers refuse them."""
    out = array("q")
    if isinstance(column, memoryview):
        raw = column.tobytes()
        if max(raw[7::8], default=0) >= 0x80:
            raise BlkfleetError(f"{path}: a time or sector of 2^63 or more")
        out.frombytes(raw)
        return out
    if column and max(column) >= 1 << 63:
        raise BlkfleetError(f"{path}: a time or sector of 2^63 or more")
    return array("q", column)

"""fio iolog version 3 from replay files or a capture: every IO at its time, so ``fio --read_iolog`` issues them.

The format (fio's HOWTO, "Trace file format v3", and fio's iolog.c, which writes the times): a first line
``fio version 3 iolog``, then ``TIME FILE add`` and ``TIME FILE open`` per file, then ``TIME FILE ACTION OFFSET
LENGTH`` per IO and ``TIME FILE close`` at the end. TIME counts microseconds from the first IO (fio replays the
differences between them); offsets and lengths are bytes. Reads and writes are ``read`` and ``write``, a
discard ``trim``, a flush ``sync`` (with offset and length 0: fio reads every IO line with both), and a
write-zeroes ``write`` of the same extent (fio has no such action; the summary counts them).

All devices go into one iolog, merged by time, each under its own file name (``/dev/DEV`` unless mapped).
"""

import os
from itertools import repeat
from operator import floordiv, mul, sub

from ..errors import BlkfleetError
from ..replayfile.ops import DISCARD, FLUSH, OP_NAMES, READ, WRITE, WRITE_ZEROES
from ..streams.merge import merge
from .output import replaced

HEADER = "fio version 3 iolog\n"
ACTIONS = {READ: "read", WRITE: "write", DISCARD: "trim", FLUSH: "sync", WRITE_ZEROES: "write"}


def file_problem(path):
    """Why ``path`` cannot name a file in an iolog (fio reads each field up to a blank), or None."""
    if not path or len(path) > 256:
        return "must be 1 to 256 characters"
    if any(c.isspace() or not c.isprintable() for c in path):
        return "holds a blank or a control character (fio reads the field up to a blank)"
    return None


def write_iolog(source, devices, filenames, out):
    """Write the iolog of ``devices`` of a Source to ``out`` (a text file); returns the summary."""
    names = [filenames[d] for d in devices]
    streams = [source.stream(d) for d in devices]
    counts = [0] * len(OP_NAMES)
    total = 0
    first = last = None
    out.write(HEADER)
    for name in names:
        out.write(f"0 {name} add\n0 {name} open\n")
    for chunk, tags in merge(streams, tagged=True):
        if first is None:
            first = chunk.times[0]
        last = chunk.times[-1]
        n = len(chunk)
        total += n
        for op in set(chunk.ops):
            counts[op] += chunk.ops.count(op)
        usec = map(floordiv, map(sub, chunk.times, repeat(first)), repeat(1000))
        offsets = map(mul, chunk.sectors, repeat(512))
        sizes = chunk.nbytes
        if FLUSH in chunk.ops:
            flush = [o == FLUSH for o in chunk.ops]
            offsets = [0 if f else v for f, v in zip(flush, offsets)]
            sizes = [0 if f else v for f, v in zip(flush, sizes)]
        out.write("".join(map("{} {} {} {} {}\n".format, usec, map(names.__getitem__, tags),
                              map(ACTIONS.__getitem__, chunk.ops), offsets, sizes)))
    end = 0 if first is None else (last - first) // 1000
    for name in names:
        out.write(f"{end} {name} close\n")
    return {"ios": total, "ops": {OP_NAMES[op]: n for op, n in enumerate(counts) if n},
            "write_zeroes_as_writes": counts[WRITE_ZEROES], "first_ns": first, "span_ns": 0 if first is None else
            last - first, "files": dict(zip(devices, names))}


def export_iolog(source, devices, filenames, path):
    """``write_iolog`` into ``path`` (replaced only when complete)."""
    with replaced(path) as out:
        summary = write_iolog(source, devices, filenames, out)
        if not summary["ios"]:
            raise BlkfleetError(f"{source.directory}: no IOs to export")
    return dict(summary, output=os.path.abspath(path))

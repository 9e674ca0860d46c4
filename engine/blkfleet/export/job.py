"""A fio job file that approximates a trace, like fio's ``t/btrace2fio``: per device and phase (equal stretches of
the trace) one job with the phase's read/write mix (``rwmixread``), randomness (``percentage_random``: 100 less
the btt sequential fraction of each direction), block size split (``bssplit``, up to 16 sizes per direction),
rate (``rate_iops``), queue depth (``iodepth``: the mean IOs in flight when the capture holds completions, else
--iodepth or 1), flushes (``fsync``: writes per flush) and where it goes (``offset`` and ``size``: the range the
phase touched); ``startdelay`` and ``runtime`` place it in time (``time_based``). Discards are counted in a
comment, not replayed (fio mixes no trims into a read/write job).

Two passes over each device: the whole trace for its span, then the phases.
"""

import math
import os
from bisect import bisect_left

from ..replayfile.ops import READ, WRITE
from ..streams import chunks as ch
from ..workload.figures import DeviceFigures
from ..workload.run import directory_stats
from .output import replaced

MAX_SPLIT = 16
ENGINE = ("ioengine=libaio", "direct=1", "time_based=1", "norandommap=1", "randrepeat=0")


def _split(figures):
    """fio's bssplit of one direction: ``4k/60:8k/40`` (percentages sum to 100)."""
    size = figures["size"]
    rows = size.get("exact") or [{"bytes": max(512, p["from"]), "ios": p["ios"]} for p in size["powers_of_two"]]
    rows = sorted(rows, key=lambda r: -r["ios"])[:MAX_SPLIT]
    total = sum(r["ios"] for r in rows)
    shares = [[r["bytes"], r["ios"] * 100 // total] for r in rows]
    shares[0][1] += 100 - sum(s for _b, s in shares)
    return ":".join(f"{b}/{s}" for b, s in sorted(shares) if s)


def _job(name, filename, phase, start_ns, length_ns, depth):
    ops = phase["ops"]
    reads, writes = ops.get("read"), ops.get("write")
    if not reads and not writes:
        return None, 0
    seconds = max(length_ns / 1e9, 1e-3)
    lines = [f"[{name}]", f"filename={filename}", f"startdelay={max(start_ns // 1000, 0)}us",
             f"runtime={max(length_ns // 1000, 1000)}us", f"iodepth={depth}"]
    random = [100 - round(100 * (f["seek"]["sequential_fraction"] or 0)) if f else 0 for f in (reads, writes)]
    if reads and writes:
        lines.append("rw=randrw" if max(random) else "rw=rw")
        lines.append(f"rwmixread={round(100 * reads['ios'] / (reads['ios'] + writes['ios']))}")
    else:
        kind = "read" if reads else "write"
        lines.append(f"rw=rand{kind}" if max(random) else f"rw={kind}")
    lines.append("percentage_random=" + ",".join(str(r) for r in random))
    lines.append("bssplit=" + ",".join(_split(f) if f else "" for f in (reads, writes)))
    lines.append("rate_iops=" + ",".join(str(max(1, round(f["ios"] / seconds))) if f else "" for f in (reads, writes)))
    flushes = ops.get("flush", {}).get("ios", 0)
    if flushes and writes:
        lines.append(f"fsync={max(1, writes['ios'] // flushes)}")
    lo, hi = phase["extent"]
    lines += [f"offset={lo}", f"size={max(hi - lo, 4096)}"]
    discards = ops.get("discard", {}).get("ios", 0)
    comment = f"; {name}: {reads['ios'] if reads else 0} reads, {writes['ios'] if writes else 0} writes"
    comment += f", {flushes} flushes, {discards} discards (not replayed)" if discards else f", {flushes} flushes"
    return "\n".join([comment] + lines) + "\n", 1


class _Phase(DeviceFigures):
    """A phase's figures, and the range of bytes it touched."""

    def __init__(self):
        super().__init__()
        self.lo, self.hi = None, 0

    def add(self, chunk):
        super().add(chunk)
        data = [s for s, n, o in zip(chunk.sectors, chunk.nbytes, chunk.ops) if n and o in (READ, WRITE)]
        if data:
            lo = min(data) * 512 // 4096 * 4096
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = max(self.hi, -(-max((s * 512 + n) for s, n in zip(chunk.sectors, chunk.nbytes)) // 4096) * 4096)


def export_job(source, devices, filenames, path, phases=4, phase_ns=None, iodepth=None):
    whole = directory_stats(source.directory, source.base, devices, 1)
    sections = ["; fio job file written by blkfleet export fio-job: an approximation of "
                f"{os.path.basename(os.path.abspath(source.directory))}, phase by phase\n",
                "[global]\n" + "\n".join(ENGINE) + "\n"]
    jobs = 0
    for device in devices:
        d = whole["devices"][device]
        span = max(d["span_ns"], 1)
        length = phase_ns or max(1, math.ceil(span / phases))
        depth = iodepth or max(1, math.ceil((d["completions"] or {}).get("in_flight", {}).get("mean") or 1))
        start = d["start_ns"]
        current, k = None, -1
        for chunk in source.stream(device):
            edges = [(t - start) // length for t in (chunk.times[0], chunk.times[-1])]
            pieces = [(edges[0], chunk)] if edges[0] == edges[1] else _cut(chunk, start, length)
            for index, piece in pieces:
                if index != k:
                    if current is not None:
                        jobs += _emit(sections, device, filenames[device], current, k, start, length, depth)
                    current, k = _Phase(), index
                current.add(piece)
        if current is not None:
            jobs += _emit(sections, device, filenames[device], current, k, start, length, depth)
    with replaced(path) as out:
        out.write("\n".join(sections))
    return {"output": os.path.abspath(path), "jobs": jobs, "devices": devices}


def _cut(chunk, start, length):
    """(phase index, the chunk's IOs in it) for the phases a chunk spans."""
    out, at = [], 0
    while at < len(chunk):
        index = (chunk.times[at] - start) // length
        end = bisect_left(chunk.times, start + (index + 1) * length, at)
        out.append((index, ch.cut(chunk, at, end)))
        at = end
    return out


def _emit(sections, device, filename, phase, index, start, length, depth):
    f = phase.figures(1)
    ops = dict(f["ops"])
    text, n = _job(f"{device}-{index + 1}", filename,
                   {"ops": ops, "extent": (phase.lo or 0, phase.hi)}, index * length, length, depth)
    if text:
        sections.append(text)
    return n

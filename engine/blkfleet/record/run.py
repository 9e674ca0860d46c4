"""``blkfleet record``: find trace files, convert each per-CPU file, report."""

import io
import os
from collections import namedtuple
from functools import partial

from ..errors import BlkfleetError
from ..files import atomic_file, trusted_dir
from ..percpu import find_devices, find_per_cpu
from ..replayfile import compat, native
from ..trace.actions import is_queue
from ..trace.matching import has_completions
from ..trace.queued import ROWS, QueuedChunk, queued_chunks
from ..trace.reader import TraceReader
from . import workers
from .capture_check import CaptureCheck
from .convert import CompatConverter, NativeConverter
from .deps import DepOptions, analyse
from .summary import FileSummary

COMPAT_DEFAULTS = (10_000_000, 8)  # btrecord's -m and -M
NATIVE_DEFAULTS = (10_000_000, 64)
MAX_NATIVE_PKTS = 4096


# Start-up counts in the converter's speed (measured against btrecord, which starts in 1 ms): no dataclasses
# (6 ms to import).
_FIELDS = "input_dir output_dir devices find max_time max_pkts base verbose compat accept_missing timing deps jobs"


class RecordOptions(namedtuple("RecordOptions", _FIELDS, defaults=(".", ".", (), False, None, None, "replay", 0,
                                                                    False, False, True, DepOptions(), 1))):
    """What to convert and how: the command line's options. ``timing``: native files of a capture with
    completions carry each IO's recorded timing and dependencies (version 2), found with the rule ``deps``
    (record.deps.DepOptions). ``jobs``: trace files converted at a time, each in its own process (only without
    ``timing`` and ``verbose``, whose work spans the files)."""

    __slots__ = ()

    def resolved(self):
        """Fill defaults by format and validate the bunching limits."""
        d_time, d_pkts = COMPAT_DEFAULTS if self.compat else NATIVE_DEFAULTS
        max_time = d_time if self.max_time is None else self.max_time
        max_pkts = d_pkts if self.max_pkts is None else self.max_pkts
        if max_time == 0:
            raise BlkfleetError("invalid bunch time 0 (-m must be a positive number of nanoseconds)")
        limit = compat.MAX_PKTS if self.compat else MAX_NATIVE_PKTS
        if not 1 <= max_pkts <= limit:
            raise BlkfleetError(f"invalid max pkts {max_pkts} (-M must be 1..{limit})")
        if not self.compat and not 0 < max_time <= native.MAX_DT:
            raise BlkfleetError(f"invalid bunch time {max_time} (-m must be 1..{native.MAX_DT} ns)")
        return max_time & ((1 << 64) - 1), max_pkts


def devices_of(opts):
    """Positional devices then, with -F, those found in the input directory; duplicates dropped."""
    devices = list(dict.fromkeys(opts.devices))
    if opts.find:
        devices += [d for d in find_devices(opts.input_dir, "blktrace") if d not in devices]
    if not devices:
        raise BlkfleetError("no device given (name devices, or use -F to find traces)")
    return devices


def record(opts, out=None):
    """Convert every device's per-CPU traces; returns (list of FileSummary, the capture check's ``capture``
    object or None when the input directory holds no capture.json).

    With capture.json, every file is checked against it (see capture_check): sizes before anything is written,
    queued IOs and bytes before each replay file is put in place. Both directories must be ones nobody but root
    (or us) can change (``files.trusted_dir``): another user could swap the traces read, and a later replay
    trusts what the output directory holds.
    """
    max_time, max_pkts = opts.resolved()
    if not os.access(opts.input_dir, os.R_OK | os.X_OK):  # that both exist, the command line checked
        raise BlkfleetError(f"{opts.input_dir}: input directory is not readable")
    trusted_dir(opts.input_dir, "input directory", create=False)
    trusted_dir(opts.output_dir, "output directory", create=False)
    if not os.access(opts.output_dir, os.W_OK | os.X_OK):
        raise BlkfleetError(f"{opts.output_dir}: output directory is not writable")
    devices = devices_of(opts)
    plan = [(dev, find_per_cpu(opts.input_dir, dev, "blktrace")) for dev in devices]
    check = CaptureCheck.load(opts.input_dir, opts.accept_missing)
    verify = check.after if check else None
    if check:
        check.before(plan)
    if opts.jobs > 1 and not opts.verbose and not opts.timing and sum(len(paths) for _dev, paths in plan) > 1:
        summaries = _side_by_side(opts, plan, max_time, max_pkts, verify)
    else:
        summaries = _one_by_one(opts, plan, max_time, max_pkts, verify, out)
    if check and out and check.warning(devices):
        out.write(f"blkfleet: warning: {check.warning(devices)}\n")
    return summaries, (check.result(devices) if check else None)


def _one_by_one(opts, plan, max_time, max_pkts, verify, out):
    """The files converted in this process, in order."""
    summaries = []
    for dev, paths in plan:
        if opts.compat:
            for cpu, path in enumerate(paths):
                target = f"{opts.output_dir}/{dev}.{opts.base}.{cpu}"
                summaries.append(_compat_file(path, target, dev, cpu, max_time, max_pkts, opts.verbose, out, verify))
        elif opts.timing and has_completions(paths):
            import tempfile  # only here: its import costs the plain conversion's start-up 4 ms

            with tempfile.TemporaryDirectory(prefix=".blkfleet-record-", dir=opts.output_dir) as scratch:
                sources, stats = analyse(paths, scratch, opts.deps)
                try:
                    for cpu, path in enumerate(paths):
                        target = f"{opts.output_dir}/{dev}.{opts.base}.{cpu}"
                        summaries.append(_native_file(path, target, dev, cpu, max_time, max_pkts, verify, sources[cpu]))
                        summaries[-1].timing = {"ios": sources[cpu].ios, "unknown_latency": sources[cpu].unknown,
                                                "device": stats, "rule": opts.deps.as_dict()}
                finally:
                    for source in sources.values():
                        source.close()
        else:
            for cpu, path in enumerate(paths):
                target = f"{opts.output_dir}/{dev}.{opts.base}.{cpu}"
                summaries.append(_native_file(path, target, dev, cpu, max_time, max_pkts, verify))
    return summaries


def _side_by_side(opts, plan, max_time, max_pkts, verify):
    """The files converted ``opts.jobs`` at a time in child processes (record.workers), each written under a new
    name beside its target; here, in file order, each is checked against capture.json and put in place. A failure
    leaves the output directory as converting the files in order would: the files before it in place, a partial
    btrecord file for a conversion error in --compat (as btrecord leaves one), nothing of the files after it."""
    files = [(dev, cpu, path, f"{opts.output_dir}/{dev}.{opts.base}.{cpu}")
             for dev, paths in plan for cpu, path in enumerate(paths)]
    staged = [os.path.join(opts.output_dir, f".{os.path.basename(target)}.{os.urandom(6).hex()}.part")
              for _dev, _cpu, _path, target in files]
    if opts.compat:
        calls = [partial(_compat_file, path, target, dev, cpu, max_time, max_pkts, 0, None, write_to=stage)
                 for (dev, cpu, path, target), stage in zip(files, staged)]
    else:
        calls = [partial(_native_file, path, target, dev, cpu, max_time, max_pkts, write_to=stage)
                 for (dev, cpu, path, target), stage in zip(files, staged)]
    summaries = []
    outcomes = workers.ordered(calls, min(opts.jobs, len(calls)))
    try:
        for (_dev, _cpu, path, target), stage, (ok, value) in zip(files, staged, outcomes):
            if not ok:
                if opts.compat and os.path.lexists(stage):  # btrecord's partial file
                    _put_in_place(stage, target)
                raise value
            if verify:
                try:
                    verify(path, value)
                except BlkfleetError:
                    if opts.compat:  # as _compat_file: no replay file is left
                        _unlink(target)
                    raise
            _put_in_place(stage, target)
            summaries.append(value)
    finally:
        outcomes.close()
        for stage in staged:
            _unlink(stage)
    return summaries


def _put_in_place(stage, target):
    try:
        os.replace(stage, target)
    except OSError as e:
        raise BlkfleetError(f"{target}: cannot put the new file in place: {e.strerror}") from None


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _native_file(path, target, dev, cpu, max_time, max_pkts, verify=None, timing=None, write_to=None):
    """Convert one trace file into ``target`` (written at ``write_to`` instead when given)."""
    summary = FileSummary(dev, cpu, path, target, "native")
    device = _first_device(path)
    with atomic_file(write_to or target, sync=False) as f:
        writer = native.NativeWriter(f, device, cpu, max_pkts, timing=timing is not None)
        NativeConverter(writer, summary, max_time, max_pkts, path, timing=timing).run(queued_chunks(path))
        if timing:
            timing.finish()
        if verify:
            verify(path, summary)
        writer.close()
    return summary


def _first_device(path):
    """dev_t of the first record of a trace (0 for an empty file)."""
    with TraceReader(path) as reader:
        for rec in reader:
            return rec.device
    return 0


def _compat_file(path, target, dev, cpu, max_time, max_pkts, verbose, out, verify=None, write_to=None):
    """The same in btrecord's format."""
    summary = FileSummary(dev, cpu, path, target, "btrecord")
    writer = compat.BtrecordWriter(write_to or target)
    log = None
    if verbose:
        out.write(f"\t{target}: 10000 0 0 0\n")
        log = _VerboseLog(target, cpu, verbose, out)
    ok = False
    try:
        chunks = log.counting(path) if verbose else queued_chunks(path)
        CompatConverter(writer, summary, max_time, max_pkts, path, log=log).run(chunks)
        ok = True
        if verify:
            verify(path, summary)
    except BlkfleetError:
        if ok:  # converted, but not what the capture wrote: no replay file is left (btrecord has no such check)
            writer.close(finalize=False)
            os.unlink(target)
        raise
    finally:
        writer.close(finalize=ok)
        if log:
            log.close()
    if verbose:
        out.write(
            f"\t{target}: 10000 {writer.genesis:x} {writer.header_bunches:x} {writer.header_packets:x}\n"
        )
        summary.records = log.records
        if summary.bunches:
            out.write(
                f"{dev}:{cpu}: {log.records} pkts (tot), {summary.ios} pkts (replay), "
                f"{summary.bunches} bunches, {summary.ios / summary.bunches:.1f} pkts/bunch\n"
            )
    return summary


class _VerboseLog:
    """btrecord's -v ``.rec`` file (put in place at ``close``, like the replay file) and -vv per-IO lines."""

    DASHES = "-" * 18 + "\n"

    def __init__(self, target, cpu, level, out):
        self._atomic = atomic_file(target + ".rec", sync=False)
        self.rec = io.TextIOWrapper(self._atomic.__enter__())
        self.cpu = cpu
        self.level = level
        self.out = out
        self.records = 0

    def counting(self, path):
        """Chunks of Q events, counting every record read (for the "pkts (tot)" figure)."""
        rows = []
        with TraceReader(path) as reader:
            for r in reader:
                self.records += 1
                if is_queue(r.action):
                    rows.append((r.time, r.sector, r.bytes, r.action, r.pid))
                    if len(rows) >= ROWS:
                        yield QueuedChunk.from_rows(rows, reader.version)
                        rows = []
        if rows:
            yield QueuedChunk.from_rows(rows, reader.version)

    def ios(self, times, sectors, nbytes, rws, genesis_at, genesis):
        if self.level < 2:
            return
        for i, (t, sector, size, rw) in enumerate(zip(times, sectors, nbytes, rws)):
            self.out.write(f"{self.cpu:2d}: {sector:10d}+{size // 512:10d} ({rw:d}) @ {t:10x}\n")
            if i == genesis_at:
                self.out.write(f"\tSetting new genesis: {genesis:x}({self.cpu})\n")

    def bunch(self, time, genesis, sectors, nbytes, rws):
        rel = (time - genesis) & ((1 << 64) - 1)
        lines = "".join(f"\t{rw:1d} {s:10d}\t{n // 512:10d}\n" for s, n, rw in zip(sectors, nbytes, rws))
        self.rec.write(
            f"{self.DASHES}{rel // 1_000_000_000:4d}.{rel % 1_000_000_000:09d} {len(sectors):3d}\n{self.DASHES}{lines}"
        )

    def close(self):
        self.rec.flush()
        self._atomic.__exit__(None, None, None)

"""The ftrace backend of a capture: the kernel's ``blk`` tracer, read as raw pages or through trace_pipe.

Modes:

* ``raw`` (default): each CPU's ``per_cpu/cpuN/trace_pipe_raw`` is copied page by page into
  ``DIR/raw/cpuN`` while the workload runs (``os.splice`` on Python >= 3.10, ``os.read``/``os.write``
  otherwise), polled every ``interval`` seconds; at stop the pages are converted into
  ``DEV.blktrace.CPU`` (``rawpages.convert``). Cheapest while tracing: the kernel formats nothing and
  Python touches no event.
* ``pipe``: ``trace_pipe`` in bin mode, split live by ``Splitter`` (the first implementation; kept for
  comparison and for kernels without per-CPU raw files).

The ``DEV.blktrace.CPU`` files are written into the private staging directory and moved into the output
directory when complete (``outputs.publish``); raw pages go to a fresh ``DIR/raw``, each file created with
O_EXCL | O_NOFOLLOW.

Drops: ``[LOST n EVENTS]`` lines (pipe), the pages' missed-events flags (raw) and, in both modes, the
per-CPU ``stats`` counters (``overrun``, ``commit overrun``, ``dropped events``) read before the tracer is
restored.
"""

import errno
import os
import re
import select
import time

from ..errors import BlkfleetError
from ..files import create_new
from . import bioevents, outputs, rawpages, tracefs
from .split import Splitter, cpu_count

MODES = ("events", "raw", "pipe")
PIPE_READ = 1 << 20
HAS_SPLICE = hasattr(os, "splice")
STAT_FIELDS = {"overrun": "overrun", "commit overrun": "commit_overrun", "dropped events": "dropped"}


def read_cpu_stats(tracing, ncpus):
    """{cpu: {"overrun", "commit_overrun", "dropped", "entries"}} from ``per_cpu/cpuN/stats``."""
    result = {}
    for cpu in range(ncpus):
        try:
            with open(os.path.join(tracing, "per_cpu", f"cpu{cpu}", "stats")) as f:
                text = f.read()
        except OSError:
            continue
        entry = {}
        for m in re.finditer(r"^([a-z ]+):\s*(\d+)\s*$", text, re.M):
            key = m.group(1).strip()
            if key in STAT_FIELDS:
                entry[STAT_FIELDS[key]] = int(m.group(2))
            elif key == "entries":
                entry["entries"] = int(m.group(2))
        result[cpu] = entry
    return result


def kernel_drops(stats):
    """Events the kernel says it lost on each CPU."""
    return {cpu: s.get("overrun", 0) + s.get("commit_overrun", 0) + s.get("dropped", 0)
            for cpu, s in stats.items()}


def _is_partition(device):
    _, trace_dir = tracefs.device_trace_dir(device)
    return os.path.exists(os.path.join(os.path.dirname(trace_dir), "partition"))


class _RawReader:
    """Copies one CPU's ring-buffer pages into a file; splice when possible, read/write otherwise."""

    def __init__(self, path_in, path_out, page_size, use_splice):
        self.page_size = page_size
        self.fd = os.open(path_in, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self.out = create_new(path_out, 0o600)
        self.bytes = 0
        self.pipe = None
        if use_splice:
            r, w = os.pipe()
            try:
                import fcntl

                fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), max(page_size * 64, 1 << 16))
            except OSError:
                pass
            self.pipe = (r, w)
            self.pipe_size = max(page_size * 16, 1 << 16)
            try:
                import fcntl

                self.pipe_size = fcntl.fcntl(w, getattr(fcntl, "F_GETPIPE_SZ", 1032))
            except OSError:
                pass
        self._splice_ok = use_splice

    def _splice_once(self):
        """Move the full pages available now; returns bytes moved (0: none ready)."""
        r, w = self.pipe
        try:
            n = os.splice(self.fd, w, self.pipe_size, flags=os.SPLICE_F_NONBLOCK | os.SPLICE_F_MOVE)
        except BlockingIOError:
            return 0
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                self._splice_ok = False
                return 0
            raise
        left = n
        while left:
            left -= os.splice(r, self.out, left, flags=os.SPLICE_F_MOVE)
        return n

    def _read_once(self):
        try:
            data = os.read(self.fd, self.page_size)
        except BlockingIOError:
            return 0
        if not data:
            return 0
        view = memoryview(data)
        while view:
            view = view[os.write(self.out, view):]
        return len(data)

    def drain(self, final=False):
        """Copy what the kernel has: full pages (splice) or any page (read); ``final``: partial pages too."""
        total = 0
        if self._splice_ok:
            while True:
                n = self._splice_once()
                if not n:
                    break
                total += n
            if not final and self._splice_ok:
                self.bytes += total
                return total
        while True:
            n = self._read_once()
            if not n:
                break
            total += n
        self.bytes += total
        return total

    def close(self):
        for fd in (self.fd, self.out, *(self.pipe or ())):
            try:
                os.close(fd)
            except OSError:
                pass


class FtraceCapture:
    """One capture with the blk tracer: ``setup()``, ``start()``, ``poll()``/``run()``, ``finish()``."""

    name = "ftrace"

    def __init__(self, devices, outdir, act_mask="queue", buffer_kb=tracefs.DEFAULT_BUFFER_KB, mode="auto",
                 interval=0.05, clock="mono", use_splice=None, keep_raw=False, lock=None,
                 lock_path=tracefs.LOCK_PATH, owner=None):
        if mode == "auto":
            mode = "events" if tracefs.act_mask_value(act_mask) == tracefs.act_mask_value("queue") else "raw"
            if mode == "events" and any(_is_partition(d) for d in devices):
                mode = "raw"
        if mode not in MODES:
            raise BlkfleetError(f"unknown ftrace mode {mode!r} (known: auto, {', '.join(MODES)})")
        self.devices = list(devices)
        self.outdir = os.path.abspath(outdir)
        self.act_mask = act_mask
        self.buffer_kb = buffer_kb
        self.mode = mode
        self.interval = interval
        self.clock = clock
        self.use_splice = HAS_SPLICE if use_splice is None else (use_splice and HAS_SPLICE)
        self.keep_raw = keep_raw
        self.lock = lock
        self.lock_path = lock_path
        self.capture = None
        self.ncpus = cpu_count()
        self.readers = {}
        self.splitter = None
        self.pipe_fd = None
        self.error = None
        self.raw_dir = os.path.join(self.outdir, outputs.RAW)
        self.staging = os.path.join(self.outdir, outputs.STAGING)
        # Who the ring buffers are salvaged for if this process dies (tracefs.save_snapshot, salvage.drain).
        self.owner = dict(owner, mode=mode, raw_dir=self.raw_dir) if owner else None
        self.layout = None
        self.blk_type = None
        self.decoder = None
        self.event = None
        self.dev_numbers = {}
        self.started = None

    # -- set-up -------------------------------------------------------------------------------------

    def setup(self):
        """Own and configure the tracer (tracing stays off) and open the readers."""
        if self.mode == "events":
            if tracefs.act_mask_value(self.act_mask) != tracefs.act_mask_value("queue"):
                raise BlkfleetError("the events mode records queue events only: use --mode raw for act_mask "
                                    f"{self.act_mask!r}")
            self.capture = bioevents.configure(self.devices, buffer_kb=self.buffer_kb, clock=self.clock,
                                               lock=self.lock, lock_path=self.lock_path, owner=self.owner)
        else:
            self.capture = tracefs.configure(self.devices, act_mask=self.act_mask, buffer_kb=self.buffer_kb,
                                             clock=self.clock, lock=self.lock, lock_path=self.lock_path,
                                             owner=self.owner)
        try:
            tracing = self.capture.tracing
            for name, trace_dir in self.capture.devices.items():
                with open(os.path.join(os.path.dirname(trace_dir), "dev")) as f:
                    major, minor = (int(x) for x in f.read().split(":"))
                self.dev_numbers[name] = major << 20 | minor
            if self.mode in ("raw", "events"):
                self.layout = rawpages.PageLayout.from_tracefs(tracing)
                if self.mode == "raw":
                    self.blk_type = rawpages.blk_entry_type(tracing)
                    self.decoder = rawpages.BlkDecoder(self.blk_type, self.layout.byteorder)
                else:
                    self.event = bioevents.event_format(self.capture.root)
                    self.decoder = bioevents.BioQueueDecoder(*self.event, self.layout.byteorder)
                os.makedirs(self.outdir, exist_ok=True)
                outputs.make_raw(self.outdir)
                for cpu in range(self.ncpus):
                    src = os.path.join(tracing, "per_cpu", f"cpu{cpu}", "trace_pipe_raw")
                    if not os.path.exists(src):
                        continue
                    self.readers[cpu] = _RawReader(src, os.path.join(self.raw_dir, f"cpu{cpu}"),
                                                   self.layout.page_size, self.use_splice)
            else:
                names = {dev: name for name, dev in self.dev_numbers.items()}
                os.makedirs(self.outdir, exist_ok=True)
                self.splitter = Splitter(outputs.make_staging(self.outdir), ncpus=self.ncpus, names=names,
                                         devices=list(self.dev_numbers.values()))
                self.pipe_fd = os.open(self.capture.pipe_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except BaseException:
            self._close_readers()
            self.capture.restore()
            raise
        return self

    def info(self):
        """What ``capture start`` reports about this backend."""
        info = {"mode": self.mode, "devices": sorted(self.dev_numbers), "ncpus": self.ncpus,
                "buffer_kb": self.buffer_kb, "clock": self.clock,
                "act_mask": f"0x{tracefs.act_mask_value(self.act_mask):x}"}
        if self.mode != "pipe":
            info.update(splice=self.use_splice, page_size=self.layout.page_size, blk_entry_type=self.blk_type,
                        interval=self.interval)
        if self.mode == "events":
            info.update(event="/".join(bioevents.EVENT), event_id=self.event[0],
                        event_fields={k: list(v) for k, v in self.event[1].items()})
        return info

    def start(self):
        self.started = time.time()
        self.capture.start()

    # -- while tracing ------------------------------------------------------------------------------

    def poll(self, final=False):
        """Move what the kernel has buffered to disk; a write error stops the capture (``self.error``)."""
        if self.error:
            return 0
        try:
            if self.mode != "pipe":
                return sum(r.drain(final) for r in self.readers.values())
            total = 0
            while True:
                try:
                    data = os.read(self.pipe_fd, PIPE_READ)
                except BlockingIOError:
                    break
                if not data:
                    break
                self.splitter.feed(data)
                total += len(data)
            return total
        except OSError as e:
            self.error = f"capture stopped: cannot write the trace ({e.strerror or e}); what was written is kept"
            try:
                self.capture.stop()
            except BlkfleetError:
                pass
            return 0

    def bytes_read(self):
        if self.mode != "pipe":
            return sum(r.bytes for r in self.readers.values())
        return self.splitter._offset if self.splitter else 0

    def run(self, should_stop, wakeup_fd=None):
        """Poll every ``interval`` seconds until ``should_stop()`` is true or an error stops the capture.

        When one poll moved more than an eighth of a CPU's buffer, the next comes after 10 ms at most: the
        buffers are filling fast and a late reader would lose events.
        """
        busy = (self.buffer_kb or tracefs.DEFAULT_BUFFER_KB) * 1024 // 8
        while not should_stop() and not self.error:
            moved = self.poll()
            wait = min(self.interval, 0.01) if moved > busy else self.interval
            if wakeup_fd is not None:
                ready, _, _ = select.select([wakeup_fd], [], [], wait)
                if ready:
                    try:
                        os.read(wakeup_fd, 512)
                    except OSError:
                        pass
            else:
                time.sleep(wait)

    def kernel_stats(self):
        return read_cpu_stats(self.capture.tracing, self.ncpus)

    # -- stop ---------------------------------------------------------------------------------------

    def _close_readers(self):
        for r in self.readers.values():
            r.close()
        if self.pipe_fd is not None:
            os.close(self.pipe_fd)
            self.pipe_fd = None

    def finish(self):
        """Tracing off, drain, read the kernel's drop counters, restore the tracer, write the files.

        Returns the summary (``split.Splitter.summary`` shape plus ``kernel``, ``mode``, ``error``).
        """
        stats = {}
        try:
            try:
                self.capture.stop()
            except BlkfleetError as e:
                self.error = self.error or str(e)
            self.poll(final=True)
            stats = self.kernel_stats()
        finally:
            self._close_readers()
            try:
                self.capture.restore()
            except BlkfleetError as e:
                self.error = self.error or str(e)
        drops = kernel_drops(stats)
        names = {dev: name for name, dev in self.dev_numbers.items()}
        if self.mode != "pipe":
            raw_files = {cpu: os.path.join(self.raw_dir, f"cpu{cpu}") for cpu in self.readers}
            try:
                outputs.remove(self.staging)
                summary = rawpages.convert(raw_files, outputs.make_staging(self.outdir), self.layout, self.blk_type,
                                           ncpus=self.ncpus, names=names, devices=list(self.dev_numbers.values()),
                                           extra_drops=drops, decoder=self.decoder)
                outputs.publish(self.staging, self.outdir)
            except OSError as e:
                self.error = self.error or (f"cannot write the converted trace ({e.strerror or e}); the raw pages "
                                            f"are kept in {self.raw_dir}")
                summary = {"records": 0, "devices": {}, "lost": {}, "skipped_bytes": 0}
                try:
                    outputs.remove(self.staging)
                except OSError:
                    pass
            else:
                if not self.keep_raw and not self.error:
                    for path in raw_files.values():
                        os.unlink(path)
                    try:
                        os.rmdir(self.raw_dir)
                    except OSError:
                        pass
        else:
            for cpu, count in drops.items():
                reported = self.splitter.lost.get(cpu, (0, 0))[0]
                if count > reported:
                    self.splitter.add_lost(cpu, count - reported)
            summary = self.splitter.close()
            try:
                outputs.publish(self.staging, self.outdir)
            except OSError as e:
                self.error = self.error or f"cannot move the trace files into {self.outdir}: {e.strerror or e}"
        summary["kernel"] = {str(cpu): s for cpu, s in sorted(stats.items())}
        summary["raw_bytes"] = self.bytes_read()
        return summary

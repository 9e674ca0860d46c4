"""The ftrace backend of a capture: per-CPU ring-buffer pages, copied while tracing, converted at stop.

Two modes, one class each behind ``RingBufferCapture`` (the ``backend.CaptureBackend`` of ftrace):

* ``events`` (``BioQueueCapture``): the ``block:block_bio_queue`` tracepoint in a private instance
  (``bioevents``): one event per IO, Q records, and the C records of the device's completion tracepoint
  (unless ``completions=False``);
* ``raw`` (``BlkTracerCapture``): the kernel's ``blk`` tracer, every act_mask category.

In both, each CPU's ``per_cpu/cpuN/trace_pipe_raw`` is copied page by page into ``DIR/raw/cpuN`` while the
workload runs (``os.splice`` on Python >= 3.10, ``os.read``/``os.write`` otherwise), polled every
``interval`` seconds; at stop the pages are converted into ``DEV.blktrace.CPU`` (``rawpages.convert``, with
the mode's page decoder). The kernel formats nothing and Python touches no event while tracing.
``ftrace_backend`` picks the mode (``auto``: events for act_mask queue or queue,complete on whole devices, else
raw).

The former ``pipe`` mode (the blk tracer's ``trace_pipe`` in bin mode, split live) is gone: it cost more
than raw, dropped millions of events at full rate (docs/capture.md, Overhead) and gave the same records as
raw. The kernels without per-CPU raw files it was kept for are far older than any host blkfleet runs on; on
one, ``setup`` fails with one line. ``--mode pipe`` is taken as ``raw``.

The ``DEV.blktrace.CPU`` files are written into the private staging directory and moved into the output
directory when complete (``outputs.publish``); raw pages go to a fresh ``DIR/raw``, each file created with
O_EXCL | O_NOFOLLOW.

Drops: the pages' missed-events flags and the per-CPU ``stats`` counters (``overrun``, ``commit overrun``,
``dropped events``) read before the tracer is put back; per CPU the larger counts.
"""

import abc
import errno
import os
import re

from ..errors import BlkfleetError
from ..files import create_new
from . import bioevents, outputs, rawpages, tracefs
from .backend import CaptureBackend
from .split import cpu_count

MODES = ("events", "raw")
EVENTS_MASKS = (tracefs.act_mask_value("queue"), tracefs.act_mask_value("queue,complete"))  # what events records
MODE_ALIASES = {"pipe": "raw"}  # the retired trace_pipe mode: the same blk tracer records, read as pages
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


class _PageCopier:
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


class RingBufferCapture(CaptureBackend):
    """An ftrace capture whose per-CPU ring-buffer pages are copied to ``DIR/raw`` and converted at stop.

    A mode provides ``configure_tracer`` (own and set up its tracer: a ``tracefs.OwnedTracer``) and
    ``page_decoder`` (turns a page's events into v7 records). Fields besides ``CaptureBackend``'s:
    @tracer: the OwnedTracer, once set up; @readers: ``{cpu: _PageCopier}``; @layout: the pages'
    ``rawpages.PageLayout``; @decoder: the page decoder; @dev_numbers: ``{kernel name: dev_t}``;
    @owner: whose buffers a recovery salvages if this process dies (``tracefs.save_snapshot``).
    """

    name = "ftrace"

    def __init__(self, devices, outdir, act_mask="queue", buffer_kb=tracefs.DEFAULT_BUFFER_KB, interval=0.05,
                 clock="mono", use_splice=None, keep_raw=False, lock=None, lock_path=tracefs.LOCK_PATH, owner=None):
        super().__init__(devices, outdir, interval)
        self.act_mask = act_mask
        self.buffer_kb = buffer_kb
        self.clock = clock
        self.use_splice = HAS_SPLICE if use_splice is None else (use_splice and HAS_SPLICE)
        self.keep_raw = keep_raw
        self.lock = lock
        self.lock_path = lock_path
        self.tracer = None
        self.ncpus = cpu_count()
        self.readers = {}
        self.raw_dir = os.path.join(self.outdir, outputs.RAW)
        self.staging = os.path.join(self.outdir, outputs.STAGING)
        self.owner = dict(owner, mode=self.mode, raw_dir=self.raw_dir) if owner else None
        self.layout = None
        self.decoder = None
        self.dev_numbers = {}

    @abc.abstractmethod
    def configure_tracer(self):
        """Own the tracer lock and configure this mode's tracer (tracing off); returns its OwnedTracer."""

    @abc.abstractmethod
    def page_decoder(self, layout):
        """The decoder ``rawpages.convert`` turns this mode's pages into v7 records with."""

    def mode_info(self):
        """What ``info`` adds for this mode."""
        return {}

    # -- set-up -------------------------------------------------------------------------------------

    def setup(self):
        """Own and configure the tracer (tracing stays off) and open the page copiers; on failure the tracer is
        put back and ``DIR/raw`` removed."""
        self.tracer = self.configure_tracer()
        made_raw = False
        try:
            for name, trace_dir in self.tracer.devices.items():
                with open(os.path.join(os.path.dirname(trace_dir), "dev")) as f:
                    major, minor = (int(x) for x in f.read().split(":"))
                self.dev_numbers[name] = major << 20 | minor
            self.layout = rawpages.PageLayout.from_tracefs(self.tracer.root)
            self.decoder = self.page_decoder(self.layout)
            os.makedirs(self.outdir, exist_ok=True)
            outputs.make_raw(self.outdir)
            made_raw = True
            for cpu in range(self.ncpus):
                src = os.path.join(self.tracer.tracing, "per_cpu", f"cpu{cpu}", "trace_pipe_raw")
                if os.path.exists(src):
                    self.readers[cpu] = _PageCopier(src, os.path.join(self.raw_dir, f"cpu{cpu}"),
                                                    self.layout.page_size, self.use_splice)
            if not self.readers:
                raise BlkfleetError(f"{self.tracer.tracing}/per_cpu has no cpuN/trace_pipe_raw: this kernel's "
                                    "ftrace cannot hand out its ring-buffer pages", code="unavailable")
        except BaseException:
            self._close_readers()
            self.tracer.teardown()
            if made_raw:
                outputs.remove(self.raw_dir)
            raise
        return self

    def info(self):
        info = {"mode": self.mode, "devices": sorted(self.dev_numbers), "ncpus": self.ncpus,
                "buffer_kb": self.buffer_kb, "clock": self.clock,
                "act_mask": f"0x{tracefs.act_mask_value(self.act_mask):x}", "splice": self.use_splice,
                "page_size": self.layout.page_size, "interval": self.interval, "blk_entry_type": None}
        info.update(self.mode_info())
        return info

    def start(self):
        self.tracer.start()

    # -- while tracing ------------------------------------------------------------------------------

    def poll(self, final=False):
        """Copy what the kernel has buffered; a write error stops the capture (``error``)."""
        if self.error:
            return 0
        try:
            return sum(r.drain(final) for r in self.readers.values())
        except OSError as e:
            self.error = f"capture stopped: cannot write the trace ({e.strerror or e}); what was written is kept"
            try:
                self.tracer.stop()
            except BlkfleetError:
                pass
            return 0

    def busy_bytes(self):
        """An eighth of a CPU's buffer: the buffers are filling fast and a late reader would lose events."""
        return (self.buffer_kb or tracefs.DEFAULT_BUFFER_KB) * 1024 // 8

    def bytes_read(self):
        return sum(r.bytes for r in self.readers.values())

    def kernel_stats(self):
        return read_cpu_stats(self.tracer.tracing, self.ncpus)

    # -- stop ---------------------------------------------------------------------------------------

    def _close_readers(self):
        for r in self.readers.values():
            r.close()

    def finish(self):
        """Tracing off, drain, read the kernel's drop counters, tear the tracer down, convert the pages.

        Returns the summary (``rawpages.convert``'s plus ``kernel`` and ``raw_bytes``).
        """
        stats = {}
        try:
            try:
                self.tracer.stop()
            except BlkfleetError as e:
                self.error = self.error or str(e)
            self.poll(final=True)
            stats = self.kernel_stats()
        finally:
            self._close_readers()
            try:
                self.tracer.teardown()
            except BlkfleetError as e:
                self.error = self.error or str(e)
        names = {dev: name for name, dev in self.dev_numbers.items()}
        raw_files = {cpu: os.path.join(self.raw_dir, f"cpu{cpu}") for cpu in self.readers}
        try:
            outputs.remove(self.staging)
            summary = rawpages.convert(raw_files, outputs.make_staging(self.outdir), self.layout, self.decoder,
                                       ncpus=self.ncpus, names=names, devices=list(self.dev_numbers.values()),
                                       extra_drops=kernel_drops(stats))
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
        summary["kernel"] = {str(cpu): s for cpu, s in sorted(stats.items())}
        summary["raw_bytes"] = self.bytes_read()
        return summary


class BioQueueCapture(RingBufferCapture):
    """The ``events`` mode: the block_bio_queue tracepoint in a private instance (Q records), and with
    ``completions`` (the default) each device's completion tracepoint (C records; ``bioevents``)."""

    mode = "events"

    def __init__(self, devices, outdir, act_mask="queue", completions=True, **options):
        if tracefs.act_mask_value(act_mask) not in EVENTS_MASKS:
            raise BlkfleetError(f"the events mode records queue (and complete) events only: use --mode raw for "
                                f"act_mask {act_mask!r}")
        super().__init__(devices, outdir, act_mask, **options)
        self.completions = completions
        self.event = None
        self.completion_formats = {}

    def configure_tracer(self):
        return bioevents.configure(self.devices, buffer_kb=self.buffer_kb, clock=self.clock,
                                   completions=self.completions, lock=self.lock, lock_path=self.lock_path,
                                   owner=self.owner)

    def page_decoder(self, layout):
        self.event = bioevents.event_format(self.tracer.root)
        self.completion_formats = {event: bioevents.event_format(self.tracer.root, event)
                                   for event in self.tracer.completions}
        return bioevents.BlockEventDecoder(self.event, self.completion_formats, layout.byteorder)

    def mode_info(self):
        names = {dev: name for name, dev in self.dev_numbers.items()}
        return {"event": bioevents.event_name(bioevents.EVENT), "event_id": self.event[0],
                "event_fields": {k: list(v) for k, v in self.event[1].items()},
                "completions": bool(self.completion_formats),
                "completion_events": [
                    {"event": bioevents.event_name(event), "event_id": event_id,
                     "event_fields": {k: list(v) for k, v in fields.items()},
                     "devices": sorted(names.get(n, str(n)) for n in self.tracer.completions[event])}
                    for event, (event_id, fields) in self.completion_formats.items()]}


class BlkTracerCapture(RingBufferCapture):
    """The ``raw`` mode: the kernel's ``blk`` tracer (every act_mask category; Q, G, P, U for queue)."""

    mode = "raw"
    blk_type = None  # the blk tracer's ftrace entry type, once set up (None: not known on this kernel)

    def configure_tracer(self):
        return tracefs.configure(self.devices, act_mask=self.act_mask, buffer_kb=self.buffer_kb, clock=self.clock,
                                 lock=self.lock, lock_path=self.lock_path, owner=self.owner)

    def page_decoder(self, layout):
        self.blk_type = rawpages.blk_entry_type(self.tracer.root)
        return rawpages.BlkDecoder(self.blk_type, layout.byteorder)

    def mode_info(self):
        return {"blk_entry_type": self.blk_type}


def resolve_mode(mode, act_mask, devices):
    """The mode ``mode`` means: ``auto`` is events for act_mask queue (or queue,complete) on whole devices, else
    raw; ``pipe`` is raw. BlkfleetError for an unknown mode."""
    mode = MODE_ALIASES.get(mode, mode)
    if mode == "auto":
        whole = not any(_is_partition(d) for d in devices)
        return "events" if tracefs.act_mask_value(act_mask) in EVENTS_MASKS and whole else "raw"
    if mode not in MODES:
        raise BlkfleetError(f"unknown ftrace mode {mode!r} (known: auto, {', '.join(MODES)})")
    return mode


def ftrace_backend(devices, outdir, mode="auto", act_mask="queue", completions=True, **options):
    """The ftrace capture of ``devices`` in ``mode`` (see ``resolve_mode``), not set up yet; ``completions``: the
    events mode also records completions (the raw mode records what ``act_mask`` says); ``options``:
    ``RingBufferCapture``'s."""
    resolved = resolve_mode(mode, act_mask, devices)
    if resolved == "events":
        return BioQueueCapture(devices, outdir, act_mask, completions, **options)
    return BlkTracerCapture(devices, outdir, act_mask, **options)

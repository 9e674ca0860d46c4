"""What every capture backend does, written down, and the one loop that runs a backend while it traces.

Two backends implement ``CaptureBackend``: ``blktrace.BlktraceCapture`` (the blktrace tool, relay files in
debugfs) and the ftrace modes of ``ftrace`` (``BioQueueCapture``: the block_bio_queue tracepoint;
``BlkTracerCapture``: the kernel's ``blk`` tracer), which read per-CPU ring-buffer pages. The capture daemon
(``daemon.run``) and a capture in this process (``foreground.traced``) drive any of them the same way::

    backend.setup()                     # own and configure the tracer, or start the tool; nothing traced yet
    backend.info(), backend.recovery()  # for capture.json and the root-only run record
    backend.start()                     # tracing on
    backend.run(should_stop, wakeup_fd) # poll until told to stop, or until an error stops the capture
    summary = backend.finish()          # tracing off, tracer put back, DEV.blktrace.CPU files published

A setup that fails leaves nothing behind (tracer as it was, no files). ``finish`` always puts the tracer back,
and reports a failure in ``error`` rather than raising when it can still say what was captured.
"""

import abc
import os
import select
import time

FAST_POLL = 0.01  # seconds between polls while the buffers fill fast (see CaptureBackend.run)


class CaptureBackend(metaclass=abc.ABCMeta):
    """One capture of ``devices`` into ``outdir``.

    @name: ``"blktrace"`` or ``"ftrace"`` (capture.json's ``backend``);
    @mode: ``"relay"``, ``"events"`` or ``"raw"`` (capture.json's ``mode``);
    @devices: the devices as given (kernel names or device node paths);
    @outdir: the absolute output directory (DEV.blktrace.CPU files, scratch files of ``outputs``);
    @interval: seconds between two polls while tracing;
    @error: None, or why the capture stopped early or is incomplete (one line; set by ``poll`` or ``finish``).
    """

    name = None
    mode = None

    def __init__(self, devices, outdir, interval):
        self.devices = list(devices)
        self.outdir = os.path.abspath(outdir)
        self.interval = interval
        self.error = None

    @abc.abstractmethod
    def setup(self):
        """Own what traces (tracer lock and settings, or the blktrace process); returns self. On failure a
        BlkfleetError (one line), with nothing left behind."""

    @abc.abstractmethod
    def info(self):
        """The resolved settings ``capture start`` reports (capture.json ``backend_info``): ``mode``,
        ``devices`` (kernel names) and what the backend knows of its buffers."""

    def recovery(self):
        """What a recovery must undo if this process dies, for the root-only run record (``rundir``): a
        dict of JSON values, empty when the tracer snapshot says it all."""
        return {}

    @abc.abstractmethod
    def start(self):
        """Switch tracing on."""

    @abc.abstractmethod
    def poll(self, final=False):
        """Move what the kernel buffered to disk (``final``: partial pages too); returns the bytes moved. A
        failure that ends the capture sets ``error`` instead of raising."""

    def busy_bytes(self):
        """A poll that moved more than this many bytes means the buffers fill fast: the next poll comes
        after ``FAST_POLL`` at most. None: no such hurry (the backend's own tool drains its buffers)."""
        return None

    @abc.abstractmethod
    def finish(self):
        """Tracing off, what is left drained, the tracer put back, the files published; returns the summary
        (``{"records", "devices", "lost", "skipped_bytes", ...}``, see docs/capture.md)."""

    def run(self, should_stop, wakeup_fd=None):
        """Poll every ``interval`` seconds until ``should_stop()`` is true or ``error`` is set.

        ``wakeup_fd``: a descriptor that becomes readable when ``should_stop`` may have changed (the daemon's
        signal wake-up pipe); it ends a wait early and is drained.
        """
        busy = self.busy_bytes()
        while not should_stop() and not self.error:
            moved = self.poll()
            wait = min(self.interval, FAST_POLL) if busy is not None and moved > busy else self.interval
            if wakeup_fd is None:
                time.sleep(wait)
            elif select.select([wakeup_fd], [], [], wait)[0]:
                try:
                    os.read(wakeup_fd, 512)
                except OSError:
                    pass

"""A progress line on stderr while a long command runs (record, compare, import, stats, capture stop), only when
stderr is a terminal: a pipe, a log file or an Ansible module gets no progress, only the command's own lines.

The figures come from the kernel, not from the command's loops, so no reader carries progress code: a command
that reads its inputs shows the bytes its process has read (``rchar`` of /proc/self/io) against the size of its
inputs; ``capture stop``, whose work is done by the capture's daemon, shows the trace files' size as the daemon
writes them. The line is redrawn at most every ``INTERVAL`` seconds and erased when the command ends, so what
the command prints afterwards starts on a clean line.
"""

import os
import sys
import threading
import time

INTERVAL = 0.25
CLEAR = "\r\033[K"


def mib(nbytes):
    return f"{nbytes / (1 << 20):.1f} MiB"


def _files(paths):
    """The regular files given, and those directly in the directories given."""
    for path in paths:
        if os.path.isdir(path):
            try:
                names = sorted(os.listdir(path))
            except OSError:
                continue
            for name in names:
                full = os.path.join(path, name)
                if os.path.isfile(full):
                    yield full
        elif os.path.isfile(path):
            yield path


def total_size(paths):
    size = 0
    for path in _files(paths):
        try:
            size += os.stat(path).st_size
        except OSError:
            pass
    return size


def bytes_read():
    """Bytes read through read(2) and friends so far by this process and its children (``record`` converts in
    child processes; the kernel adds a child's count to its parent's when it is reaped), or None without /proc."""
    total = _rchar("/proc/self/io")
    if total is None:
        return None
    return total + sum(_rchar(f"/proc/{pid}/io") or 0 for pid in _children())


def _rchar(path):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _children():
    """Pids of the live children of this process's threads."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return []
    pids = []
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids += f.read().split()
        except OSError:
            pass
    return [int(p) for p in pids if p.isdigit()]


class Reading:
    """``label: 12.3 MiB of 40.0 MiB read (30 %), 1.2 s``: the bytes read since the start against the inputs."""

    def __init__(self, paths):
        self.total = total_size(paths)
        self.start = bytes_read()

    def __call__(self):
        now = bytes_read()
        if now is None or self.start is None:
            return ""
        done = min(now - self.start, self.total) if self.total else now - self.start
        share = f" ({100 * done // self.total} %)" if self.total else ""
        return f"{mib(done)} of {mib(self.total)} read{share}"


class Writing:
    """``label: 12.3 MiB of trace files, 1.2 s``: what another process writes into ``directory``."""

    def __init__(self, directory, marker=".blktrace."):
        self.directory = directory
        self.marker = marker

    def __call__(self):
        try:
            names = [n for n in os.listdir(self.directory) if self.marker in n]
        except OSError:
            return ""
        return f"{mib(total_size(os.path.join(self.directory, n) for n in names))} of trace files"


def reading(*attributes):
    """For ``set_defaults(progress=...)``: progress over the input paths held by these parsed arguments."""

    def make(args):
        paths = []
        for name in attributes:
            value = getattr(args, name)
            paths += value if isinstance(value, list) else [value]
        return Reading(paths)

    return make


def writing(attribute):
    """For ``set_defaults(progress=...)``: progress of the trace files written into the directory ``attribute``."""
    return lambda args: Writing(getattr(args, attribute))


class Line:
    """The progress line of one command: started and stopped around it (a context manager). While it runs,
    ``sys.stderr`` is a ``_Guard``: whatever the command writes there erases the line first, and the line is
    drawn again only at the start of a line, so it never splices into the command's own messages."""

    def __init__(self, label, measure, stream=None, interval=INTERVAL):
        self.label = label
        self.measure = measure
        self.stream = sys.stderr if stream is None else stream
        self.interval = interval
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.shown = False  # the progress line is on the terminal now
        self.at_line_start = True  # the command's last write to stderr ended its line
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self.saved = None

    def _draw(self):
        text = self.measure()
        elapsed = f"{time.monotonic() - self.started:.1f} s"
        with self.lock:
            if not self.at_line_start:
                return
            self.stream.write(f"{CLEAR}{self.label}: {text + ', ' if text else ''}{elapsed}")
            self.stream.flush()
            self.shown = True

    def write(self, text):
        """A write of the command to stderr, through the guard."""
        with self.lock:
            if self.shown:
                self.stream.write(CLEAR)
                self.shown = False
            if text:
                self.at_line_start = text.endswith("\n")
            return self.stream.write(text)

    def _run(self):
        while not self.done.wait(self.interval):
            try:
                self._draw()
            except (OSError, ValueError):  # the terminal went away: no more progress, the command goes on
                return

    def __enter__(self):
        self._draw()
        self.saved, sys.stderr = sys.stderr, _Guard(self)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        sys.stderr = self.saved
        try:
            with self.lock:
                if self.shown:
                    self.stream.write(CLEAR)
                    self.stream.flush()
        except (OSError, ValueError):
            pass
        return False


class _Guard:
    """sys.stderr while a progress line runs: writes go through ``Line.write``, the rest to the real stream."""

    def __init__(self, line):
        self._line = line

    def write(self, text):
        return self._line.write(text)

    def __getattr__(self, name):
        return getattr(self._line.stream, name)


def wanted(args, stream=None):
    """Whether the command of ``args`` shows progress: it declares a measure, is not ``-q``, and stderr is a
    terminal."""
    stream = sys.stderr if stream is None else stream
    if getattr(args, "progress", None) is None or getattr(args, "quiet", False):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

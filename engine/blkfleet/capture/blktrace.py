"""The blktrace backend: the Debian ``blktrace`` tool (relay files in debugfs), run and stopped for us.

``blktrace -D DIR -A MASK -b KB -n N -d /dev/X ...`` writes ``DIR/X.blktrace.CPU`` itself. Two quirks of
blktrace 1.x/2.0 shape ``setup()``: when the kernel refuses the relay files (lockdown: EPERM) it prints
``Thread N failed open ...: 1/Operation not permitted`` and then exits with status 0 or, with ``-o -``,
hangs; so success is judged from its output and its files, not its exit status. Drops: at exit it prints
``Total: N events (dropped D), K KiB data`` per device, which ``finish()`` parses.
"""

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import asdict

from ..errors import BlkfleetError
from ..trace import TraceReader
from ..trace.actions import is_queue
from . import tracefs
from .split import Counters

START_WAIT = 3.0
STOP_WAIT = 30.0
_FAILURE = re.compile(r"(failed open|FAILED to start|BLKTRACESETUP|Operation not permitted|Permission denied|"
                      r"No such file|Invalid argument|Device or resource busy|Cannot|cannot|Failed)", re.M)
_DEVICE_BLOCK = re.compile(r"^=== (\S+) ===$", re.M)
_TOTAL = re.compile(r"Total:\s+(\d+) events \(dropped (\d+)\),\s+(\d+) KiB data")


class BlktraceUnavailable(BlkfleetError):
    """blktrace cannot trace here (not installed, relay files refused, ...)."""


def parse_totals(text):
    """{device: {"events", "dropped", "kib"}} from blktrace's closing statistics."""
    result = {}
    blocks = list(_DEVICE_BLOCK.finditer(text))
    for i, m in enumerate(blocks):
        end = blocks[i + 1].start() if i + 1 < len(blocks) else len(text)
        t = _TOTAL.search(text, m.end(), end)
        if t:
            result[m.group(1)] = {"events": int(t.group(1)), "dropped": int(t.group(2)), "kib": int(t.group(3))}
    return result


def count_file(path):
    """Counters of one DEV.blktrace.CPU file (records, queued IOs and their bytes, file size)."""
    c = Counters()
    c.file_bytes = os.path.getsize(path)
    if c.file_bytes:
        with TraceReader(path) as reader:
            for r in reader:
                c.records += 1
                if is_queue(r.action):
                    c.queued += 1
                    c.bytes += r.bytes
    return c


def summarize_files(outdir, names, drops=None):
    """A Splitter-shaped summary of the DEV.blktrace.CPU files blktrace wrote."""
    devices = {}
    total = 0
    for name in names:
        prefix = f"{name}.blktrace."
        cpus = sorted(int(f[len(prefix):]) for f in os.listdir(outdir)
                      if f.startswith(prefix) and f[len(prefix):].isdigit())
        entry = {"files": {}, "records": 0, "queued": 0, "bytes": 0, "drops": (drops or {}).get(name, 0)}
        for cpu in cpus:
            c = count_file(os.path.join(outdir, f"{prefix}{cpu}"))
            entry["files"][f"{prefix}{cpu}"] = asdict(c)
            entry["records"] += c.records
            entry["queued"] += c.queued
            entry["bytes"] += c.bytes
        total += entry["records"]
        devices[name] = entry
    return {"records": total, "devices": devices, "lost": {}, "skipped_bytes": 0}


class BlktraceCapture:
    """One run of the blktrace tool over ``devices``."""

    name = "blktrace"
    mode = "relay"

    def __init__(self, devices, outdir, act_mask="queue", buffer_kb=512, buffer_count=4, interval=0.2):
        self.devices = list(devices)
        self.outdir = os.path.abspath(outdir)
        self.act_mask = act_mask
        self.buffer_kb = buffer_kb
        self.buffer_count = buffer_count
        self.interval = interval
        self.names = []
        self.proc = None
        self.log_path = os.path.join(self.outdir, "blktrace.log")
        self.error = None
        self.started = None

    def command(self, exe):
        mask = tracefs.act_mask_value(self.act_mask)
        cmd = [exe, "-D", self.outdir, "-A", f"{mask:x}", "-b", str(self.buffer_kb), "-n", str(self.buffer_count)]
        for dev in self.devices:
            name, _ = tracefs.device_trace_dir(dev)
            self.names.append(name)
            cmd += ["-d", dev if os.sep in dev else f"/dev/{name}"]
        return cmd

    def _log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def setup(self):
        """Start blktrace; BlktraceUnavailable (one line) if it cannot trace here."""
        exe = shutil.which("blktrace") or next(
            (p for p in ("/usr/sbin/blktrace", "/sbin/blktrace") if os.access(p, os.X_OK)), None)
        if not exe:
            raise BlktraceUnavailable("blktrace is not installed (Debian package 'blktrace')")
        tracefs.require_root()
        cmd = self.command(exe)
        os.makedirs(self.outdir, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         close_fds=True)
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            text = self._log()
            failed = _FAILURE.search(text)
            if failed or self.proc.poll() is not None:
                self._kill()
                line = next((ln for ln in text.splitlines() if _FAILURE.search(ln)), None)
                line = line or text.strip().splitlines()[-1:] or [f"exit status {self.proc.returncode}"]
                line = line if isinstance(line, str) else line[0]
                raise BlktraceUnavailable(f"blktrace cannot trace here: {line.strip()}")
            if all(os.path.exists(os.path.join(self.outdir, f"{n}.blktrace.0")) for n in self.names):
                time.sleep(0.2)
                if not _FAILURE.search(self._log()) and self.proc.poll() is None:
                    break
            time.sleep(0.05)
        self.started = time.time()
        return self

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(1)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def info(self):
        return {"mode": self.mode, "devices": self.names, "blktrace_pid": self.proc.pid,
                "buffer_kb": self.buffer_kb, "buffer_count": self.buffer_count,
                "act_mask": f"0x{tracefs.act_mask_value(self.act_mask):x}", "log": self.log_path}

    def start(self):
        pass

    def poll(self, final=False):
        if self.proc.poll() is not None and not self.error:
            self.error = f"blktrace exited early (status {self.proc.returncode}): see {self.log_path}"
        return 0

    def run(self, should_stop, wakeup_fd=None):
        import select

        while not should_stop() and not self.error:
            self.poll()
            if wakeup_fd is not None:
                if select.select([wakeup_fd], [], [], self.interval)[0]:
                    try:
                        os.read(wakeup_fd, 512)
                    except OSError:
                        pass
            else:
                time.sleep(self.interval)

    def finish(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.error = self.error or f"blktrace did not stop within {STOP_WAIT:.0f} s (killed)"
        totals = parse_totals(self._log())
        drops = {name: t["dropped"] for name, t in totals.items()}
        summary = summarize_files(self.outdir, self.names, drops)
        summary["blktrace"] = totals
        return summary


def stop_orphan(pid, timeout=STOP_WAIT):
    """SIGINT a blktrace left running by a dead capture and wait for it; True if one was running."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() != "blktrace":
                return False
        os.kill(pid, signal.SIGINT)
    except (OSError, ProcessLookupError):
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True

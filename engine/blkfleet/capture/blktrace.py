"""The blktrace backend: the Debian ``blktrace`` tool (relay files in debugfs), run and stopped for us.

``blktrace -D STAGING -A MASK -b KB -n N -- /dev/X ...`` writes ``STAGING/X.blktrace.CPU`` itself, in the
capture's private staging directory (blktrace creates its files without O_EXCL); ``finish()`` moves them into
the output directory. Two quirks of blktrace 1.x/2.0 shape ``setup()``: when the kernel refuses the relay
files (lockdown: EPERM) it prints ``Thread N failed open ...: 1/Operation not permitted`` and then exits with
status 0 or, with ``-o -``, hangs; so success is judged from its output and its files, not its exit status.
Drops: at exit it prints ``Total: N events (dropped D), K KiB data`` per device, which ``finish()`` parses.

debugfs: blktrace needs it at ``/sys/kernel/debug``, which a freshly booted Debian does not mount. The
backend mounts it when it is missing (as root) and unmounts it at the end only if it mounted it, the way
``tracefs.find_tracefs`` mounts tracefs; "Debugfs is not mounted" is reported only when that mount fails.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import asdict

from ..errors import BlkfleetError
from ..files import create_new
from ..process import process_start
from ..trace import TraceReader
from ..trace.actions import is_queue
from . import outputs, tracefs
from .backend import CaptureBackend
from .split import Counters

DEBUGFS = "/sys/kernel/debug"
START_WAIT = 3.0
STOP_WAIT = 30.0
_FAILURE = re.compile(r"(failed open|FAILED to start|BLKTRACESETUP|Operation not permitted|Permission denied|"
                      r"No such file|Invalid argument|Device or resource busy|Cannot|cannot|Failed)", re.M)
_DEVICE_BLOCK = re.compile(r"^=== (\S+) ===$", re.M)
_TOTAL = re.compile(r"Total:\s+(\d+) events \(dropped (\d+)\),\s+(\d+) KiB data")


class BlktraceUnavailable(BlkfleetError):
    """blktrace cannot trace here (not installed, relay files refused, ...)."""

    code = "unavailable"


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
    """A Splitter-shaped summary of the DEV.blktrace.CPU files blktrace wrote (regular files only)."""
    devices = {}
    total = 0
    present = outputs.capture_files(outdir)
    for name in names:
        prefix = f"{name}.blktrace."
        cpus = sorted(int(f[len(prefix):]) for f in present
                      if f.startswith(prefix) and f[len(prefix):].isascii() and f[len(prefix):].isdigit()
                      and stat.S_ISREG(os.lstat(os.path.join(outdir, f)).st_mode))
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


def _mounted(path, fstype):
    try:
        with open("/proc/mounts") as f:
            return any(r[1] == path and r[2] == fstype for r in (line.split() for line in f) if len(r) > 2)
    except OSError:
        return False


def mount_debugfs():
    """Mount debugfs at DEBUGFS when it is not mounted; True if this call mounted it."""
    if _mounted(DEBUGFS, "debugfs"):
        return False
    tracefs.require_root()
    run = subprocess.run(["mount", "-t", "debugfs", "nodev", DEBUGFS], capture_output=True, text=True)
    if run.returncode != 0:
        why = run.stderr.strip().splitlines()[-1:] or [f"exit status {run.returncode}"]
        raise BlktraceUnavailable(f"Debugfs is not mounted at {DEBUGFS} and mounting it failed: {why[0]}")
    return True


def unmount_debugfs():
    """Unmount the debugfs this backend mounted (and the tracefs the kernel mounts under it on first use);
    False when it stays mounted (busy: someone else uses it now)."""
    inner = os.path.join(DEBUGFS, "tracing")
    if _mounted(inner, "tracefs"):
        subprocess.run(["umount", inner], capture_output=True)
    if not _mounted(DEBUGFS, "debugfs"):
        return True
    return subprocess.run(["umount", DEBUGFS], capture_output=True).returncode == 0


class BlktraceCapture(CaptureBackend):
    """One run of the blktrace tool over ``devices`` (it drains its relay buffers itself: ``poll`` only
    watches that it still runs)."""

    name = "blktrace"
    mode = "relay"

    def __init__(self, devices, outdir, act_mask="queue", buffer_kb=512, buffer_count=4, interval=0.2):
        super().__init__(devices, outdir, interval)
        self.act_mask = act_mask
        self.buffer_kb = buffer_kb
        self.buffer_count = buffer_count
        self.names = []
        self.proc = None
        self.log_path = os.path.join(self.outdir, outputs.BLKTRACE_LOG)
        self.staging = os.path.join(self.outdir, outputs.STAGING)
        self.mounted_debugfs = False

    def command(self, exe):
        mask = tracefs.act_mask_value(self.act_mask)
        cmd = [exe, "-D", self.staging, "-A", f"{mask:x}", "-b", str(self.buffer_kb), "-n", str(self.buffer_count)]
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
        """Start blktrace; BlktraceUnavailable (one line) if it cannot trace here, with nothing left behind
        (no files, debugfs unmounted again if this call mounted it)."""
        exe = shutil.which("blktrace") or next(
            (p for p in ("/usr/sbin/blktrace", "/sbin/blktrace") if os.access(p, os.X_OK)), None)
        if not exe:
            raise BlktraceUnavailable("blktrace is not installed (Debian package 'blktrace')")
        tracefs.require_root()
        cmd = self.command(exe)
        self.mounted_debugfs = mount_debugfs()
        try:
            outputs.make_staging(self.outdir)
            with os.fdopen(create_new(self.log_path), "wb") as log:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             close_fds=True)
            self._wait_started()
        except BaseException:
            self.abandon()
            raise
        return self

    def _wait_started(self):
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
            if all(os.path.exists(os.path.join(self.staging, f"{n}.blktrace.0")) for n in self.names):
                time.sleep(0.2)
                if not _FAILURE.search(self._log()) and self.proc.poll() is None:
                    break
            time.sleep(0.05)

    def abandon(self):
        """Undo a failed set-up: blktrace stopped, its files and log removed, debugfs as it was."""
        self._kill()
        outputs.remove(self.staging)
        outputs.remove(self.log_path)
        if self.mounted_debugfs:
            unmount_debugfs()
            self.mounted_debugfs = False

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
                "act_mask": f"0x{tracefs.act_mask_value(self.act_mask):x}", "log": self.log_path,
                "debugfs_mounted": self.mounted_debugfs}

    def recovery(self):
        """The blktrace process to stop and whether debugfs is to be unmounted."""
        return {"blktrace_pid": self.proc.pid, "blktrace_start": process_start(self.proc.pid),
                "debugfs_mounted": self.mounted_debugfs}

    def start(self):
        """Nothing: blktrace traces from ``setup`` on (its start is what ``setup`` waits for)."""

    def poll(self, final=False):
        if self.proc.poll() is not None and not self.error:
            self.error = f"blktrace exited early (status {self.proc.returncode}): see {self.log_path}"
        return 0

    def finish(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.error = self.error or f"blktrace did not stop within {STOP_WAIT:.0f} s (killed)"
        outputs.publish(self.staging, self.outdir)
        if self.mounted_debugfs and not unmount_debugfs():
            print(f"debugfs at {DEBUGFS} stays mounted: it is in use", flush=True)
        self.mounted_debugfs = False
        totals = parse_totals(self._log())
        drops = {name: t["dropped"] for name, t in totals.items()}
        summary = summarize_files(self.outdir, self.names, drops)
        summary["blktrace"] = totals
        return summary


def stop_orphan(pid, start, timeout=STOP_WAIT):
    """SIGINT the blktrace a dead capture left running and wait for it; True if it was running.

    ``pid`` and ``start`` come from the capture's root-only run record; the process must still have that
    start time and be blktrace, so a reused pid is never signalled."""
    if start is None or process_start(pid) != start:
        return False
    try:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() != "blktrace":
                return False
        os.kill(pid, signal.SIGINT)
    except OSError:
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

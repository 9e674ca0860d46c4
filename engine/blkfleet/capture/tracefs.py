"""The kernel's ftrace ``blk`` tracer: find tracefs, own it exclusively, configure it, restore it.

The tracer is global to the machine, so a capture takes an exclusive lock (``flock`` on ``LOCK_PATH``) and
saves a snapshot of every setting it changes to a state file beside the lock *before* changing anything.
``Capture.restore()`` puts the snapshot back; if the owner died (SIGKILL, power cut of the process), the
next ``configure()`` or a call of ``restore()`` finds the state file and restores it.

>>> cap = configure(["loop3"], act_mask="queue", clock="mono")
>>> cap.start(); ...; cap.stop()          # chunks() in another thread yields trace_pipe data until stop()
>>> cap.restore()
"""

import fcntl
import json
import os
import re
import subprocess
import threading
import time

from ..errors import BlkfleetError
from ..trace.actions import CATEGORIES

TRACEFS = "/sys/kernel/tracing"
LOCK_PATH = "/run/blkfleet-ftrace.lock"
DEFAULT_BUFFER_KB = 4096
READ_SIZE = 1 << 20

# Trace options we set: bin output without the pid/cpu/ts prefix, overwrite so that overruns are reported
# as "[LOST n EVENTS]", the blk tracer's own options off (classic text; cgroup ids: btrecord drops those Qs).
OPTIONS = {
    "bin": "1",
    "context-info": "0",
    "overwrite": "1",
    "blk_classic": "0",
    "blk_cgroup": "0",
    "blk_cgname": "0",
}
ACT_MASK_NAMES = tuple(name for name, bit in CATEGORIES if bit < 1 << 16)


class TracerBusy(BlkfleetError):
    """Another process owns the ftrace blk tracer."""


def require_root():
    if os.geteuid() != 0:
        raise BlkfleetError(f"ftrace capture needs root (running as uid {os.geteuid()})")


def _tracefs_mounts():
    try:
        with open("/proc/mounts") as f:
            rows = [line.split() for line in f]
    except OSError:
        return []
    return [r[1] for r in rows if len(r) > 2 and r[2] == "tracefs"]


def find_tracefs(mount=True):
    """The tracefs directory; mounts it on /sys/kernel/tracing if needed (and ``mount``)."""
    mounts = _tracefs_mounts()
    for path in (TRACEFS, *mounts):
        if path in mounts and os.path.exists(os.path.join(path, "trace_pipe")):
            return path
    if not mount or not os.path.isdir(TRACEFS):
        raise BlkfleetError(f"tracefs is not available: not mounted and no {TRACEFS} (no ftrace?)")
    require_root()
    run = subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], capture_output=True, text=True)
    if run.returncode != 0:
        why = run.stderr.strip() or f"exit status {run.returncode}"
        raise BlkfleetError(f"tracefs is not available: mount -t tracefs nodev {TRACEFS} failed: {why}")
    return TRACEFS


def require_blk_tracer(tracing):
    tracers = _read(os.path.join(tracing, "available_tracers")).split()
    if "blk" not in tracers:
        raise BlkfleetError("the kernel has no ftrace 'blk' tracer (CONFIG_BLK_DEV_IO_TRACE is off)")


def device_trace_dir(device):
    """``(name, /sys/.../trace)`` for a block device given as ``sda``, ``/dev/sda`` or another node path."""
    if os.sep in device:
        try:
            rdev = os.stat(device).st_rdev
        except OSError as e:
            raise BlkfleetError(f"no such block device: {device} ({e.strerror})") from None
        sysdir = f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}"
    else:
        sysdir = f"/sys/class/block/{device}"
    if not os.path.isdir(sysdir):
        raise BlkfleetError(f"no such block device: {device}")
    name = os.path.basename(os.path.realpath(sysdir))
    trace = os.path.join(sysdir, "trace")
    if not os.path.isdir(trace):
        raise BlkfleetError(f"block device {name} has no trace directory (no CONFIG_BLK_DEV_IO_TRACE?)")
    return name, os.path.realpath(trace)


def act_mask_value(act_mask):
    """The numeric act_mask for names (``"queue"``, ``"queue,complete"``, ``"all"``) or an int."""
    if isinstance(act_mask, int):
        value = act_mask
    elif act_mask.strip() == "all":
        value = 0xFFFF
    else:
        bits = dict(CATEGORIES)
        value = 0
        for name in filter(None, (n.strip() for n in act_mask.split(","))):
            if name not in ACT_MASK_NAMES:
                known = ", ".join(ACT_MASK_NAMES)
                raise BlkfleetError(f"unknown act_mask category {name!r} (known: {known})")
            value |= bits[name]
    if not 0 < value <= 0xFFFF:
        raise BlkfleetError(f"act_mask must select at least one of the 16 categories, got {act_mask!r}")
    return value


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        raise BlkfleetError(f"cannot read {path}: {e.strerror}") from None


def _write(path, value):
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise BlkfleetError(f"cannot write {value!r} to {path}: {e.strerror}") from None


def _clear_buffer(tracing):
    try:
        os.close(os.open(os.path.join(tracing, "trace"), os.O_WRONLY | os.O_TRUNC))
    except OSError as e:
        raise BlkfleetError(f"cannot clear the ftrace buffer: {e.strerror}") from None


def _current_clock(text):
    m = re.search(r"\[(\S+)\]", text)
    return m.group(1) if m else text.split()[0]


def _buffer_sizes(tracing):
    """{relative path: kB} for buffer_size_kb; per CPU when the CPUs differ (the file then shows 'X')."""
    text = _read(os.path.join(tracing, "buffer_size_kb"))
    m = re.search(r"expanded:\s*(\d+)", text)
    if m:
        return {"buffer_size_kb": m.group(1)}
    if text.isdigit():
        return {"buffer_size_kb": text}
    per_cpu = os.path.join(tracing, "per_cpu")
    sizes = {}
    for cpu in sorted(os.listdir(per_cpu)):
        rel = f"per_cpu/{cpu}/buffer_size_kb"
        value = _read(os.path.join(tracing, rel))
        sizes[rel] = re.search(r"\d+", value).group(0)
    return sizes


class TracerLock:
    """Exclusive ownership of the ftrace tracer: ``flock`` on a file that also names the owner's pid."""

    def __init__(self, path=LOCK_PATH):
        self.path = path
        self._fd = None

    @property
    def held(self):
        return self._fd is not None

    def acquire(self, timeout=0.0):
        """Take the lock, waiting up to ``timeout`` seconds; TracerBusy if another process keeps it."""
        if self._fd is not None:
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise BlkfleetError(f"cannot open the ftrace lock {self.path}: {e.strerror}") from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise TracerBusy(
                        f"the ftrace blk tracer is in use by another capture (pid {owner} holds {self.path})"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def state_path(lock_path=LOCK_PATH):
    """Where a capture that holds ``lock_path`` saves the tracer snapshot."""
    return os.path.splitext(lock_path)[0] + ".state.json"


class TracerState:
    """A snapshot of every tracefs and per-device setting a capture changes; ``restore()`` writes it back.

    ``values`` maps paths relative to the tracefs directory to their text; ``devices`` maps a device's
    ``/sys/.../trace`` directory to ``{"enable": "0"|"1", "act_mask": names}``.
    """

    def __init__(self, tracing, values, devices):
        self.tracing = tracing
        self.values = dict(values)
        self.devices = {d: dict(v) for d, v in devices.items()}

    @classmethod
    def snapshot(cls, tracing, trace_dirs):
        values = {
            "tracing_on": _read(os.path.join(tracing, "tracing_on")),
            "current_tracer": _read(os.path.join(tracing, "current_tracer")),
            "trace_clock": _current_clock(_read(os.path.join(tracing, "trace_clock"))),
        }
        values.update(_buffer_sizes(tracing))
        for name in OPTIONS:
            path = os.path.join(tracing, "options", name)
            if os.path.exists(path):
                values[f"options/{name}"] = _read(path)
        devices = {}
        for trace in trace_dirs:
            enable = _read(os.path.join(trace, "enable"))
            devices[trace] = {"enable": enable, "act_mask": _read(os.path.join(trace, "act_mask"))}
        return cls(tracing, values, devices)

    def to_json(self):
        return {"tracing": self.tracing, "values": self.values, "devices": self.devices}

    @classmethod
    def from_json(cls, data):
        return cls(data["tracing"], data["values"], data["devices"])

    def save(self, path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls.from_json(json.load(f))

    def restore(self):
        """Write the snapshot back; tries every setting and reports all failures in one error."""
        failures = []

        def put(path, value):
            try:
                _write(path, value)
            except BlkfleetError as e:
                failures.append(str(e))

        tracing = self.tracing
        put(os.path.join(tracing, "tracing_on"), "0")
        for trace, dev in self.devices.items():
            if not os.path.isdir(trace):
                continue
            if dev["enable"] == "1":
                put(os.path.join(trace, "enable"), "1")
                put(os.path.join(trace, "act_mask"), f"0x{act_mask_value(dev['act_mask']):x}")
            else:
                put(os.path.join(trace, "enable"), "0")
        put(os.path.join(tracing, "current_tracer"), self.values["current_tracer"])
        try:
            _clear_buffer(tracing)
        except BlkfleetError as e:
            failures.append(str(e))
        for rel, value in self.values.items():
            if rel.startswith("options/") or rel.endswith("buffer_size_kb") or rel == "trace_clock":
                put(os.path.join(tracing, rel), value)
        put(os.path.join(tracing, "tracing_on"), self.values["tracing_on"])
        if failures:
            raise BlkfleetError(f"tracer state not fully restored: {'; '.join(failures)}")


class Capture:
    """A configured blk tracer owned by this process (returned by ``configure``)."""

    def __init__(self, tracing, devices, state, lock, state_file, own_lock=True):
        self.tracing = tracing
        self.devices = devices
        self.state = state
        self.lock = lock
        self.own_lock = own_lock
        self.state_file = state_file
        self.pipe_path = os.path.join(tracing, "trace_pipe")
        self._stopped = threading.Event()
        self._restored = False

    def start(self):
        """Switch tracing on (the buffer was cleared by ``configure``)."""
        self._stopped.clear()
        _write(os.path.join(self.tracing, "tracing_on"), "1")

    def stop(self):
        """Switch tracing off; ``chunks()`` then drains what is buffered and ends."""
        _write(os.path.join(self.tracing, "tracing_on"), "0")
        self._stopped.set()

    def chunks(self, size=READ_SIZE, idle=0.02):
        """Yield the binary trace_pipe stream as bytes until ``stop()`` and the buffer is drained."""
        try:
            fd = os.open(self.pipe_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise BlkfleetError(f"cannot open {self.pipe_path}: {e.strerror}") from None
        draining = False
        try:
            while True:
                try:
                    data = os.read(fd, size)
                except BlockingIOError:
                    data = b""
                if data:
                    yield data
                elif draining:
                    return
                elif self._stopped.is_set():
                    draining = True
                else:
                    self._stopped.wait(idle)
        finally:
            os.close(fd)

    def restore(self):
        """Put the tracer back as it was and release the lock (idempotent)."""
        if self._restored:
            return
        self._stopped.set()
        try:
            self.state.restore()
            try:
                os.unlink(self.state_file)
            except FileNotFoundError:
                pass
        finally:
            self._restored = True
            if self.own_lock:
                self.lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()


def _recover(state_file):
    """Restore a state file left by a capture whose owner died; True if there was one."""
    if not os.path.exists(state_file):
        return False
    TracerState.load(state_file).restore()
    os.unlink(state_file)
    return True


def configure(devices, act_mask="queue", buffer_kb=DEFAULT_BUFFER_KB, clock="mono", *, lock=None,
              lock_path=LOCK_PATH):
    """Own the blk tracer and set it up for ``devices`` in binary mode; tracing stays off until ``start()``.

    ``lock``: an already held TracerLock to use instead of taking ``lock_path``. ``buffer_kb``: per-CPU ring
    buffer size (None keeps the current size). ``act_mask``: category names or a number.
    """
    require_root()
    tracing = find_tracefs()
    require_blk_tracer(tracing)
    mask = act_mask_value(act_mask)
    resolved = dict(device_trace_dir(d) for d in devices)
    if not resolved:
        raise BlkfleetError("no block device to trace")
    clocks = _read(os.path.join(tracing, "trace_clock")).replace("[", " ").replace("]", " ").split()
    if clock not in clocks:
        raise BlkfleetError(f"unknown trace clock {clock!r} (this kernel has: {', '.join(clocks)})")
    own_lock = lock is None
    lock = (lock or TracerLock(lock_path)).acquire()
    state_file = state_path(lock.path)
    try:
        _recover(state_file)
        state = TracerState.snapshot(tracing, resolved.values())
        state.save(state_file)
    except BaseException:
        if own_lock:
            lock.release()
        raise
    capture = Capture(tracing, resolved, state, lock, state_file, own_lock)
    try:
        _write(os.path.join(tracing, "tracing_on"), "0")
        _write(os.path.join(tracing, "current_tracer"), "blk")
        _write(os.path.join(tracing, "trace_clock"), clock)
        if buffer_kb:
            _write(os.path.join(tracing, "buffer_size_kb"), str(int(buffer_kb)))
        for name, value in OPTIONS.items():
            path = os.path.join(tracing, "options", name)
            if os.path.exists(path):
                _write(path, value)
        for trace in resolved.values():
            if _read(os.path.join(trace, "enable")) != "1":
                _write(os.path.join(trace, "enable"), "1")
            # Written as hex: the kernel tries "%llx" before names, so "fs" or "discard" would parse as hex.
            _write(os.path.join(trace, "act_mask"), f"0x{mask:x}")
        _clear_buffer(tracing)
    except BaseException:
        capture.restore()
        raise
    return capture


def restore(lock=None, lock_path=LOCK_PATH, timeout=0.0):
    """Restore the tracer after a capture that died without restoring; True if a snapshot was restored.

    Raises TracerBusy while a live process owns the tracer.
    """
    require_root()
    own_lock = lock is None
    lock = (lock or TracerLock(lock_path)).acquire(timeout)
    try:
        restored = _recover(state_path(lock.path))
        from .bioevents import remove_instance  # the events mode's instance, left by a killed capture

        try:
            tracing = find_tracefs(mount=False)
        except BlkfleetError:
            return restored
        return remove_instance(tracing) or restored
    finally:
        if own_lock:
            lock.release()

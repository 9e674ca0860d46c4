"""The kernel's ftrace ``blk`` tracer: find tracefs, own it exclusively, configure it, put it back.

The tracer is global to the machine, so a capture takes an exclusive lock (``flock`` on ``LOCK_PATH``, a fixed
path) and saves a snapshot of every setting it changes *before* changing anything, in ``SNAPSHOT_PATH`` under
the root-only ``/run/blkfleet`` (never in a directory a user named). ``BlkTracer.teardown()`` writes the
snapshot back; if the owner died (SIGKILL, power cut of the process), the next ``configure()`` or a call of
``recover_tracer()`` finds the snapshot and writes it back, after copying what the dead capture's ring buffers
still hold into its raw files (``salvage.drain``), when the snapshot names such an owner.

Buffer sizes: the kernel allocates whole sub-buffers, so ``buffer_size_kb`` reads back rounded (1408 written,
1410 read on 4 KiB pages), and before the tracer's first use it reads ``7 (expanded: 1408)``. A size is
therefore the same setting as another when they differ by less than one sub-buffer (``same_size``).

>>> tracer = configure(["loop3"], act_mask="queue", clock="mono")
>>> tracer.start(); ...; tracer.stop()    # per_cpu/cpuN/trace_pipe_raw hold the events meanwhile
>>> tracer.teardown()
"""

import abc
import fcntl
import os
import re
import stat
import subprocess
import time

from ..errors import BlkfleetError
from ..files import read_json, trusted_dir, untrusted_reason, write_json_file
from ..trace.actions import CATEGORIES

TRACEFS = "/sys/kernel/tracing"
LOCK_PATH = "/run/blkfleet-ftrace.lock"
RUN_ROOT = "/run/blkfleet"
SNAPSHOT_PATH = os.path.join(RUN_ROOT, "ftrace.state.json")
SNAPSHOT_VERSION = 2
DEFAULT_BUFFER_KB = 4096

# Trace options we set: bin output without the pid/cpu/ts prefix (the blk tracer's entries are then whole
# blk_io_trace records), overwrite so that overruns are counted as lost events, the blk tracer's own options off
# (classic text; cgroup ids: btrecord drops those Qs).
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

    code = "tracer_busy"


def require_root():
    if os.geteuid() != 0:
        raise BlkfleetError(f"ftrace capture needs root (running as uid {os.geteuid()})", code="unavailable")


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
    tracers = read_setting(os.path.join(tracing, "available_tracers")).split()
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


def read_setting(path):
    """The text of a tracefs or sysfs setting, stripped; BlkfleetError (one line) if it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        raise BlkfleetError(f"cannot read {path}: {e.strerror}") from None


def write_setting(path, value):
    """Write a tracefs or sysfs setting; BlkfleetError (one line) if the kernel refuses it."""
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise BlkfleetError(f"cannot write {value!r} to {path}: {e.strerror}") from None


def clear_buffer(tracing):
    """Empty the ring buffers of ``tracing`` (the tracefs directory or an instance)."""
    try:
        os.close(os.open(os.path.join(tracing, "trace"), os.O_WRONLY | os.O_TRUNC))
    except OSError as e:
        raise BlkfleetError(f"cannot clear the ftrace buffer: {e.strerror}") from None


def _current_clock(text):
    m = re.search(r"\[(\S+)\]", text)
    return m.group(1) if m else text.split()[0]


def check_clock(tracing, clock):
    """BlkfleetError unless ``clock`` is one of the trace clocks of ``tracing`` (tracefs or an instance)."""
    clocks = read_setting(os.path.join(tracing, "trace_clock")).replace("[", " ").replace("]", " ").split()
    if clock not in clocks:
        raise BlkfleetError(f"unknown trace clock {clock!r} (this kernel has: {', '.join(clocks)})")


def _buffer_sizes(tracing):
    """{relative path: kB} for buffer_size_kb; per CPU when the CPUs differ (the file then shows 'X')."""
    text = read_setting(os.path.join(tracing, "buffer_size_kb"))
    m = re.search(r"expanded:\s*(\d+)", text)
    if m:
        return {"buffer_size_kb": m.group(1)}
    if text.isdigit():
        return {"buffer_size_kb": text}
    per_cpu = os.path.join(tracing, "per_cpu")
    sizes = {}
    for cpu in sorted(os.listdir(per_cpu)):
        rel = f"per_cpu/{cpu}/buffer_size_kb"
        value = read_setting(os.path.join(tracing, rel))
        sizes[rel] = re.search(r"\d+", value).group(0)
    return sizes


class TracerLock:
    """Exclusive ownership of the ftrace tracer: ``flock`` on a file that also names the owner's pid."""

    def __init__(self, path=LOCK_PATH):
        self.path = path
        self._fd = None
        self.snapshot_taken = False  # this holder wrote the snapshot: it is alive, not a dead owner's

    @property
    def held(self):
        return self._fd is not None

    def acquire(self, timeout=0.0):
        """Take the lock, waiting up to ``timeout`` seconds; TracerBusy if another process keeps it."""
        if self._fd is not None:
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
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
        self.snapshot_taken = False
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def snapshot_path(lock_path=LOCK_PATH):
    """Where a capture that holds ``lock_path`` saves the tracer snapshot: ``SNAPSHOT_PATH`` for the machine's
    lock; beside the lock for another lock path (tests). Never a path taken from a capture's directory."""
    if os.path.abspath(lock_path) == LOCK_PATH:
        return SNAPSHOT_PATH
    return os.path.splitext(lock_path)[0] + ".state.json"


def subbuf_kb(tracing):
    """The ring buffer's sub-buffer size in KiB (``buffer_subbuf_size_kb``, else the page size)."""
    try:
        with open(os.path.join(tracing, "buffer_subbuf_size_kb")) as f:
            return max(int(f.read().split()[0]), 1)
    except (OSError, ValueError, IndexError):
        return max(os.sysconf("SC_PAGE_SIZE") // 1024, 1)


def same_size(a, b, unit_kb=4):
    """Whether two buffer_size_kb texts name the same allocation: they differ by less than one sub-buffer
    (the kernel rounds a size up to whole sub-buffers of ``unit_kb`` KiB less their header)."""
    try:
        return abs(int(a) - int(b)) < unit_kb
    except (TypeError, ValueError):
        return a == b


class TracerState:
    """A snapshot of every tracefs and per-device setting a capture changes; ``write_back()`` puts it back.

    ``values`` maps paths relative to the tracefs directory to their text; ``devices`` maps a device's
    ``/sys/.../trace`` directory to ``{"enable": "0"|"1", "act_mask": names}``.
    """

    def __init__(self, tracing, values, devices, unit_kb=4):
        self.tracing = tracing
        self.values = dict(values)
        self.devices = {d: dict(v) for d, v in devices.items()}
        self.unit_kb = unit_kb

    @classmethod
    def snapshot(cls, tracing, trace_dirs):
        values = {
            "tracing_on": read_setting(os.path.join(tracing, "tracing_on")),
            "current_tracer": read_setting(os.path.join(tracing, "current_tracer")),
            "trace_clock": _current_clock(read_setting(os.path.join(tracing, "trace_clock"))),
        }
        values.update(_buffer_sizes(tracing))
        for name in OPTIONS:
            path = os.path.join(tracing, "options", name)
            if os.path.exists(path):
                values[f"options/{name}"] = read_setting(path)
        devices = {}
        for trace in trace_dirs:
            enable = read_setting(os.path.join(trace, "enable"))
            devices[trace] = {"enable": enable, "act_mask": read_setting(os.path.join(trace, "act_mask"))}
        return cls(tracing, values, devices, subbuf_kb(tracing))

    def to_json(self):
        return {"tracing": self.tracing, "values": self.values, "devices": self.devices, "unit_kb": self.unit_kb}

    @classmethod
    def from_json(cls, data):
        unit = data.get("unit_kb", 4)
        return cls(data["tracing"], data["values"], data["devices"], unit if isinstance(unit, int) else 4)

    def differences(self, other):
        """The settings (relative paths, device trace directories) in which ``other`` differs from this
        snapshot; buffer sizes within one sub-buffer of each other count as equal (``same_size``)."""
        found = []
        for rel in sorted(set(self.values) | set(other.values)):
            a, b = self.values.get(rel), other.values.get(rel)
            if rel.endswith("buffer_size_kb") and same_size(a, b, max(self.unit_kb, other.unit_kb)):
                continue
            if a != b:
                found.append(rel)
        found += [d for d in sorted(set(self.devices) | set(other.devices))
                  if self.devices.get(d) != other.devices.get(d)]
        return found

    def save(self, path):
        write_json_file(path, self.to_json(), mode=0o600)

    @classmethod
    def load(cls, path):
        return cls.from_json(read_json(path, "tracer snapshot", nofollow=True))

    def write_back(self):
        """Write the snapshot back; tries every setting and reports all failures in one error."""
        failures = []

        def put(path, value):
            try:
                write_setting(path, value)
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
            clear_buffer(tracing)
        except BlkfleetError as e:
            failures.append(str(e))
        for rel, value in self.values.items():
            if rel.endswith("buffer_size_kb"):
                try:
                    if same_size(read_setting(os.path.join(tracing, rel)), value, self.unit_kb):
                        continue  # the same allocation: rewriting it would only free and reallocate it
                except BlkfleetError:
                    pass
                put(os.path.join(tracing, rel), value)
            elif rel.startswith("options/") or rel == "trace_clock":
                put(os.path.join(tracing, rel), value)
        put(os.path.join(tracing, "tracing_on"), self.values["tracing_on"])
        if failures:
            raise BlkfleetError(f"tracer state not fully restored: {'; '.join(failures)}")


class OwnedTracer(metaclass=abc.ABCMeta):
    """A tracer this process configured and owns under the tracer lock: ``start``, ``stop``, ``teardown``.

    Made by ``configure`` (the blk tracer: ``BlkTracer``) or ``bioevents.configure`` (the block_bio_queue
    tracepoint in an instance: ``bioevents.BioQueueInstance``). Fields:

    * ``root``: the tracefs mount;
    * ``tracing``: the directory whose ``tracing_on``, ``trace`` and ``per_cpu/cpuN`` are this tracer's (the
      mount itself for the blk tracer, the instance for the tracepoint);
    * ``devices``: ``{kernel name: /sys/.../trace directory}`` of the traced devices;
    * ``lock``: the held TracerLock; ``own_lock``: whether ``teardown`` releases it (it took it);
    * ``snapshot_part``: what of the tracer snapshot (``save_snapshot``) this tracer undoes.
    """

    snapshot_part = None

    def __init__(self, root, tracing, devices, lock, own_lock):
        self.root = root
        self.tracing = tracing
        self.devices = devices
        self.lock = lock
        self.own_lock = own_lock
        self._torn_down = False

    def start(self):
        """Switch tracing on (``configure`` cleared the buffers)."""
        write_setting(os.path.join(self.tracing, "tracing_on"), "1")

    def stop(self):
        """Switch tracing off; the buffers keep what they hold until read or torn down."""
        write_setting(os.path.join(self.tracing, "tracing_on"), "0")

    @abc.abstractmethod
    def _undo(self):
        """Put back what configuring this tracer changed."""

    def teardown(self):
        """Undo the configuration, forget it in the snapshot and release the lock if taken (idempotent)."""
        if self._torn_down:
            return
        try:
            self._undo()
            drop_snapshot(self.lock, self.snapshot_part)
        finally:
            self._torn_down = True
            if self.own_lock:
                self.lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()


class BlkTracer(OwnedTracer):
    """The machine's ``blk`` tracer configured by ``configure``; ``state`` is the snapshot it writes back."""

    snapshot_part = "tracer"

    def __init__(self, tracing, devices, state, lock, own_lock):
        super().__init__(tracing, tracing, devices, lock, own_lock)
        self.state = state

    def _undo(self):
        self.state.write_back()


SNAPSHOT_KEYS = re.compile(r"tracing_on|current_tracer|trace_clock|buffer_size_kb|per_cpu/cpu\d{1,5}/buffer_size_kb|"
                           r"options/(?:" + "|".join(re.escape(n) for n in OPTIONS) + ")")
_VALUE = re.compile(r"[A-Za-z0-9_.,:-]{1,256}")


def save_snapshot(lock, tracing, tracer=None, owner=None, instance=False):
    """Record what a capture must undo (``tracer``: a TracerState; ``instance``: the events mode's instance)
    and who owns it (``owner``: run id, capture key, mode and raw directory, for ``salvage.drain``), root only,
    before anything changes. A snapshot left by a dead holder of the lock is restored first; one this holder
    wrote (two captures under one held lock, as tests do) is added to."""
    path = snapshot_path(lock.path)
    doc = None
    if lock.snapshot_taken:
        doc = load_snapshot(path)
    else:
        _recover_snapshot(path)
    doc = doc or {"version": SNAPSHOT_VERSION, "tracing": tracing, "tracer": None, "owner": None, "instance": False}
    if tracer is not None:
        doc["tracer"] = tracer.to_json()
    doc["instance"] = bool(doc["instance"] or instance)
    doc["owner"] = doc["owner"] or owner
    trusted_dir(os.path.dirname(path), "tracer state directory", mode=0o700)
    write_json_file(path, doc, mode=0o600)
    lock.snapshot_taken = True
    return path


def drop_snapshot(lock, part):
    """A capture under ``lock`` has undone its ``part`` ("tracer" or "instance"): remove it from the snapshot,
    and the snapshot once nothing is left to undo."""
    path = snapshot_path(lock.path)
    doc = load_snapshot(path)
    if doc is None:
        return
    doc[part] = False if part == "instance" else None
    if doc["tracer"] is None and not doc["instance"]:
        os.unlink(path)
        lock.snapshot_taken = False
    else:
        write_json_file(path, doc, mode=0o600)


def _snapshot_problem(doc):
    """Why a snapshot document cannot be restored, or None: it only ever writes tracer settings under a
    mounted tracefs and the trace settings of block devices in sysfs."""
    if not isinstance(doc, dict) or doc.get("version") != SNAPSHOT_VERSION:
        return "not a tracer snapshot of this version"
    tracing = doc.get("tracing")
    if tracing not in _tracefs_mounts():
        return f"{tracing!r} is not a mounted tracefs"
    tracer = doc.get("tracer")
    if tracer is not None:
        if not isinstance(tracer, dict) or tracer.get("tracing") != tracing:
            return "tracer settings for another tracefs"
        values, devices = tracer.get("values"), tracer.get("devices")
        if not isinstance(values, dict) or not isinstance(devices, dict) or "current_tracer" not in values \
                or "tracing_on" not in values:
            return "no tracer settings"
        for rel, value in values.items():
            if not SNAPSHOT_KEYS.fullmatch(str(rel)) or not isinstance(value, str) or not _VALUE.fullmatch(value):
                return f"unexpected setting {rel!r}"
        for trace, dev in devices.items():
            real = os.path.realpath(str(trace))
            if real != trace or not real.startswith("/sys/devices/") or os.path.basename(real) != "trace":
                return f"{trace!r} is not a block device's trace directory"
            if not isinstance(dev, dict) or dev.get("enable") not in ("0", "1") \
                    or not isinstance(dev.get("act_mask"), str) or not _VALUE.fullmatch(dev["act_mask"]):
                return f"bad settings for {trace!r}"
    owner = doc.get("owner")
    if owner is not None and not isinstance(owner, dict):
        return "bad owner"
    return None


def load_snapshot(path):
    """The snapshot at ``path`` (a root-owned file in a trusted directory), or None when there is none."""
    if not os.path.lexists(path):
        return None
    reason = untrusted_reason(os.path.dirname(path))
    if reason:
        raise BlkfleetError(f"{path}: refusing the tracer snapshot: {os.path.dirname(path)}: {reason}")
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        raise BlkfleetError(f"{path}: refusing the tracer snapshot: not a regular file only root can write")
    doc = read_json(path, "tracer snapshot", max_bytes=1 << 20, nofollow=True)
    problem = _snapshot_problem(doc)
    if problem:
        raise BlkfleetError(f"{path}: refusing the tracer snapshot: {problem}")
    return doc


def _recover_snapshot(path):
    """Undo what a capture whose owner died left (the lock is held); True if there was a snapshot.

    When it names an owner whose mode reads ring-buffer pages, what the buffers still hold is first appended
    to that capture's raw files (``salvage.drain``), so that its ``stop`` loses no event to this restore.
    """
    doc = load_snapshot(path)
    if doc is None:
        return False
    from . import bioevents, salvage

    if doc.get("owner"):
        salvage.drain(doc["tracing"], doc["owner"], instance=doc.get("instance"))
    if doc.get("tracer"):
        TracerState.from_json(doc["tracer"]).write_back()
    if doc.get("instance"):
        bioevents.remove_instance(doc["tracing"])
    os.unlink(path)
    return True


def configure(devices, act_mask="queue", buffer_kb=DEFAULT_BUFFER_KB, clock="mono", *, lock=None,
              lock_path=LOCK_PATH, owner=None):
    """Own the blk tracer and set it up for ``devices`` in binary mode (a ``BlkTracer``); tracing stays off until
    its ``start()``.

    ``lock``: an already held TracerLock to use instead of taking ``lock_path``. ``buffer_kb``: per-CPU ring
    buffer size (None keeps the current size). ``act_mask``: category names or a number. ``owner``: who to
    salvage the buffers for if this process dies (see ``save_snapshot``).
    """
    require_root()
    tracing = find_tracefs()
    require_blk_tracer(tracing)
    mask = act_mask_value(act_mask)
    resolved = dict(device_trace_dir(d) for d in devices)
    if not resolved:
        raise BlkfleetError("no block device to trace")
    check_clock(tracing, clock)
    own_lock = lock is None
    lock = (lock or TracerLock(lock_path)).acquire()
    try:
        state = TracerState.snapshot(tracing, resolved.values())
        save_snapshot(lock, tracing, tracer=state, owner=owner)
    except BaseException:
        if own_lock:
            lock.release()
        raise
    tracer = BlkTracer(tracing, resolved, state, lock, own_lock)
    try:
        write_setting(os.path.join(tracing, "tracing_on"), "0")
        write_setting(os.path.join(tracing, "current_tracer"), "blk")
        write_setting(os.path.join(tracing, "trace_clock"), clock)
        if buffer_kb:
            write_setting(os.path.join(tracing, "buffer_size_kb"), str(int(buffer_kb)))
        for name, value in OPTIONS.items():
            path = os.path.join(tracing, "options", name)
            if os.path.exists(path):
                write_setting(path, value)
        for trace in resolved.values():
            if read_setting(os.path.join(trace, "enable")) != "1":
                write_setting(os.path.join(trace, "enable"), "1")
            # Written as hex: the kernel tries "%llx" before names, so "fs" or "discard" would parse as hex.
            write_setting(os.path.join(trace, "act_mask"), f"0x{mask:x}")
        clear_buffer(tracing)
    except BaseException:
        tracer.teardown()
        raise
    return tracer


def recover_tracer(lock=None, lock_path=LOCK_PATH, timeout=0.0):
    """Put the tracer back after a capture that died without tearing it down (its snapshot written back, its
    events instance removed); True if there was something to put back. TracerBusy while a live process owns
    the tracer."""
    require_root()
    own_lock = lock is None
    lock = (lock or TracerLock(lock_path)).acquire(timeout)
    try:
        restored = _recover_snapshot(snapshot_path(lock.path))
        from .bioevents import remove_instance  # the events mode's instance, left by a killed capture

        try:
            tracing = find_tracefs(mount=False)
        except BlkfleetError:
            return restored
        return remove_instance(tracing) or restored
    finally:
        if own_lock:
            lock.release()

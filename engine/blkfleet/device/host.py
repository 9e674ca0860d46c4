"""What a host offers blkfleet besides its devices: CPUs, kernel block tracing, Linux AIO, io_uring, kernel."""

import errno
import os
import platform
import shutil

from ..capture.blktrace import DEBUGFS
from ..capture.tracefs import TRACEFS
from ..replay.ioengines import open_ioengine
from . import mounts
from .sysfs import parse_cpu_list, read_int, read_text

CPU = "/sys/devices/system/cpu"
LOCKDOWN = "/sys/kernel/security/lockdown"
# lockdown(7): LOCKDOWN_DEBUGFS lies below LOCKDOWN_INTEGRITY_MAX, so both modes make the kernel refuse
# blktrace's relay files in debugfs with EPERM.
LOCKDOWN_BLOCKS_DEBUGFS = ("integrity", "confidentiality")
PROGRAM_DIRS = "/usr/sbin:/sbin:/usr/bin:/bin"  # the engine runs as root: programs only from the system's


def cpus():
    online = parse_cpu_list(read_text(f"{CPU}/online", ""))
    return {"online": online, "online_count": len(online),
            "present": parse_cpu_list(read_text(f"{CPU}/present", "")),
            "possible": parse_cpu_list(read_text(f"{CPU}/possible", "")),
            "affinity": sorted(os.sched_getaffinity(0))}


def _bracketed(text):
    """The word in brackets of ``none [integrity] confidentiality``, or None."""
    return next((w[1:-1] for w in (text or "").split() if w.startswith("[") and w.endswith("]")), None)


def tracing(mount_table=None):
    """Whether the blktrace backend (debugfs relay files, the blktrace program) and the ftrace ``blk`` tracer can
    run, and why not; ``recommended_backend`` is the one a capture's ``auto`` would try first."""
    mount_table = mounts.mountinfo() if mount_table is None else mount_table
    known = {line.split()[-1] for line in read_text("/proc/filesystems", "").splitlines() if line.split()}
    tracefs_mounts = [m["mountpoint"] for m in mount_table if m["fstype"] == "tracefs"]
    path = next((p for p in (TRACEFS, "/sys/kernel/debug/tracing")
                 if p in tracefs_mounts or os.path.exists(f"{p}/available_tracers")), None)
    path = path or (tracefs_mounts[0] if tracefs_mounts else None)
    tracers = (read_text(f"{path}/available_tracers", "") or "").split() if path else []
    current = read_text(f"{path}/current_tracer") if path else None
    lockdown = _bracketed(read_text(LOCKDOWN))
    debugfs_mounted = any(m["mountpoint"] == DEBUGFS and m["fstype"] == "debugfs" for m in mount_table)
    program = shutil.which("blktrace", path=PROGRAM_DIRS)
    has_blk_trace = "blk" in tracers or any(os.path.isdir(f"/sys/block/{d}/trace") for d in os.listdir("/sys/block"))

    reasons = []
    if lockdown in LOCKDOWN_BLOCKS_DEBUGFS:
        reasons.append(f"kernel lockdown '{lockdown}' refuses debugfs relay files (EPERM)")
    if not (debugfs_mounted or "debugfs" in known):
        reasons.append("the kernel has no debugfs")
    if not has_blk_trace:
        reasons.append("the kernel has no block IO tracing (CONFIG_BLK_DEV_IO_TRACE)")
    relay_allowed = not reasons
    if program is None:
        reasons.append("the blktrace program is not installed")

    ftrace_reasons = []
    if path is None:
        ftrace_reasons.append("tracefs is not mounted (mountable: mount -t tracefs nodev /sys/kernel/tracing)"
                              if "tracefs" in known else "the kernel has no tracefs")
    elif "blk" not in tracers:
        ftrace_reasons.append("'blk' is not in available_tracers")
    if current not in (None, "nop", "blk"):
        ftrace_reasons.append(f"the global tracer is busy: current_tracer is '{current}'")
    backend = "blktrace" if not reasons else "ftrace" if not ftrace_reasons else None
    return {"tracefs": {"mounted": path is not None, "path": path, "mountable": "tracefs" in known},
            "debugfs": {"mounted": debugfs_mounted, "mountable": "debugfs" in known},
            "available_tracers": tracers, "current_tracer": current, "blk_tracer": "blk" in tracers,
            "lockdown": lockdown, "blktrace_relay_allowed": relay_allowed, "blktrace_program": program,
            "blktrace_usable": not reasons, "blktrace_reasons": reasons, "ftrace_usable": not ftrace_reasons,
            "ftrace_reasons": ftrace_reasons, "recommended_backend": backend}


def _try_engine(name):
    """How opening the replay's IO engine ``name`` (depth 1) went: supported, disabled (EPERM),
    not_implemented (ENOSYS), unknown (another error), or None (no system call number for this machine)."""
    try:
        open_ioengine(name, 1).close()
        return "supported"
    except OSError as e:
        return {None: None, errno.EPERM: "disabled", errno.ENOSYS: "not_implemented"}.get(e.errno, "unknown")


def aio():
    max_nr, nr = read_int("/proc/sys/fs/aio-max-nr"), read_int("/proc/sys/fs/aio-nr")
    syscall = _try_engine("aio")
    return {"available": syscall == "supported", "max_nr": max_nr, "nr": nr,
            "free": max_nr - nr if max_nr is not None and nr is not None else None, "syscall": syscall}


def io_uring():
    syscall = _try_engine("uring")
    return {"available": syscall == "supported", "disabled_sysctl": read_int("/proc/sys/kernel/io_uring_disabled"),
            "group": read_int("/proc/sys/kernel/io_uring_group"), "syscall": syscall}


def kernel():
    return {"release": platform.release(), "machine": platform.machine()}

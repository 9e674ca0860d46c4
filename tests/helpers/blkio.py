"""A cgroup v1 blkio throttle for tests: run commands whose IO to one block device is limited to N IOPS.

``throttle(device, read_iops)`` makes a child cgroup of /sys/fs/cgroup/blkio with ``blkio.throttle.read_iops_device``
(and ``write_iops_device``) set for the device; ``wrap(argv)`` returns a command that moves itself into the cgroup
(``echo $$ > cgroup.procs``) before it execs ``argv``, so the whole process tree it starts is throttled. The cgroup
is removed on exit, its leftover tasks first moved back to the root.
"""

import contextlib
import itertools
import os
import time

BLKIO = "/sys/fs/cgroup/blkio"
_names = itertools.count()


def skip_reason():
    """Why a blkio throttle cannot be used here, or None."""
    if os.geteuid() != 0:
        return "needs root (cgroup blkio throttle)"
    if not os.path.isfile(os.path.join(BLKIO, "blkio.throttle.read_iops_device")):
        return f"no cgroup v1 blkio throttle at {BLKIO}"
    return None


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Throttle:
    def __init__(self, path, device, read_iops, write_iops):
        self.path = path
        self.device = device
        self.read_iops = read_iops
        self.write_iops = write_iops

    def wrap(self, argv):
        """``sh -c`` that joins the cgroup, then execs ``argv`` (the process keeps its pid, so does its tree)."""
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self.path, *argv]


@contextlib.contextmanager
def throttle(device, read_iops, write_iops=None):
    st = os.stat(device)
    spec = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    path = os.path.join(BLKIO, f"blkfleet-test-{os.getpid()}-{next(_names)}")
    os.mkdir(path)
    try:
        _write(os.path.join(path, "blkio.throttle.read_iops_device"), f"{spec} {int(read_iops)}\n")
        _write(os.path.join(path, "blkio.throttle.write_iops_device"), f"{spec} {int(write_iops or read_iops)}\n")
        yield Throttle(path, device, read_iops, write_iops or read_iops)
    finally:
        for _ in range(50):
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = f.read().split()
            for pid in pids:
                with contextlib.suppress(OSError):
                    _write(os.path.join(BLKIO, "cgroup.procs"), pid)
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.1)
        else:
            os.rmdir(path)  # raise: a cgroup was left behind

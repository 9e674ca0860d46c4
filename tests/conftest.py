"""Shared fixtures: root-only skipping, the ftrace tracer lock, tmpfs-backed loop devices."""

import os
import shutil
import subprocess
import tempfile

import pytest

from blkfleet.capture import tracefs
from blkfleet.errors import BlkfleetError

TMPFS_DIRS = ("/dev/shm", "/run")


def root_skip_reason():
    """Why root-only tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (loop devices, tracefs)"
    if not shutil.which("losetup"):
        return "needs losetup (util-linux)"
    return None


def ftrace_skip_reason():
    """Why ftrace blk-tracer tests cannot run here, or None."""
    reason = root_skip_reason()
    if reason:
        return reason
    try:
        tracefs.require_blk_tracer(tracefs.find_tracefs())
    except BlkfleetError as e:
        return str(e)
    return None


def skip_unless_root():
    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)


def skip_unless_ftrace():
    reason = ftrace_skip_reason()
    if reason:
        pytest.skip(reason)


def pytest_runtest_setup(item):
    if item.get_closest_marker("root"):
        skip_unless_root()


@pytest.fixture
def tracer():
    """The held ftrace TracerLock; any tracer state a test leaves behind is restored, even on failure.

    Pass it to ``tracefs.configure(..., lock=tracer)``; waits up to 60 s for another owner to finish.
    """
    skip_unless_ftrace()
    lock = tracefs.TracerLock().acquire(timeout=60)
    try:
        tracefs.recover_tracer(lock=lock)
        yield lock
    finally:
        try:
            tracefs.recover_tracer(lock=lock)
        finally:
            lock.release()


def _tmpfs_dir():
    with open("/proc/mounts") as f:
        mounts = {row.split()[1]: row.split()[2] for row in f}
    for path in TMPFS_DIRS:
        if mounts.get(os.path.realpath(path)) == "tmpfs":
            return os.path.realpath(path)
    return None


def _drop_partitions(dev):
    """Remove the kernel's partition devices of a loop device (partx added them; a detach does not remove them)."""
    if any(n.startswith(os.path.basename(dev) + "p") for n in os.listdir(f"/sys/block/{os.path.basename(dev)}")):
        subprocess.run(["partx", "-d", dev], capture_output=True)


@pytest.fixture
def loopdev():
    """Factory: ``loopdev(size_bytes=64 MiB)`` -> "/dev/loopN" over a sparse file on tmpfs; detached after."""
    skip_unless_root()
    workdir = tempfile.mkdtemp(prefix="blkfleet-test-", dir=_tmpfs_dir())
    devices = []

    def make(size=64 << 20):
        backing = os.path.join(workdir, f"disk{len(devices)}.img")
        with open(backing, "wb") as f:
            f.truncate(size)
        run = subprocess.run(["losetup", "--show", "-f", backing], capture_output=True, text=True)
        if run.returncode != 0:
            pytest.fail(f"losetup failed: {run.stderr.strip()}")
        devices.append(run.stdout.strip())
        _drop_partitions(devices[-1])  # a number reused after a detach can still show its old partitions
        return devices[-1]

    try:
        yield make
    finally:
        for dev in reversed(devices):
            _drop_partitions(dev)
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)

"""Fixtures for CLI captures: tracer serialisation, cleanup of captures a test leaves, debugfs as on a fresh host."""

import os
import subprocess

import pytest

from blkfleet.capture import blktrace, tracefs
from blkfleet.errors import BlkfleetError
from helpers.capture_cli import restore_tracer, stop_left


@pytest.fixture
def capture_dirs(tmp_path):
    """Factory of capture output directories; any capture still running in one is stopped (or killed) after.

    The ftrace tracer is serialised with other tests by taking its lock before and after (never during:
    the capture daemon takes it), and whatever state a killed capture left is restored.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root")
    lock = tracefs.TracerLock().acquire(timeout=60)
    try:
        tracefs.recover_tracer(lock=lock)
    except BlkfleetError:
        pass
    lock.release()
    made = []

    def make(name="cap"):
        path = tmp_path / name
        made.append(path)
        return path

    try:
        yield make
    finally:
        for path in made:
            stop_left(path)
        restore_tracer()


def _umount(path):
    if subprocess.run(["umount", path], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", path], check=True)  # busy: detach it now, its users keep their files


@pytest.fixture
def debugfs(request):
    """debugfs at /sys/kernel/debug as the test asks: ``unmounted`` (default; a host as it boots) or
    ``mounted``; put back as it was afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    want = getattr(request, "param", "unmounted")
    inner = os.path.join(blktrace.DEBUGFS, "tracing")

    def set_mounted(mounted):
        if blktrace._mounted(blktrace.DEBUGFS, "debugfs") == mounted:
            return
        if mounted:
            subprocess.run(["mount", "-t", "debugfs", "nodev", blktrace.DEBUGFS], check=True)
        else:
            if blktrace._mounted(inner, "tracefs"):
                _umount(inner)
            _umount(blktrace.DEBUGFS)

    was = blktrace._mounted(blktrace.DEBUGFS, "debugfs")
    set_mounted(want == "mounted")
    try:
        yield want
    finally:
        set_mounted(was)

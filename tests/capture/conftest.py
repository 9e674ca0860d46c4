"""Fixture for CLI captures: tracer serialisation and cleanup of captures a test leaves running."""

import os
import signal
import time

import pytest
from capture_util import blkfleet

from blkfleet.capture import control, tracefs


@pytest.fixture
def capture_dirs(tmp_path):
    """Factory of capture output directories; any capture still running in one is stopped (or killed) after.

    The ftrace tracer is serialised with other tests by taking its lock before and after (never during:
    the capture daemon takes it), and whatever state a killed capture left is restored.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if tracefs.TracerLock is not None:
        lock = tracefs.TracerLock().acquire(timeout=60)
        try:
            tracefs.restore(lock=lock)
        except Exception:
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
            state = control.load_state(path) if path.exists() else None
            if state and control.is_alive(state):
                blkfleet("capture", "stop", "-D", path, "--timeout", 30)
                if control.is_alive(state):
                    os.kill(state["pid"], signal.SIGKILL)
                    time.sleep(0.2)
            bt = ((state or {}).get("backend_info") or {}).get("blktrace_pid")
            if bt:
                from blkfleet.capture.blktrace import stop_orphan

                stop_orphan(bt, timeout=5)
        lock = tracefs.TracerLock().acquire(timeout=60)
        try:
            tracefs.restore(lock=lock)
        finally:
            lock.release()


"""Shared bench plumbing: tmpfs-backed loop devices, ftrace capture around a command, GNU time."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "engine"))
os.environ["PYTHONPATH"] = os.path.join(ROOT, "engine") + os.pathsep + os.environ.get("PYTHONPATH", "")
# Measured commands run as an installed package would: with compiled bytecode (kept out of the tree).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "blkfleet-bench-pycache")

from blkfleet.capture.foreground import traced  # noqa: E402

GNU_TIME = "/usr/bin/time"


@contextlib.contextmanager
def workdir(prefix):
    path = tempfile.mkdtemp(prefix=prefix, dir="/dev/shm")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def loop_devices(directory, sizes):
    """Loop devices over sparse files in ``directory`` (tmpfs), detached afterwards."""
    devices = []
    try:
        for i, size in enumerate(sizes):
            backing = os.path.join(directory, f"disk{i}.img")
            with open(backing, "wb") as f:
                f.truncate(size)
            devices.append(subprocess.run(["losetup", "--show", "-f", backing], capture_output=True, text=True,
                                          check=True).stdout.strip())
        yield devices
    finally:
        for dev in devices:
            subprocess.run(["losetup", "-d", dev], capture_output=True)


@contextlib.contextmanager
def captured(devices, outdir, **options):
    """ftrace-capture ``devices`` into ``outdir`` while the block runs; yields a dict filled with the summary."""
    with traced(devices, outdir, **options) as result:
        yield result
    if drops(result):
        print(f"warning: the capture dropped {drops(result)} events", file=sys.stderr)


def drops(summary):
    """Events the capture lost (all CPUs)."""
    return sum(v.get("events", 0) for v in summary.get("lost", {}).values())


def gnu_time(cmd, **kwargs):
    """Run under GNU time: (completed process, wall s, user+sys CPU s, peak RSS MiB).

    GNU time forks a tiny process, so the peak RSS is the command's own (a child forked from this Python
    process would report this process's RSS instead)."""
    proc = subprocess.run([GNU_TIME, "-f", "%e %U %S %M", *cmd], stderr=subprocess.PIPE, text=True, **kwargs)
    last = proc.stderr.strip().splitlines()[-1].split()
    wall, user, system, rss = float(last[0]), float(last[1]), float(last[2]), int(last[3])
    return proc, wall, user + system, rss / 1024

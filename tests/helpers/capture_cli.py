"""Helpers for CLI capture tests: the ``blkfleet`` command in a subprocess, fio, tool checks, the cleanup of a
capture a test left and of the tracer."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from blkfleet.capture import control, tracefs
from blkfleet.errors import BlkfleetError
from helpers import ENV


def blkfleet(*args, timeout=120):
    """Run ``python -m blkfleet ARGS``; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "blkfleet", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def json_out(run):
    assert run.stdout, f"no output; stderr: {run.stderr}"
    return json.loads(run.stdout)


def fio(*args, **options):
    """Run fio with ``--name=..`` sections built by the caller; returns IOs per file name."""
    cmd = ["fio", "--output-format=json", "--direct=1", "--ioengine=libaio", "--bs=4k"]
    cmd += [f"--{k}={v}" for k, v in options.items()]  # global options: before the first --name
    cmd += args
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    doc = json.loads(run.stdout[run.stdout.index("{"):])
    ios = {}
    for job in doc["jobs"]:
        name = job["job options"].get("filename") or options.get("filename")
        ios[name] = ios.get(name, 0) + job["read"]["total_ios"] + job["write"]["total_ios"]
    return ios



def need(*tools):
    for tool in tools:
        if not shutil.which(tool):
            pytest.skip(f"needs {tool}")


def stop_left(path):
    """Stop (and recover) a capture a test left running or dead in ``path``; SIGKILL if stop does not."""
    try:
        seen = control.inspect(path)
    except (BlkfleetError, OSError):
        return
    if seen.kind not in ("running", "dead"):
        return
    blkfleet("capture", "stop", "-D", path, "--timeout", 30)
    seen = control.inspect(path)
    if seen.kind == "running" and seen.pid:
        os.kill(seen.pid, signal.SIGKILL)
        time.sleep(0.2)
        blkfleet("capture", "stop", "-D", path, "--timeout", 30)


def restore_tracer():
    """Put back whatever tracer state a capture left, under the tracer's lock (waits up to 60 s for it)."""
    lock = tracefs.TracerLock().acquire(timeout=60)
    try:
        tracefs.recover_tracer(lock=lock)
    finally:
        lock.release()

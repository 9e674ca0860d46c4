"""Replays in tests: recorded or synthetic replay files, a map file, the real ``blkfleet replay`` in a subprocess
(waited for, or started and watched: its workers, a hang), and its results checked against the schema."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blkfleet.cli import main
from blkfleet.replayfile import native
from blkfleet.replayfile.ops import READ
from helpers import DATA, ENV, SCHEMAS


def record(tmp_path, workload, compat=False, name="out"):
    """The replay files of a workload of tests/data (its device loop1), native or ``--compat``."""
    out = tmp_path / name
    out.mkdir()
    args = ["record", "-q", "-d", str(DATA / workload), "-D", str(out), "loop1"]
    assert main(args + (["--compat"] if compat else [])) == 0
    return out


def spread_trace(directory, seconds=10.0, ios=2000, cpus=2, op=READ, device="loop1"):
    """Native replay files, one per CPU, of ``ios`` 4 KiB IOs each spread evenly over ``seconds`` (each CPU
    in its own 32 MiB region)."""
    step = int(seconds * 1e9 / ios)
    for cpu in range(cpus):
        w = native.NativeWriter(directory / f"{device}.replay.{cpu}")
        for b in range(0, ios, 10):
            w.add_bunch(1_000_000_000 + b * step,
                        [(cpu * 65536 + 8 * (b + k), 4096, k * step, op, 0, 1) for k in range(10)])
        w.close()


def slow_trace(directory, seconds=10.0, ios=2000, device="loop1"):
    """One native replay file of reads spread evenly over ``seconds``."""
    spread_trace(directory, seconds, ios, cpus=1, device=device)


def map_file(tmp_path, target, recorded="loop1"):
    path = tmp_path / "map"
    path.write_text(f"# recorded  target\n{recorded} {os.path.basename(target)}\n")
    return path


def replay(*args, timeout=120):
    """Run the real CLI in a subprocess; (exit code, results JSON or None, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "blkfleet", "replay", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=timeout)
    doc = None
    if "--json" in args:
        path = args[list(args).index("--json") + 1]
        if os.path.exists(path):
            doc = json.loads(Path(path).read_text())
    return proc.returncode, doc, proc.stderr


def validate(doc):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, json.loads((SCHEMAS / "results.schema.json").read_text()))


def start(tmp_path, target, *extra):
    """A replay of ``tmp_path``'s loop1 files onto ``target``, started: (process, results path)."""
    res = tmp_path / "res.json"
    proc = subprocess.Popen([sys.executable, "-m", "blkfleet", "replay", "-d", str(tmp_path), "-M",
                             str(map_file(tmp_path, target)), "--json", str(res), *map(str, extra), "loop1"],
                            env=ENV, stderr=subprocess.PIPE, text=True)
    return proc, res


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


def workers_of(proc, count, timeout=20):
    """The replay's worker processes: forked children, so with the parent's command line, the same twice 0.2 s
    apart (a blkid probe has the parent's command line too, between its fork and its exec)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        kids = [k for k in children(proc.pid) if cmdline(k) == cmdline(proc.pid)]
        if len(kids) == count and kids == seen:
            return kids
        seen = kids
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"expected {count} workers, found {children(proc.pid)}")


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def wait_or_kill(proc, timeout):
    """Seconds the process took to end, or fail (killing it and its workers) when it hangs."""
    started = time.monotonic()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for kid in children(proc.pid):
            os.kill(kid, signal.SIGKILL)
        proc.kill()
        proc.wait()
        pytest.fail(f"the replay hung for {timeout} s")
    return time.monotonic() - started

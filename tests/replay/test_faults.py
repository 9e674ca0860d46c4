"""Faults in a real replay: a worker killed, a worker that stops answering, the engine killed (its workers must
not go on), two writers onto one device."""

import json
import os
import signal
import subprocess
import time

import pytest

from blkfleet.percpu import find_per_cpu
from blkfleet.replayfile.ops import WRITE
from blkfleet.trace.queued import queued_batches
from helpers.replay import alive, children, spread_trace, start, validate, wait_or_kill, workers_of
from helpers.tracing import traced

pytestmark = pytest.mark.root


def test_a_killed_worker_stops_the_others_and_fails_the_replay(tmp_path, loopdev):
    spread_trace(tmp_path)
    proc, res = start(tmp_path, loopdev(128 << 20), "-c", "2")
    victim, survivor = workers_of(proc, 2)
    time.sleep(3.0)  # a few seconds into the replay
    os.kill(victim, signal.SIGKILL)
    took = wait_or_kill(proc, timeout=15)
    err = proc.stderr.read()
    assert took < 1.5, f"the parent took {took:.2f} s to stop"
    assert proc.returncode == 5, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("blkfleet: replay worker for CPU ") and f"(pid {victim}) died: killed by SIGKILL" in last
    assert not alive(survivor)
    doc = json.loads(res.read_text())
    validate(doc)
    assert doc["interrupted"] and doc["failed"]["workers"] == [
        {"cpu": doc["failed"]["workers"][0]["cpu"], "pid": victim, "problem": "died: killed by SIGKILL"}]
    assert 0 < doc["total"]["ios"] < 2000  # what the survivor did; the dead worker's IOs are not counted


def test_signals_end_the_parent_even_when_a_worker_does_not_answer(tmp_path, loopdev):
    spread_trace(tmp_path)
    proc, res = start(tmp_path, loopdev(128 << 20), "-c", "2")
    victim, survivor = workers_of(proc, 2)
    time.sleep(2.0)
    os.kill(victim, signal.SIGSTOP)
    try:
        proc.send_signal(signal.SIGTERM)
        took = wait_or_kill(proc, timeout=15)
    finally:
        if alive(victim):
            os.kill(victim, signal.SIGKILL)
    err = proc.stderr.read()
    assert took < 3.5, f"the parent took {took:.2f} s to stop"  # 2 s of grace, then SIGKILL
    assert proc.returncode == 5 and "did not stop within 2 s and was killed" in err.splitlines()[-1]
    assert not alive(victim) and not alive(survivor)
    doc = json.loads(res.read_text())
    validate(doc)
    assert doc["stop_reason"] == "SIGTERM" and doc["failed"]["workers"][0]["pid"] == victim


def test_sigint_and_sigterm_give_partial_results(tmp_path, loopdev):
    spread_trace(tmp_path)
    target = loopdev(128 << 20)
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc, res = start(tmp_path, target, "-c", "2")
        workers_of(proc, 2)
        time.sleep(1.5)
        proc.send_signal(sig)
        took = wait_or_kill(proc, timeout=15)
        assert took < 1.5 and proc.returncode == 130, proc.stderr.read()
        doc = json.loads(res.read_text())
        assert doc["interrupted"] and doc["stop_reason"] == sig.name and doc["failed"] is None
        assert 0 < doc["total"]["ios"] < 4000


def test_a_signal_before_a_distant_start_ends_at_once(tmp_path, loopdev):
    spread_trace(tmp_path, seconds=1.0)
    proc, res = start(tmp_path, loopdev(128 << 20), "--start-at", str(time.time() + 3600))
    workers_of(proc, 1)  # armed, waiting for a start an hour away
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert wait_or_kill(proc, timeout=10) < 1.5
    assert proc.returncode == 130
    doc = json.loads(res.read_text())
    validate(doc)
    assert doc["total"]["ios"] == 0 and doc["stop_reason"] == "SIGTERM"


def test_workers_die_with_their_parent(tmp_path, loopdev, tracer):
    """SIGKILL of the engine mid-replay with -W: the kernel sees no IO of the replay after it."""
    spread_trace(tmp_path, seconds=8.0, ios=4000, cpus=1, op=WRITE)
    target = loopdev(128 << 20)
    seen = tmp_path / "seen"
    with traced([target], seen, tracer):
        proc, _res = start(tmp_path, target, "-W")
        kids = workers_of(proc, 1)
        time.sleep(2.5)
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic_ns()
        proc.wait(timeout=10)
        time.sleep(1.5)
    after = []
    total = 0
    for path in find_per_cpu(str(seen), os.path.basename(target), "blktrace"):
        for batch in queued_batches(path):
            total += len(batch.times)
            after += [t for t in batch.times if t > killed + 5_000_000]
    assert total > 500  # it was writing
    assert after == [], f"{len(after)} IOs reached the device up to {(max(after) - killed) / 1e6:.0f} ms after the kill"
    assert not any(alive(k) for k in kids)


def test_a_worker_stuck_in_the_kernel_does_not_hang_the_parent(tmp_path, loopdev):
    """Writes to a loop device whose backing file lies on a frozen filesystem never complete, and a process
    that exits with AIOs in flight waits for them in the kernel, even after SIGKILL. The parent still ends."""
    spread_trace(tmp_path, seconds=10.0, ios=4000, cpus=1, op=WRITE)
    lower = loopdev(256 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", lower], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", lower, str(mnt)], check=True)
    frozen = False
    upper = None
    proc = None
    try:
        backing = mnt / "backing.img"
        with open(backing, "wb") as f:
            f.truncate(64 << 20)
        upper = subprocess.run(["losetup", "--show", "-f", str(backing)], capture_output=True, text=True,
                               check=True).stdout.strip()
        proc, res = start(tmp_path, upper, "-W")
        (kid,) = workers_of(proc, 1)
        time.sleep(2.0)
        subprocess.run(["fsfreeze", "-f", str(mnt)], check=True)
        frozen = True
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        took = wait_or_kill(proc, timeout=15)
        subprocess.run(["fsfreeze", "-u", str(mnt)], check=True)  # the stuck worker holds stderr open till then
        frozen = False
        err = proc.stderr.read()
        assert took < 7, f"the parent took {took:.2f} s"  # 1 s drain, 2 s to exit, 2 s after SIGKILL
        assert proc.returncode == 130 and f"(pid {kid}) does not end even after SIGKILL" in err, err
        doc = json.loads(res.read_text())
        assert doc["interrupted"] and doc["total"]["errors"]["count"] > 0  # the IOs that never completed
    finally:
        if frozen:
            subprocess.run(["fsfreeze", "-u", str(mnt)])
        if proc is not None:
            for _ in range(100):  # the worker ends once its IOs complete
                if not any(alive(k) for k in children(proc.pid)) and proc.poll() is not None:
                    break
                time.sleep(0.1)
        if upper:
            subprocess.run(["losetup", "-d", upper])
        subprocess.run(["umount", str(mnt)])

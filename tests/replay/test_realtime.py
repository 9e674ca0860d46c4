"""SCHED_FIFO replay workers: ``realtime`` in the results, what happens without the right to use SCHED_FIFO,
a worker busy all along leaving SCHED_FIFO (clear of the kernel's real-time throttling), one with dense IOs
never using it (clear of its CPU's softirq thread), one the device holds back (at its depth limit) leaving it,
and the count of IOs due in a window."""

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from array import array
from types import SimpleNamespace

import pytest

from blkfleet.replay import realtime, worker
from blkfleet.replayfile import native
from blkfleet.replayfile.ops import READ
from blkfleet.results.iolog import IOLog
from helpers import ENV
from helpers.replay import map_file, replay, slow_trace, validate

root = pytest.mark.root


@pytest.fixture
def short(tmp_path, loopdev):
    """A 0.2 s replay of 200 reads and its device map."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("realtime auto needs a CPU left to the kernel (2 CPUs or more)")
    slow_trace(tmp_path, seconds=0.2, ios=200)
    return tmp_path, map_file(tmp_path, loopdev(64 << 20))


@root
@pytest.mark.parametrize("flag,expected", [(None, True), ("on", True), ("off", False)])
def test_realtime_in_the_results(short, flag, expected):
    src, mapping = short
    res = src / "res.json"
    code, doc, err = replay("-d", src, "-M", mapping, *(["--realtime", flag] if flag else []), "--json", res, "loop1")
    assert code == 0, err
    validate(doc)
    assert doc["realtime"] is expected and doc["total"]["ios"] == 200


def unprivileged(*args):
    """``blkfleet replay ARGS`` without CAP_SYS_NICE and with RLIMIT_RTPRIO 0: (exit code, stderr)."""
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("needs setpriv (util-linux) to drop CAP_SYS_NICE")
    proc = subprocess.run(
        [setpriv, "--inh-caps=-sys_nice", "--bounding-set=-sys_nice", "--", sys.executable, "-m", "blkfleet",
         "replay", *map(str, args)],
        env=ENV, capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0)))
    return proc.returncode, proc.stderr


@root
def test_without_sched_fifo_rights_on_fails_and_auto_falls_back(short):
    src, mapping = short
    res = src / "res.json"
    code, err = unprivileged("-d", src, "-M", mapping, "--realtime", "on", "loop1")
    assert code == 2 and err.count("\n") == 1 and "SCHED_FIFO" in err and "Traceback" not in err, err
    code, err = unprivileged("-d", src, "-M", mapping, "--json", res, "loop1")
    assert code == 0, err
    doc = json.loads(res.read_text())
    validate(doc)
    assert doc["realtime"] is False and doc["total"]["ios"] == 200


def dense_trace(directory, seconds=3.0, step_ns=20_000, device="loop1"):
    """A native replay file of 4 KiB random reads every ``step_ns`` (a worker that spins all along)."""
    rng = random.Random(7)
    n = int(seconds * 1e9 / step_ns)
    w = native.NativeWriter(directory / f"{device}.replay.0")
    for b in range(0, n, 100):
        w.add_bunch(1_000_000_000 + b * step_ns,
                    [(8 * rng.randrange(16384), 4096, k * step_ns, READ, 0, 1) for k in range(min(100, n - b))])
    w.close()
    return n


def policies(pid, stop, when=None):
    """The scheduling policies the children of ``pid`` go through, in order, until ``stop`` is set; ``when``: a
    list that gets the monotonic time each was first seen."""
    seen = []
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = [int(c) for c in f.read().split()]
            for child in children:
                policy = os.sched_getscheduler(child)
                if not seen or seen[-1] != policy:
                    seen.append(policy)
                    if when is not None:
                        when.append(time.monotonic())
        except OSError:
            pass
        time.sleep(0.002)
    return seen


def burst_trace(directory, seconds=2.0, every_ns=5_000_000, burst=64, device="loop1"):
    """Bursts of ``burst`` 4 KiB reads due at one instant, every ``every_ns``: the worker sleeps most of the
    time, and in every burst finds its IOs in flight at a small depth limit."""
    rng = random.Random(5)
    w = native.NativeWriter(directory / f"{device}.replay.0")
    bursts = int(seconds * 1e9 / every_ns)
    for b in range(bursts):
        w.add_bunch(1_000_000_000 + b * every_ns, [(8 * rng.randrange(16384), 4096, 0, READ, 0, 1)] * burst)
    w.close()
    return bursts * burst


def dense_then_sparse_trace(directory, device="loop1"):
    """0.5 s of reads every 5 us, then 2.5 s of reads every 2 ms."""
    rng = random.Random(9)
    w = native.NativeWriter(directory / f"{device}.replay.0")
    dense = 100_000
    for b in range(0, dense, 100):
        w.add_bunch(1_000_000_000 + b * 5_000, [(8 * rng.randrange(16384), 4096, k * 5_000, READ, 0, 1)
                                                for k in range(100)])
    sparse = 1250
    for k in range(sparse):
        w.add_bunch(1_500_000_000 + k * 2_000_000, [(8 * rng.randrange(16384), 4096, 0, READ, 0, 1)])
    w.close()
    return dense + sparse


def replay_watched(directory, mapping, *extra):
    """Replay ``directory`` (device loop1) while watching the worker's scheduling policy; returns (results,
    policies seen in order, when each was first seen, when the replay ended)."""
    res = directory / "res.json"
    proc = subprocess.Popen([sys.executable, "-m", "blkfleet", "replay", "-d", str(directory), "-M", str(mapping),
                             "--json", str(res), *extra, "loop1"], env=ENV, stderr=subprocess.PIPE, text=True)
    stop, seen, when = threading.Event(), [], []
    poller = threading.Thread(target=lambda: seen.extend(policies(proc.pid, stop, when)))
    poller.start()
    try:
        _out, err = proc.communicate(timeout=60)
        ended = time.monotonic()
    finally:
        stop.set()
        poller.join()
    assert proc.returncode == 0, err
    return json.loads(res.read_text()), seen, when, ended


@root
def test_a_worker_busy_all_along_leaves_sched_fifo(tmp_path, loopdev):
    """3 s of reads every 20 us keep the worker busy (it spins between IOs): after its first window it runs
    as a normal task, so the kernel never stops it for overusing real time (that would be ~40-50 ms late)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("realtime auto needs a CPU left to the kernel (2 CPUs or more)")
    n = dense_trace(tmp_path)
    doc, seen, _when, _ended = replay_watched(tmp_path, map_file(tmp_path, loopdev(64 << 20)))
    assert doc["realtime"] is True and doc["total"]["ios"] == n
    assert doc["total"]["lateness_us"]["max"] < 20_000, doc["total"]["lateness_us"]
    assert [os.SCHED_FIFO, os.SCHED_OTHER] in [seen[k:k + 2] for k in range(len(seen))], seen


@root
def test_a_worker_with_dense_ios_never_runs_as_sched_fifo(tmp_path, loopdev):
    """1 s of reads every 5 us (200 k IOPS): the worker spends most of its CPU submitting them, so it runs as a
    normal task from the start (as SCHED_FIFO it would keep its CPU's softirq thread, which finishes block
    completions, waiting)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("realtime auto needs a CPU left to the kernel (2 CPUs or more)")
    n = dense_trace(tmp_path, seconds=1.0, step_ns=5_000)
    doc, seen, _when, _ended = replay_watched(tmp_path, map_file(tmp_path, loopdev(64 << 20)))
    assert doc["realtime"] is True and doc["total"]["ios"] == n
    assert seen and os.SCHED_FIFO not in seen, seen


@root
def test_a_worker_turns_sched_fifo_once_its_ios_thin_out(tmp_path, loopdev):
    """0.5 s of reads every 5 us, then 2.5 s of reads every 2 ms: a normal task while they are dense,
    SCHED_FIFO once they are sparse (at most a second later, when the device held it back in the dense part)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("realtime auto needs a CPU left to the kernel (2 CPUs or more)")
    n = dense_then_sparse_trace(tmp_path)
    doc, seen, when, ended = replay_watched(tmp_path, map_file(tmp_path, loopdev(64 << 20)))
    assert doc["realtime"] is True and doc["total"]["ios"] == n
    assert seen[:2] == [os.SCHED_OTHER, os.SCHED_FIFO], seen
    last = doc["timing"]["last_completion_monotonic_ns"] / 1e9
    started = last - 3.0  # the trace's span, ended by its last IO
    assert 0.4 < when[1] - started < 1.9, (when, started)


@root
def test_a_worker_the_device_holds_back_leaves_sched_fifo(tmp_path, loopdev):
    """Bursts of 64 reads every 5 ms with at most 4 in flight: the worker sleeps most of the time (not busy), but
    every burst finds its depth limit reached, so the device, not the trace, sets its pace: it runs as a normal
    task from its first look at the scheduling (100 ms) until the replay ends, not as SCHED_FIFO, which would
    keep the kernel threads finishing its IOs off its CPU."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("realtime auto needs a CPU left to the kernel (2 CPUs or more)")
    n = burst_trace(tmp_path)
    doc, seen, when, ended = replay_watched(tmp_path, map_file(tmp_path, loopdev(64 << 20)), "--depth", "4")
    assert doc["realtime"] is True and doc["total"]["ios"] == n and doc["depth"] == 4
    fifo = [t for policy, t in zip(seen, when) if policy == os.SCHED_FIFO]
    other = [t for policy, t in zip(seen, when) if policy == os.SCHED_OTHER and fifo and t > fifo[0]]
    assert len(fifo) == 1 and other, (seen, when)  # never SCHED_FIFO again once it left
    assert other[0] - fifo[0] < 0.5 and ended - other[0] > 1.0, (fifo, other, ended)


def test_tick_follows_how_busy_the_worker_was(monkeypatch):
    clock, cpu, calls = [0], [0], []
    monkeypatch.setattr(realtime, "time", SimpleNamespace(thread_time_ns=lambda: cpu[0], monotonic_ns=lambda: clock[0]))
    monkeypatch.setattr(realtime, "os", SimpleNamespace(
        SCHED_FIFO=os.SCHED_FIFO, SCHED_OTHER=os.SCHED_OTHER, sched_param=os.sched_param,
        sched_setscheduler=lambda pid, policy, param: calls.append(policy)))
    window, fifo, other = realtime.WINDOW_NS, os.SCHED_FIFO, os.SCHED_OTHER

    def window_at(busy):
        clock[0] += window
        cpu[0] += int(busy * window)
        return rt.tick(clock[0])

    rt = realtime.Realtime(True)
    assert rt.start() == window and calls == [fifo]
    assert window_at(0.5) == 2 * window and calls == [fifo]  # sleeps half the time: stays real-time
    window_at(0.95)
    assert calls == [fifo, other]  # busy all along: a normal task
    window_at(0.85)
    assert calls == [fifo, other]  # between the marks: no change
    window_at(0.3)
    assert calls == [fifo, other, fifo]
    rt.stop()
    assert calls == [fifo, other, fifo, other]

    calls.clear()
    rt = realtime.Realtime(True)
    rt.start()
    rt.tick(clock[0] + window, held=True)  # the depth limit reached: a normal task, however idle
    assert calls == [fifo, other]
    for _ in range(realtime.HOLD_WINDOWS - 1):
        window_at(0.1)
        assert calls == [fifo, other]  # until HOLD_WINDOWS windows passed after the last one held back
    window_at(0.1)
    assert calls == [fifo, other, fifo]
    rt.tick(clock[0] + window, held=True)
    assert calls == [fifo, other, fifo, other]
    rt.stop()

    calls.clear()
    rt = realtime.Realtime(True)
    dense = realtime.DENSE_IOS + 1
    rt.start(dense)  # IOs less than DENSE_GAP_NS apart in the first window: a normal task from the start
    assert calls == [other]

    def window_coming(coming):  # an idle worker (no CPU time used), ``coming`` IOs due in the next window
        clock[0] += window
        return rt.tick(clock[0], coming=coming)

    window_coming(dense)
    assert calls == [other]
    window_coming(dense - 1)  # no longer dense
    assert calls == [other, fifo]
    window_coming(dense)
    assert calls == [other, fifo, other]
    rt.stop()

    calls.clear()
    off = realtime.Realtime(False)
    assert off.start() == float("inf")
    off.stop()
    assert calls == []


def test_due_by_counts_across_the_rings_end():
    cap = 16
    due = array("q", [0] * cap)
    times = [-5, 10, 20, 20, 30, 45, 70, 95]
    first = 12  # the IOs wrap round the ring's end
    for k, t in enumerate(times):
        due[(first + k) % cap] = t
    n = first + len(times)
    assert worker.due_by(due, first, n, cap - 1, cap, 20) == 4  # within the first part of the ring
    assert worker.due_by(due, first, n, cap - 1, cap, 50) == 6  # across its end
    assert worker.due_by(due, first, n, cap - 1, cap, 1000) == 8
    assert worker.due_by(due, first + 2, n, cap - 1, cap, 50) == 4
    assert worker.due_by(due, first, first, cap - 1, cap, 1000) == 0  # nothing fed
    assert worker.due_by(due, first, n, cap - 1, cap, -10) == 0


def lateness_by_due(log_path):
    """[(due ns after the start, lateness ns)] of every IO in a per-IO log."""
    with IOLog(log_path) as log:
        return sorted((s - late, late) for _it, _w, _start, c in log.blocks()
                      for s, late in zip(c["submit_ns"], c["lateness_ns"]))


@root
def test_dense_ios_go_out_in_batches_and_sparse_ones_at_their_time(tmp_path, loopdev):
    """Without --batch-window-us, a worker whose next 100 ms hold IOs less than 10 us apart on average sends those
    due within 40 us together (one system call, as btreplay's bunches): never more than 40 us early. Sparse IOs
    still go at their time, never early."""
    n = dense_then_sparse_trace(tmp_path)
    code, doc, err = replay("-d", tmp_path, "-M", map_file(tmp_path, loopdev(64 << 20)), "--io-log",
                            tmp_path / "io.log", "--json", tmp_path / "res.json", "loop1")
    assert code == 0, err
    validate(doc)
    assert doc["total"]["ios"] == n and doc["batch_window_auto"] is True
    assert doc["batch_window_us"] == realtime.AUTO_BATCH_NS / 1000
    # the 0.5 s of dense IOs (more if the worker fell behind), not the 2.5 s of sparse ones
    assert 3 <= doc["workers"][0]["batched_windows"] <= 15, doc["workers"]
    rows = lateness_by_due(tmp_path / "io.log")
    assert len(rows) == n
    dense = [late for due, late in rows if due < 500_000_000]
    sparse = [late for due, late in rows if due >= 700_000_000]
    assert min(dense) >= -realtime.AUTO_BATCH_NS
    assert min(dense) < 0, "no dense IO went with an earlier one"  # (a worker behind sends them late anyway)
    assert len(sparse) == 1250 - 100 and min(sparse) >= 0


@root
def test_a_batch_window_of_0_sends_every_io_at_its_time(tmp_path, loopdev):
    n = dense_then_sparse_trace(tmp_path)
    code, doc, err = replay("-d", tmp_path, "-M", map_file(tmp_path, loopdev(64 << 20)), "--io-log",
                            tmp_path / "io.log", "--batch-window-us", "0", "--json", tmp_path / "res.json", "loop1")
    assert code == 0, err
    validate(doc)
    assert doc["total"]["ios"] == n and doc["batch_window_auto"] is False and doc["batch_window_us"] == 0
    assert "batched_windows" not in doc["workers"][0]
    assert min(late for _due, late in lateness_by_due(tmp_path / "io.log")) >= 0

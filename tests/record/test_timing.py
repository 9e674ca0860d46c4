"""Native replay files of a capture with completions (format version 2): every IO's recorded latency, in-flight
count, think time and parents, from real captures of fio on loop devices. Parents completed before their child
was issued (or, for a conflict still in flight, were issued before it); overlapping IOs of which one writes are
always ordered; without ``--timing``, and Q-only captures even with it, give version 1 files with the same packets."""

import os
import subprocess
from pathlib import Path

import pytest

from blkfleet.cli import main
from blkfleet.percpu import find_per_cpu
from blkfleet.replayfile import open_replay
from blkfleet.replayfile.ops import READ
from helpers.tracing import traced


def fio(dev, *options):
    subprocess.run(["fio", "--name=job", f"--filename={dev}", "--direct=1", "--bs=4k", "--randrepeat=0",
                    "--output-format=terse", *options], check=True, capture_output=True)


def capture(tracer, loopdev, tmp_path, *options, completions=True):
    dev = loopdev()
    out = tmp_path / "cap"
    out.mkdir()
    with traced([dev], out, lock=tracer, mode="events", completions=completions):
        fio(dev, *options)
    return out, os.path.basename(dev)


def record(capdir, name, dest, *flags, timing=True):
    dest.mkdir()
    flags = ("--timing",) * timing + flags
    assert main(["record", "-q", *flags, "-d", str(capdir), "-D", str(dest), name]) == 0
    return find_per_cpu(str(dest), name, "replay")


class IO:
    __slots__ = ("seq", "time", "sector", "nbytes", "op", "latency", "inflight", "think", "parents", "pid")


def ios_of(paths):
    """{seq: IO} of every IO of a device's version 2 files."""
    ios = {}
    for path in paths:
        reader = open_replay(path, timing=True)
        assert reader.version == 2 and reader.timing
        for chunk in reader.chunks():
            t = chunk.timing
            assert t is not None and len(t) == len(chunk)
            for k, parents in enumerate(t.parents()):
                io = IO()
                io.seq, io.time, io.sector, io.nbytes, io.op = (t.seqs[k], chunk.times[k], chunk.sectors[k],
                                                                chunk.nbytes[k], chunk.ops[k])
                io.latency, io.inflight, io.think, io.parents = (t.latencies[k], t.inflight[k], t.thinks[k],
                                                                 parents)
                io.pid = chunk.pids[k]
                ios[io.seq] = io
    assert sorted(ios) == list(range(len(ios)))  # the CPU files share one numbering, without holes
    return ios


def check_parents(ios):
    """A completion parent completed before its child was issued, an issue parent was issued before it and had not
    completed (a completion with the child's very timestamp may be taken either way: the trace cannot order them)."""
    for io in ios.values():
        assert io.latency >= 0
        for seq, after_issue in io.parents:
            parent = ios[seq]
            if after_issue:
                assert parent.time <= io.time <= parent.time + parent.latency
            else:
                assert parent.time + parent.latency <= io.time


@pytest.mark.root
def test_synchronous_io_depends_on_the_one_before(tracer, loopdev, tmp_path):
    """One IO at a time with 300 us think time: each depends on the previous one, after its recorded think."""
    capdir, name = capture(tracer, loopdev, tmp_path, "--rw=randrw", "--ioengine=psync", "--size=16m",
                           "--number_ios=400", "--thinktime=300")
    ios = ios_of(record(capdir, name, tmp_path / "rep"))
    assert len(ios) == 400
    check_parents(ios)
    for seq, io in ios.items():
        assert io.inflight == 1
        if seq:
            assert (seq - 1, False) in io.parents
            assert io.think == io.time - (ios[seq - 1].time + ios[seq - 1].latency)
            assert io.think >= 290_000


@pytest.mark.root
def test_task_scope_keeps_independent_tasks_apart(tracer, loopdev, tmp_path):
    """Two synchronous fio jobs: with hfplayer's device-wide window an IO also depends on the other job's recent
    completions; with ``--dep-scope task`` only on its own job's (conflicts aside: none here, 8 MiB apart)."""
    capdir, name = capture(tracer, loopdev, tmp_path, "--rw=randread", "--ioengine=psync", "--size=4m",
                           "--number_ios=300", "--thinktime=100", "--numjobs=2", "--offset_increment=8m")
    device = ios_of(record(capdir, name, tmp_path / "device"))
    task = ios_of(record(capdir, name, tmp_path / "task", "--dep-scope", "task"))
    assert len({io.pid for io in device.values()}) == 2
    crossing = sum(device[p].pid != io.pid for io in device.values() for p, _after in io.parents)
    assert crossing > 100
    for ios in (device, task):
        check_parents(ios)
    first = {}
    for seq in sorted(task):
        first.setdefault(task[seq].pid, seq)
    for io in task.values():  # each task's first IO has no parent (nothing of its task had completed)
        assert bool(io.parents) == (io.seq != first[io.pid])
        assert all(task[p].pid == io.pid for p, _after in io.parents)


@pytest.mark.root
def test_conflicting_ios_are_always_ordered(tracer, loopdev, tmp_path):
    """Reads and writes at depth 16 on 8 blocks: every earlier IO that overlaps a later one, one of the two
    writing, is its ancestor (a completion or an issue parent, directly or through the IOs between)."""
    capdir, name = capture(tracer, loopdev, tmp_path, "--rw=randrw", "--ioengine=libaio", "--iodepth=16",
                           "--size=32k", "--norandommap", "--io_size=2400k")
    ios = ios_of(record(capdir, name, tmp_path / "rep"))
    check_parents(ios)
    order = sorted(ios)
    ancestors = {}
    pairs = 0
    for seq in order:
        io = ios[seq]
        mine = set()
        for parent, _after_issue in io.parents:
            mine.add(parent)
            mine |= ancestors[parent]
        ancestors[seq] = mine
        for earlier in order[:seq]:
            other = ios[earlier]
            overlap = other.sector < io.sector + (io.nbytes >> 9) and io.sector < other.sector + (other.nbytes >> 9)
            if overlap and (io.op != READ or other.op != READ):
                pairs += 1
                assert earlier in mine, (earlier, seq)
    assert pairs > 1000
    assert max(io.inflight for io in ios.values()) <= 16
    assert any(after for io in ios.values() for _p, after in io.parents)  # some conflicts were in flight


@pytest.mark.root
def test_inflight_is_what_the_device_had(tracer, loopdev, tmp_path):
    capdir, name = capture(tracer, loopdev, tmp_path, "--rw=randread", "--ioengine=libaio", "--iodepth=8",
                           "--size=16m", "--number_ios=2000")
    ios = ios_of(record(capdir, name, tmp_path / "rep"))
    check_parents(ios)
    inflight = [io.inflight for io in ios.values()]
    assert min(inflight) >= 1 and max(inflight) <= 8 and max(inflight) >= 4


@pytest.mark.root
def test_version_1_without_timing_holds_the_same_ios(tracer, loopdev, tmp_path):
    """Without ``--timing``, and for a capture without completions, record gives version 1 files; their IOs are
    those of the version 2 files."""
    capdir, name = capture(tracer, loopdev, tmp_path, "--rw=randrw", "--ioengine=libaio", "--iodepth=4",
                           "--size=16m", "--number_ios=500")
    v2 = record(capdir, name, tmp_path / "v2")
    v1 = record(capdir, name, tmp_path / "v1", timing=False)
    for a, b in zip(v1, v2):
        old, new = open_replay(a), open_replay(b)
        assert (old.version, old.timing, new.version) == (1, False, 2)
        assert [io for c in old.chunks() for io in c] == [io for c in new.chunks() for io in c]
        assert all(c.timing is None for c in old.chunks())
    (tmp_path / "q").mkdir()
    qdir, qname = capture(tracer, loopdev, tmp_path / "q", "--rw=randread", "--ioengine=psync", "--size=4m",
                          "--number_ios=50", completions=False)
    plain = record(qdir, qname, tmp_path / "q" / "rep")
    assert plain and all(open_replay(p).version == 1 for p in plain)


V1 = Path(__file__).resolve().parents[1] / "data" / "replay-v1"


def test_version_1_is_byte_for_byte_what_the_previous_engine_wrote(tmp_path):
    """tests/data/replay-v1 holds the native files the engine before version 2 made of tests/data/randmix (a
    capture with completions); without ``--timing`` it writes exactly them, and they still read."""
    record(V1.parent / "randmix", "loop1", tmp_path / "new", timing=False)
    for old in sorted(V1.glob("loop1.replay.*")):
        assert (tmp_path / "new" / old.name).read_bytes() == old.read_bytes()
        reader = open_replay(str(old))
        assert reader.version == 1 and not reader.timing
        assert sum(len(c) for c in reader.chunks()) == reader.io_count > 0

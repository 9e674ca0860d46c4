"""The IO engines on a real loop device: every IO comes back once with its byte count, the AIO iocb ring
wraps and restages without losing or repeating an IO (checked against what the kernel received), warm-up
probes make no bio and leave no completion behind, errors come back as results, and rewind replays again."""

import ctypes
import errno
import os
import random
import struct
import time
from array import array
from collections import Counter

import pytest

from blkfleet.replay.ioengines import aio, open_engine
from blkfleet.replay.iolist import IOList
from blkfleet.replayfile.ops import READ, WRITE
from helpers.tracing import queued_extents, traced

BACKENDS = ("aio", "uring", "sync")
SIZE = 64 << 20
pytestmark = pytest.mark.root


class Plan:
    """What IOList reads of a schedule.Plan: (offset, nbytes, op) per IO, all on target 0."""

    def __init__(self, ios):
        self.offset = array("q", [o for o, _n, _op in ios])
        self.nbytes = array("q", [n for _o, n, _op in ios])
        self.ops = array("b", [op for _o, _n, op in ios])
        self.target = array("b", bytes(len(ios)))
        self.flags = array("b", bytes(len(ios)))

    def __len__(self):
        return len(self.ops)


def random_reads(n, sizes, seed=1):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        size = rng.choice(sizes)
        out.append((rng.randrange((SIZE - size) // 4096 + 1) * 4096, size, READ))
    return out


def extents(ios):
    return Counter((o // 512, n) for o, n, _op in ios)


@pytest.fixture
def device(loopdev):
    """A fresh loop device and an O_RDONLY|O_DIRECT fd on it: (path, fd)."""
    path = loopdev(SIZE)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    yield path, fd
    os.close(fd)


def bound(backend, ios, depth):
    engine = open_engine(backend, depth)
    engine.bind(ios)
    return engine


def drive(engine, n, depth, seed=0, idle=False):
    """Submit IOs 0..n-1 in ranges of random length within the free depth, reaping (and with ``idle``, giving
    the engine idle time of random length) as it goes, until n completions are back; returns them as
    [(index, result)]."""
    rng = random.Random(seed)
    events, i, inflight = [], 0, 0
    deadline = time.monotonic() + 10
    while len(events) < n:
        assert time.monotonic() < deadline, f"{n - len(events)} IOs never came back"
        if i < n and inflight < depth:
            sent = engine.submit(i, min(n, i + rng.randint(1, depth - inflight)))
            i += sent
            inflight += sent
        if idle:
            engine.idle(rng.choice((0, 2_000, 1_000_000)))
        got = engine.reap(1, 100_000_000) if inflight >= depth or i >= n else engine.reap(0, 0)
        inflight -= len(got)
        events += got
    assert engine.reap(0, 0) == []
    return events


def assert_each_once(events, ios):
    assert Counter(k for k, _res in events) == Counter(range(len(ios)))
    assert all(res == ios.expect[k] for k, res in events), [(k, res) for k, res in events if res != ios.expect[k]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_io_completes_once(device, backend):
    """Reads of 4 KiB .. 1 MiB: each comes back once with its size, the shared buffer fits the largest."""
    _path, fd = device
    plan = [(0, 1 << 20, READ), (SIZE - 4096, 4096, READ)] + random_reads(300, [4096 << k for k in range(9)])
    ios = IOList(Plan(plan), [fd], False)
    assert ios.read_buffer.size == 1 << 20
    with bound(backend, ios, 8) as engine:
        assert_each_once(drive(engine, len(ios), 8), ios)


@pytest.fixture
def small_ring(monkeypatch):
    """An AIO iocb ring of 64, restaged at most 16 at a time when idle and 4 at a time when submit needs it."""
    monkeypatch.setattr(aio, "STAGE_MAX", 64)
    monkeypatch.setattr(aio, "STAGE_CHUNK", 16)
    monkeypatch.setattr(aio, "STAGE_URGENT", 4)


@pytest.mark.parametrize("depth", [16, 100])
def test_aio_ring_wraps_and_restages(device, tracer, tmp_path, small_ring, depth):
    """1000 IOs through the small ring (and a depth larger than it): every IO once, and the kernel receives
    exactly the planned extents."""
    path, fd = device
    plan = random_reads(1000, [4096, 8192, 16384, 65536], seed=depth)
    ios = IOList(Plan(plan), [fd], False)
    with bound("aio", ios, depth) as engine, traced([path], tmp_path / "seen", tracer):
        events = drive(engine, len(ios), depth, seed=depth, idle=True)
    assert_each_once(events, ios)
    assert queued_extents(tmp_path / "seen", path) == extents(plan)


def ring_events(engine):
    """Completions waiting in the kernel's AIO completion ring."""
    head, tail = struct.unpack_from("=II", engine._ring, 8)
    return (tail - head) % engine._ring_nr


def test_aio_probe_makes_no_bio_and_leaves_no_event(device, tracer, tmp_path):
    path, fd = device
    plan = random_reads(20, [4096, 65536])
    ios = IOList(Plan(plan), [fd], False)
    with bound("aio", ios, 4) as engine, traced([path], tmp_path / "seen", tracer) as seen:
        assert engine._ring is not None
        for _ in range(50):
            engine.probe()
        assert ring_events(engine) == 0
        assert engine.reap(0, 0) == [] and engine.reap(1, 1_000_000) == []
        assert_each_once(drive(engine, len(ios), 4), ios)
    assert seen.queued(path) == len(plan)  # the real IOs only: the probes reached no block layer
    assert queued_extents(tmp_path / "seen", path) == extents(plan)


def test_aio_probe_with_ios_in_flight_does_nothing(device):
    """Its wait for its own completion could otherwise take a real IO's completion away."""
    _path, fd = device
    ios = IOList(Plan(random_reads(8, [4096])), [fd], False)
    with bound("aio", ios, 8) as engine:
        assert engine.submit(0, 8) == 8
        time.sleep(0.02)
        for _ in range(3):
            engine.probe()
        events, deadline = [], time.monotonic() + 2
        while len(events) < 8 and time.monotonic() < deadline:
            events += engine.reap(1, 100_000_000)
    assert_each_once(events, ios)


@pytest.mark.parametrize("user_ring", [True, False], ids=["ring", "io_getevents"])
def test_aio_late_probe_completions_are_dropped(device, user_ring):
    """Probe completions nobody waited for, found by reap (in the user-space ring or from io_getevents), are
    dropped: only real IOs come back, each once, and the in-flight count stays right."""
    _path, fd = device
    ios = IOList(Plan(random_reads(40, [4096, 16384])), [fd], False)
    with bound("aio", ios, 8) as engine:
        if not user_ring:
            engine._ring = None
        for _ in range(3):
            ret = engine._syscall(engine._nr_submit, engine._c_ctx, ctypes.c_long(1), engine._probe_ptr)
            assert ret == 1
        assert_each_once(drive(engine, len(ios), 8), ios)
        assert engine._inflight == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_refusals_come_back_as_results(device, backend):
    """Misaligned direct IO: -EINVAL; a read at or across the device end: 0 or a short count (end of file);
    none raises."""
    _path, fd = device
    plan = [(100, 4096, READ), (SIZE, 4096, READ), (SIZE - 4096, 8192, READ), (0, 4096, READ)]
    ios = IOList(Plan(plan), [fd], False)
    with bound(backend, ios, 4) as engine:
        results = dict(drive(engine, len(ios), 4))
    assert results == {0: -errno.EINVAL, 1: 0, 2: 4096, 3: 4096}


@pytest.mark.parametrize("backend", ["aio", "uring", "sync"])
def test_write_on_a_read_only_fd_is_a_negative_result(device, backend):
    _path, fd = device
    ios = IOList(Plan([(0, 4096, WRITE), (4096, 4096, READ)]), [fd], True)
    with bound(backend, ios, 2) as engine:
        results = dict(drive(engine, len(ios), 2))
    assert results == {0: -errno.EBADF, 1: 4096}


@pytest.mark.parametrize("backend", BACKENDS)
def test_rewind_replays_again(device, small_ring, backend):
    """After a full pass (the small AIO ring wrapped three times), rewind: the same IOs complete again."""
    _path, fd = device
    ios = IOList(Plan(random_reads(200, [4096, 8192, 131072])), [fd], False)
    with bound(backend, ios, 16) as engine:
        for seed in (1, 2, 3):
            assert_each_once(drive(engine, len(ios), 16, seed=seed, idle=True), ios)
            engine.rewind()

"""The IO engines on a real loop device, driven from a window as a worker drives them: every IO comes back once
with its byte count, the window wraps without losing or repeating an IO (checked against what the kernel
received), warm-up probes make no bio and leave no completion behind, errors come back as results, and
discards run through the engine and come back as completions."""

import ctypes
import errno
import os
import random
import struct
import time
from collections import Counter

import pytest

from blkfleet.replay.ioengines import open_ioengine
from blkfleet.replay.ioengines.base import EVENT
from blkfleet.replay.window import (
    CMD_PREAD,
    CMD_PWRITE,
    CMD_SPECIAL,
    IOCB_WORDS,
    W_BUF,
    W_DATA,
    W_NBYTES,
    W_OFFSET,
    W_OP_FD,
    Window,
)
from blkfleet.replayfile.ops import DISCARD, READ, WRITE
from helpers.tracing import queued_extents, traced

BACKENDS = ("aio", "uring", "sync")
SIZE = 64 << 20
CMD = {READ: CMD_PREAD, WRITE: CMD_PWRITE, DISCARD: CMD_SPECIAL}
pytestmark = pytest.mark.root


class Feed:
    """IOs [(offset, nbytes, op)] written into a window as the feeder would, IO k only once slot k is free."""

    def __init__(self, ios, fd, capacity=1 << 16):
        self.ios, self.fd = ios, fd
        self.window = Window(capacity)
        self.window.prefault(max(n for _o, n, _op in ios), max(n for _o, n, _op in ios))
        self.written = 0

    def write(self, k):
        win, (offset, nbytes, op) = self.window, self.ios[k]
        r = k & win.mask
        q = IOCB_WORDS * r
        win.iocb[q + W_DATA] = k
        win.iocb[q + W_OP_FD] = CMD[op] | self.fd << 32
        win.iocb[q + W_BUF] = win.read_buffer if op == READ else win.write_buffer
        win.iocb[q + W_NBYTES] = nbytes
        win.iocb[q + W_OFFSET] = offset
        win.op[r] = op

    def fill(self, done):
        """Write every IO whose slot is free: all below the first one not done are."""
        low = min((k for k in range(self.written - self.window.capacity, self.written) if k >= 0 and k not in done),
                  default=self.written)
        while self.written < len(self.ios) and self.written < low + self.window.capacity:
            self.write(self.written)
            self.written += 1


def events(raw):
    return [(data, res) for data, _obj, res, _res2 in EVENT.iter_unpack(raw)]


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


def bound(backend, feed, depth, probe=None):
    engine = open_ioengine(backend, depth)
    engine.bind(feed.window, probe)
    return engine


def drive(engine, feed, depth, seed=0):
    """Submit the IOs in ranges of random length within the free depth (and the window), reaping as it goes,
    until all completions are back; returns them as [(index, result)]."""
    rng = random.Random(seed)
    n, cap = len(feed.ios), feed.window.capacity
    got, done, i, inflight = [], set(), 0, 0
    deadline = time.monotonic() + 10
    feed.fill(done)
    while len(got) < n:
        assert time.monotonic() < deadline, f"{n - len(got)} IOs never came back"
        if i < feed.written and inflight < depth:
            j = min(feed.written, i + rng.randint(1, depth - inflight), i + cap - (i & (cap - 1)))
            if feed.ios[i][2] == DISCARD:
                engine.special(i)
                sent = 1
            else:
                j = next((k for k in range(i, j) if feed.ios[k][2] == DISCARD), j)
                sent = engine.submit(i, j)
            i += sent
            inflight += sent
        raw = engine.reap(1, 100_000_000) if inflight >= depth or i >= feed.written else engine.reap(0, 0)
        new = events(raw)
        inflight -= len(new)
        got += new
        done.update(k for k, _res in new)
        feed.fill(done)
    assert engine.reap(0, 0) == b""
    return got


def assert_each_once(got, ios):
    assert Counter(k for k, _res in got) == Counter(range(len(ios)))
    assert all(res == ios[k][1] for k, res in got), [(k, res) for k, res in got if res != ios[k][1]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_io_completes_once(device, backend):
    """Reads of 4 KiB .. 1 MiB: each comes back once with its size."""
    _path, fd = device
    ios = [(0, 1 << 20, READ), (SIZE - 4096, 4096, READ)] + random_reads(300, [4096 << k for k in range(9)])
    feed = Feed(ios, fd)
    with bound(backend, feed, 8) as engine:
        assert_each_once(drive(engine, feed, 8), ios)


@pytest.mark.parametrize("depth", [16, 64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_window_wraps(device, tracer, tmp_path, backend, depth):
    """1000 IOs through a window of 64 (written again as slots free): every IO once, and the kernel receives
    exactly the planned extents."""
    path, fd = device
    ios = random_reads(1000, [4096, 8192, 16384, 65536], seed=depth)
    feed = Feed(ios, fd, capacity=64)
    with bound(backend, feed, depth) as engine, traced([path], tmp_path / "seen", tracer):
        got = drive(engine, feed, depth, seed=depth)
    assert_each_once(got, ios)
    assert queued_extents(tmp_path / "seen", path) == extents(ios)


def ring_events(engine):
    """Completions waiting in the kernel's AIO completion ring."""
    head, tail = struct.unpack_from("=II", engine._ring, 8)
    return (tail - head) % engine._ring_nr


def test_aio_probe_makes_no_bio_and_leaves_no_event(device, tracer, tmp_path):
    path, fd = device
    ios = random_reads(20, [4096, 65536])
    feed = Feed(ios, fd)
    with bound("aio", feed, 4, probe=(fd, SIZE)) as engine, traced([path], tmp_path / "seen", tracer) as seen:
        assert engine._ring is not None
        for _ in range(50):
            engine.probe()
        assert ring_events(engine) == 0
        assert engine.reap(0, 0) == b"" and engine.reap(1, 1_000_000) == b""
        assert_each_once(drive(engine, feed, 4), ios)
    assert seen.queued(path) == len(ios)  # the real IOs only: the probes reached no block layer
    assert queued_extents(tmp_path / "seen", path) == extents(ios)


def test_aio_probe_with_ios_in_flight_does_nothing(device):
    """Its wait for its own completion could otherwise take a real IO's completion away."""
    _path, fd = device
    ios = random_reads(8, [4096])
    feed = Feed(ios, fd)
    feed.fill(set())
    with bound("aio", feed, 8, probe=(fd, SIZE)) as engine:
        assert engine.submit(0, 8) == 8
        time.sleep(0.02)
        for _ in range(3):
            engine.probe()
        got, deadline = [], time.monotonic() + 2
        while len(got) < 8 and time.monotonic() < deadline:
            got += events(engine.reap(1, 100_000_000))
    assert_each_once(got, ios)


@pytest.mark.parametrize("user_ring", [True, False], ids=["ring", "io_getevents"])
def test_aio_late_probe_completions_are_dropped(device, user_ring):
    """Probe completions nobody waited for, found by reap (in the user-space ring or from io_getevents), are
    dropped: only real IOs come back, each once, and the in-flight count stays right."""
    _path, fd = device
    ios = random_reads(40, [4096, 16384])
    feed = Feed(ios, fd)
    with bound("aio", feed, 8, probe=(fd, SIZE)) as engine:
        if not user_ring:
            engine._ring = None
        for _ in range(3):
            ret = engine._syscall(engine._nr_submit, engine._c_ctx, ctypes.c_long(1), engine._probe_ptr)
            assert ret == 1
        engine._probe_out = True
        assert_each_once(drive(engine, feed, 8), ios)
        assert engine._inflight == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_refusals_come_back_as_results(device, backend):
    """Misaligned direct IO: -EINVAL; a read at or across the device end: 0 or a short count (end of file);
    none raises."""
    _path, fd = device
    ios = [(100, 4096, READ), (SIZE, 4096, READ), (SIZE - 4096, 8192, READ), (0, 4096, READ)]
    feed = Feed(ios, fd)
    with bound(backend, feed, 4) as engine:
        results = dict(drive(engine, feed, 4))
    assert results == {0: -errno.EINVAL, 1: 0, 2: 4096, 3: 4096}


@pytest.mark.parametrize("backend", BACKENDS)
def test_write_on_a_read_only_fd_is_a_negative_result(device, backend):
    _path, fd = device
    feed = Feed([(0, 4096, WRITE), (4096, 4096, READ)], fd)
    with bound(backend, feed, 2) as engine:
        results = dict(drive(engine, feed, 2))
    assert results == {0: -errno.EBADF, 1: 4096}


@pytest.mark.parametrize("backend", BACKENDS)
def test_discards_run_through_the_engine(loopdev, backend):
    """A discard (an ioctl) comes back as a completion like any IO: 0 done, or -errno (a read-only fd:
    -EBADF)."""
    path = loopdev(SIZE)
    rw = os.open(path, os.O_RDWR | os.O_DIRECT)
    ro = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        for fd, want in ((rw, 0), (ro, -errno.EBADF)):
            ios = [(0, 4096, READ), (1 << 20, 1 << 20, DISCARD), (8192, 4096, READ)]
            feed = Feed(ios, fd)
            with bound(backend, feed, 4) as engine:
                results = dict(drive(engine, feed, 4))
            assert results == {0: 4096, 1: want, 2: 4096}
    finally:
        os.close(rw)
        os.close(ro)

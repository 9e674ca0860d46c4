"""The interface every IO engine implements (fio's ioengine idea: one loop, several ways to do IO)."""

import ctypes
import ctypes.util
import os

# Request opcodes understood by every engine.
OP_READ, OP_WRITE, OP_FLUSH = 0, 1, 2
RWF_DSYNC = 0x2  # per-IO flag of a FUA write: write through the device cache

_libc = None


def libc():
    """The C library, loaded once, with errno kept."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def check(ret, what):
    """Raise OSError for a negative system-call return."""
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


class IOEngine:
    """Asynchronous block IO over an IOList, with at most ``depth`` requests in flight.

    ``bind(ios)`` hands the engine the IOs (before the start: engines prepare what they can),
    ``submit(i, j)`` sends IOs ``i`` to ``j - 1`` and returns how many of them (from ``i``) the kernel took,
    ``reap(min_nr, timeout_ns)`` waits at most ``timeout_ns`` (0: poll) for ``min_nr`` completions and returns
    ``[(index, result)]`` (result: byte count or ``-errno``), ``idle(budget_ns)`` does at most that long of
    preparation work while the worker waits, ``rewind()`` makes ready to start over from IO 0,
    ``probe()`` (nothing in flight) runs a read the kernel ends at once, without a bio, to keep the submission
    path warm in caches while the worker waits for an IO's time, ``close()`` releases the engine.
    """

    name = "?"

    def __init__(self, depth):
        self.depth = depth
        self.ios = None

    def bind(self, ios):
        self.ios = ios

    def submit(self, i, j):
        raise NotImplementedError

    def reap(self, min_nr, timeout_ns):
        raise NotImplementedError

    def idle(self, budget_ns):
        pass

    def rewind(self):
        pass

    def probe(self):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""The interface every IO engine implements (fio's ioengine idea: one loop, several ways to do IO)."""

import ctypes
import ctypes.util
import os

# Request opcodes understood by every engine.
OP_READ, OP_WRITE, OP_FLUSH = 0, 1, 2
# Per-request flags.
RQ_FUA = 1  # write through the device cache (RWF_DSYNC on a block device = a FUA write)

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
    """Asynchronous block IO with at most ``depth`` requests in flight.

    ``queue(tag, fd, op, offset, nbytes, buf, flags)`` prepares a request (``buf``: a buffers.Buffer),
    ``submit()`` sends every queued request and returns how many the kernel took, ``reap(min_nr,
    timeout_ns)`` waits (at most ``timeout_ns``; 0 = poll) for completions and returns ``[(tag, result)]``
    where ``result`` is the byte count or ``-errno``. ``close()`` releases the engine.
    """

    name = "?"

    def __init__(self, depth):
        self.depth = depth

    def queue(self, tag, fd, op, offset, nbytes, buf, flags=0):
        raise NotImplementedError

    def submit(self):
        raise NotImplementedError

    def reap(self, min_nr, timeout_ns):
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

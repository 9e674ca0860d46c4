"""The interface every IO engine implements (fio's ioengine idea: one loop, several ways to do IO).

An engine works on a worker's look-ahead window (``replay.window``), whose slots hold each IO as a Linux AIO
iocb: what to do (command and descriptor), where (offset), how much (nbytes) and with what memory (buf).
Completions come back as the kernel's ``struct io_event`` records (data: the IO's index; res: bytes done or
-errno), whichever engine made them, so the worker hands them on unread.
"""

import ctypes
import ctypes.util
import errno
import os
import struct

from ...replayfile.ops import DISCARD
from ..target import discard, zero_out
from ..window import CMD_FDSYNC, CMD_PREAD, CMD_PWRITE, IOCB_WORDS, W_BUF, W_NBYTES, W_OFFSET, W_OP_FD, W_RW_FLAGS

# Request opcodes understood by every engine (what an iocb's command means, engine-neutral).
OP_READ, OP_WRITE, OP_FLUSH = 0, 1, 2
RWF_DSYNC = 0x2  # per-IO flag of a FUA write: write through the device cache
EVENT = struct.Struct("=QQqq")  # struct io_event: data, obj, res, res2
OP_OF_CMD = {CMD_PREAD: OP_READ, CMD_PWRITE: OP_WRITE, CMD_FDSYNC: OP_FLUSH}
PROBE_DATA = (1 << 64) - 1  # data of a probe's event (never an IO's index)

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


def event(index, res):
    return EVENT.pack(index, 0, res, 0)


class IOEngine:
    """Asynchronous block IO from a window, with at most ``depth`` requests in flight.

    ``bind(window, probe)`` hands the engine the window (and a probe: (fd, offset) of a read the kernel ends at
    once, without a bio), ``submit(i, j)`` sends IOs ``i`` to ``j - 1`` (absolute indexes, contiguous slots)
    and returns how many of them (from ``i``) the kernel took, ``special(k)`` runs IO ``k`` (a discard or
    write-zeroes: an ioctl) at once, ``reap(min_nr, timeout_ns)`` waits at most ``timeout_ns`` (0: poll) for
    ``min_nr`` completions and returns their io_event records as bytes (specials and refused IOs included),
    ``probe()`` (nothing in flight) runs the probe read to keep the submission path warm in caches while the
    worker waits for an IO's time, ``close()`` releases the engine.
    """

    name = "?"

    def __init__(self, depth):
        self.depth = depth
        self.window = None
        self._done = []  # io_event records completed by the engine itself (specials, refused IOs)

    def bind(self, window, probe=None):
        self.window = window
        self.probe_at = probe

    def slot_io(self, k):
        """(command, fd, offset, nbytes, buf, rw_flags) of IO ``k``."""
        q, r = self.window.iocb, (k & self.window.mask) * IOCB_WORDS
        word = q[r + W_OP_FD]
        return (word & 0xFFFF, word >> 32, q[r + W_OFFSET], q[r + W_NBYTES], q[r + W_BUF],
                q[r + W_RW_FLAGS] >> 32)

    def special(self, k):
        _cmd, fd, offset, nbytes, _buf, _flags = self.slot_io(k)
        try:
            (discard if self.window.op[k & self.window.mask] == DISCARD else zero_out)(fd, offset, nbytes)
            res = 0
        except OSError as e:
            res = -(e.errno or errno.EIO)
        self._done.append(event(k, res))

    def take_done(self):
        done, self._done = self._done, []
        return b"".join(done)

    def submit(self, i, j):
        raise NotImplementedError

    def reap(self, min_nr, timeout_ns):
        raise NotImplementedError

    def probe(self):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

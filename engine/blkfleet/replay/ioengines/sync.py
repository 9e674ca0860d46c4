"""Synchronous fallback: ``submit`` does each IO with preadv/pwritev/fdatasync; ``reap`` hands back results."""

import ctypes
import os

from .base import OP_FLUSH, OP_OF_CMD, OP_READ, IOEngine, event


class SyncEngine(IOEngine):
    name = "sync"

    def submit(self, i, j):
        for k in range(i, j):
            cmd, fd, offset, nbytes, buf, rw_flags = self.slot_io(k)
            code = OP_OF_CMD[cmd]
            try:
                if code == OP_FLUSH:
                    os.fdatasync(fd)
                    res = 0
                else:
                    view = [memoryview((ctypes.c_char * nbytes).from_address(buf)).cast("B")]
                    res = os.preadv(fd, view, offset) if code == OP_READ else os.pwritev(fd, view, offset, rw_flags)
            except OSError as e:
                res = -e.errno
            self._done.append(event(k, res))
        return j - i

    def reap(self, min_nr, timeout_ns):
        return self.take_done()

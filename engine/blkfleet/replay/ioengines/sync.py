"""Synchronous fallback: ``submit`` does each IO with preadv/pwritev/fdatasync; ``reap`` hands back results."""

import os

from .base import OP_FLUSH, OP_READ, IOEngine


class SyncEngine(IOEngine):
    name = "sync"

    def __init__(self, depth):
        super().__init__(depth)
        self._done = []

    def submit(self, i, j):
        ios = self.ios
        done = self._done
        for k in range(i, j):
            code, fd = ios.code[k], ios.fd[k]
            try:
                if code == OP_READ:
                    res = os.preadv(fd, [ios.view(k)], ios.offset[k])
                elif code == OP_FLUSH:
                    os.fdatasync(fd)
                    res = 0
                else:
                    res = os.pwritev(fd, [ios.view(k)], ios.offset[k], os.RWF_DSYNC if ios.fua[k] else 0)
            except OSError as e:
                res = -e.errno
            done.append((k, res))
        return j - i

    def reap(self, min_nr, timeout_ns):
        done, self._done = self._done, []
        return done

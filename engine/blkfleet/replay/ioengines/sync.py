"""Synchronous fallback: each request runs in ``submit`` with preadv/pwritev; ``reap`` hands back results."""

import os

from .base import OP_FLUSH, OP_READ, RQ_FUA, IOEngine


class SyncEngine(IOEngine):
    name = "sync"

    def __init__(self, depth):
        super().__init__(depth)
        self._queued = []
        self._done = []

    def queue(self, tag, fd, op, offset, nbytes, buf, flags=0):
        self._queued.append((tag, fd, op, offset, nbytes, buf, flags))

    def submit(self):
        queued, self._queued = self._queued, []
        for tag, fd, op, offset, nbytes, buf, flags in queued:
            try:
                if op == OP_READ:
                    res = os.preadv(fd, [buf.view[:nbytes]], offset)
                elif op == OP_FLUSH:
                    os.fdatasync(fd)
                    res = 0
                else:
                    res = os.pwritev(fd, [buf.view[:nbytes]], offset, os.RWF_DSYNC if flags & RQ_FUA else 0)
            except OSError as e:
                res = -e.errno
            self._done.append((tag, res))
        return len(queued)

    def reap(self, min_nr, timeout_ns):
        done, self._done = self._done, []
        return done

"""What a worker hands its IO engine: per IO the engine operation, file descriptor, offset, length, buffer
address and FUA flag, worked out once before the start so the hot loop only picks index ranges.

Reads all land in one buffer and writes all come from another: the data does not matter to a replay, so
IOs in flight may share them (only reads change the memory, and never the one a write is reading from).
"""

import os
from array import array

from ..replayfile.ops import DISCARD, F_FUA, F_PREFLUSH, FLUSH, READ, WRITE, WRITE_ZEROES
from .buffers import Buffer
from .ioengines import OP_FLUSH, OP_READ, OP_WRITE

NO_ENGINE = -1  # code of an IO the engine does not do: skipped, or an ioctl run by the worker


class IOList:
    """``code``: OP_READ/OP_WRITE/OP_FLUSH or NO_ENGINE; ``issued``: the replay op actually done (a write
    without write_enable becomes a read of the same extent; -1: skipped); ``special``: the indexes of
    NO_ENGINE IOs, in order; ``expect``: the result a complete IO returns."""

    def __init__(self, plan, fds, write_enable):
        n = len(plan)
        issued = array("b", [_issued(op, write_enable) for op in plan.ops])
        self.issued = issued
        self.code = array("b", [_CODE.get(op, NO_ENGINE) for op in issued])
        self.special = [k for k, c in enumerate(self.code) if c == NO_ENGINE]
        self.fd = array("i", [fds[t] for t in plan.target])
        self.offset = plan.offset
        self.nbytes = plan.nbytes
        self.expect = array("q", [0 if c == OP_FLUSH else b for c, b in zip(self.code, plan.nbytes)])
        self.fua = array("b", [1 if op == WRITE and f & (F_FUA | F_PREFLUSH) else 0
                               for op, f in zip(issued, plan.flags)]) if write_enable else array("b", bytes(n))
        self.read_buffer = Buffer(_largest(self.code, plan.nbytes, OP_READ))
        self.write_buffer = Buffer(_largest(self.code, plan.nbytes, OP_WRITE))
        addr = {OP_READ: self.read_buffer.addr, OP_WRITE: self.write_buffer.addr}
        self.buf = array("q", [addr.get(c, 0) for c in self.code])
        self.probe = None  # (fd, offset, buffer): a read at the end of a target, which the kernel ends at once
        if n:
            fd = fds[plan.target[0]]
            end = os.lseek(fd, 0, os.SEEK_END)
            self.probe = (fd, end, self.read_buffer.addr)

    def __len__(self):
        return len(self.code)

    def view(self, k):
        """The memory of IO ``k`` (for engines that need a Python buffer rather than an address)."""
        buf = self.read_buffer if self.code[k] == OP_READ else self.write_buffer
        return buf.view[: self.nbytes[k]]


_CODE = {READ: OP_READ, WRITE: OP_WRITE, FLUSH: OP_FLUSH}


def _issued(op, write_enable):
    if op == READ or op == WRITE and not write_enable:
        return READ
    if not write_enable:
        return -1
    return op if op in (WRITE, FLUSH, DISCARD, WRITE_ZEROES) else -1


def _largest(codes, sizes, code):
    return max((b for c, b in zip(codes, sizes) if c == code), default=0)

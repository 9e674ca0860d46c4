"""io_uring through ctypes onto io_uring_setup / io_uring_enter and the shared rings (no liburing needed).

Requests are submitted with one io_uring_enter per batch; completions are read from the CQ ring without a
system call and waited for with IORING_ENTER_GETEVENTS plus a timeout (IORING_ENTER_EXT_ARG, Linux 5.11+).
"""

import ctypes
import mmap
import os
import struct

from .base import EVENT, OP_FLUSH, OP_OF_CMD, OP_READ, IOEngine, check, event, libc

NR_SETUP, NR_ENTER = 425, 426  # the same on every architecture with the generic syscall table
OFF_SQ_RING, OFF_CQ_RING, OFF_SQES = 0, 0x8000000, 0x10000000
FEAT_SINGLE_MMAP, FEAT_EXT_ARG = 1 << 0, 1 << 8
ENTER_GETEVENTS, ENTER_EXT_ARG = 1 << 0, 1 << 3
OP_READ_CODE, OP_WRITE_CODE, OP_FSYNC_CODE = 22, 23, 3  # IORING_OP_READ, IORING_OP_WRITE, IORING_OP_FSYNC
FSYNC_DATASYNC = 1
SQE_ASYNC = 1 << 4  # IOSQE_ASYNC: straight to io-wq; a non-blocking first try that fails with EAGAIN would
# already have queued the bio once, so the kernel would see such IOs twice (seen on loop devices)
PARAMS = struct.Struct("=IIIIIII12x" + "IIIIIIIIQ" + "IIIIIIIIQ")
SQE = struct.Struct("=BBHiQQIIQHHiQQ")
CQE = struct.Struct("=QiI")


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_longlong), ("tv_nsec", ctypes.c_longlong)]


class _GetEventsArg(ctypes.Structure):
    _fields_ = [("sigmask", ctypes.c_ulonglong), ("sigmask_sz", ctypes.c_uint), ("pad", ctypes.c_uint),
                ("ts", ctypes.c_ulonglong)]


class UringEngine(IOEngine):
    name = "uring"

    def __init__(self, depth):
        super().__init__(depth)
        self._syscall = libc().syscall
        self._syscall.restype = ctypes.c_long
        params = ctypes.create_string_buffer(PARAMS.size)
        self._fd = check(self._syscall(ctypes.c_long(NR_SETUP), ctypes.c_ulong(depth), params), "io_uring_setup")
        f = PARAMS.unpack(params.raw)
        sq_entries, cq_entries, features = f[0], f[1], f[5]
        sq_head, sq_tail, sq_mask, _sq_n, _sq_flags, _dropped, sq_array = f[7:14]
        cq_head, cq_tail, cq_mask, _cq_n, _overflow, cqes = f[16:22]
        if not features & FEAT_EXT_ARG:
            self.close()
            raise OSError("io_uring without IORING_FEAT_EXT_ARG (Linux < 5.11)")
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        sq_size = sq_array + sq_entries * 4
        cq_size = cqes + cq_entries * CQE.size
        if features & FEAT_SINGLE_MMAP:
            sq_size = cq_size = max(sq_size, cq_size)
        self._sq = mmap.mmap(self._fd, sq_size, mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0), prot,
                             offset=OFF_SQ_RING)
        self._cq = self._sq if features & FEAT_SINGLE_MMAP else mmap.mmap(
            self._fd, cq_size, mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0), prot, offset=OFF_CQ_RING)
        self._sqes = mmap.mmap(self._fd, sq_entries * SQE.size, mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                               prot, offset=OFF_SQES)
        self._sq_tail_off, self._sq_head_off, self._sq_array_off = sq_tail, sq_head, sq_array
        self._sq_mask = struct.unpack_from("=I", self._sq, sq_mask)[0]
        self._cq_head_off, self._cq_tail_off, self._cqes_off = cq_head, cq_tail, cqes
        self._cq_mask = struct.unpack_from("=I", self._cq, cq_mask)[0]
        self._tail = struct.unpack_from("=I", self._sq, sq_tail)[0]
        self._to_submit = 0
        self._inflight = 0
        self._arg = _GetEventsArg()
        self._ts = _Timespec()
        self._arg.ts = ctypes.addressof(self._ts)

    def _queue(self, k):
        index = self._tail & self._sq_mask
        cmd, fd, offset, nbytes, buf, rw_flags = self.slot_io(k)
        code = OP_OF_CMD[cmd]
        if code == OP_READ:
            opcode, rw_flags = OP_READ_CODE, 0
        elif code == OP_FLUSH:
            opcode, rw_flags = OP_FSYNC_CODE, FSYNC_DATASYNC
        else:
            opcode = OP_WRITE_CODE
        SQE.pack_into(self._sqes, index * SQE.size, opcode, SQE_ASYNC, 0, fd, offset, buf, nbytes, rw_flags, k, 0, 0,
                      0, 0, 0)
        struct.pack_into("=I", self._sq, self._sq_array_off + index * 4, index)
        self._tail = (self._tail + 1) & 0xFFFFFFFF
        self._to_submit += 1

    def _enter(self, to_submit, min_complete, flags, timeout_ns=None):
        # Every argument as a full register: a bare int would leave the upper half of a 64-bit argument
        # (argsz is a size_t) undefined, and the kernel then says EINVAL.
        c = ctypes.c_ulong
        if timeout_ns is None:
            return self._syscall(ctypes.c_long(NR_ENTER), c(self._fd), c(to_submit), c(min_complete), c(flags),
                                 None, c(0))
        self._ts.tv_sec, self._ts.tv_nsec = divmod(timeout_ns, 1_000_000_000)
        return self._syscall(ctypes.c_long(NR_ENTER), c(self._fd), c(to_submit), c(min_complete),
                             c(flags | ENTER_EXT_ARG), ctypes.byref(self._arg), c(ctypes.sizeof(self._arg)))

    def submit(self, i, j):
        for k in range(i + self._to_submit, j):  # entries left in the ring by a refused call go first
            self._queue(k)
        if not self._to_submit:
            return 0
        struct.pack_into("=I", self._sq, self._sq_tail_off, self._tail)
        ret = self._enter(self._to_submit, 0, 0)
        if ret < 0:
            if ctypes.get_errno() in (11, 4, 16):  # EAGAIN, EINTR, EBUSY: stays queued in the ring
                return 0
            check(ret, "io_uring_enter")
        self._to_submit -= ret
        self._inflight += ret
        return ret

    def _drain(self):
        cq = self._cq
        head = struct.unpack_from("=I", cq, self._cq_head_off)[0]
        tail = struct.unpack_from("=I", cq, self._cq_tail_off)[0]
        out = []
        mask, base = self._cq_mask, self._cqes_off
        while head != tail:
            tag, res, _flags = CQE.unpack_from(cq, base + (head & mask) * CQE.size)
            out.append(event(tag, res))
            head = (head + 1) & 0xFFFFFFFF
        if out:
            struct.pack_into("=I", cq, self._cq_head_off, head)
            self._inflight -= len(out)
        return b"".join(out)

    def reap(self, min_nr, timeout_ns):
        out = self.take_done() + self._drain()
        got = len(out) // EVENT.size
        if got >= min_nr or timeout_ns == 0 or not self._inflight:
            return out
        ret = self._enter(0, min(min_nr - got, self._inflight), ENTER_GETEVENTS, timeout_ns)
        if ret < 0 and ctypes.get_errno() not in (62, 4, 16):  # ETIME, EINTR, EBUSY
            check(ret, "io_uring_enter")
        return out + self._drain()

    def close(self):
        for m in ("_sqes", "_cq", "_sq"):
            ring = getattr(self, m, None)
            if ring is not None and not ring.closed:
                ring.close()
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1

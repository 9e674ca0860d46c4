"""Linux native AIO (io_setup / io_submit / io_getevents) through ctypes onto the system calls.

Completions are read straight from the kernel's user-visible completion ring when it is there (as fio's
``userspace_reap``), so polling costs no system call; ``io_getevents`` is used to wait.
"""

import ctypes
import platform
import struct
import time

from .base import OP_FLUSH, OP_READ, OP_WRITE, RQ_FUA, IOEngine, check, libc

_SYSCALLS = {  # io_setup, io_destroy, io_getevents, io_submit
    "x86_64": (206, 207, 208, 209),
    "aarch64": (0, 1, 4, 2),
    "arm64": (0, 1, 4, 2),
    "ppc64le": (227, 228, 229, 230),
    "s390x": (243, 244, 245, 246),
    "riscv64": (0, 1, 4, 2),
}
IOCB_CMD = {OP_READ: 0, OP_WRITE: 1, OP_FLUSH: 3}  # PREAD, PWRITE, FDSYNC
RWF_DSYNC = 0x2
# struct iocb (64 bytes, little-endian field order): data, key, rw_flags, opcode, reqprio, fildes, buf,
# nbytes, offset, reserved2, flags, resfd
IOCB = struct.Struct("=QIIHhIQQqQII")
EVENT = struct.Struct("=QQqq")  # data, obj, res, res2
RING_HEAD = struct.Struct("=IIIIIIII")  # id, nr, head, tail, magic, compat, incompat, header_length
AIO_RING_MAGIC = 0xA10A10A1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class AioEngine(IOEngine):
    name = "aio"

    def __init__(self, depth):
        super().__init__(depth)
        machine = platform.machine()
        if machine not in _SYSCALLS:
            raise OSError(f"Linux AIO system call numbers unknown for {machine}")
        self._nr_setup, self._nr_destroy, self._nr_getevents, self._nr_submit = _SYSCALLS[machine]
        self._syscall = libc().syscall
        self._syscall.restype = ctypes.c_long
        ctx = ctypes.c_ulong(0)
        check(self._syscall(ctypes.c_long(self._nr_setup), ctypes.c_ulong(depth), ctypes.byref(ctx)), "io_setup")
        self._ctx = ctx.value
        self._iocbs = ctypes.create_string_buffer(IOCB.size * depth)
        base = ctypes.addressof(self._iocbs)
        self._iocb_addr = [base + IOCB.size * i for i in range(depth)]
        self._ptrs = (ctypes.c_void_p * depth)()
        self._events = ctypes.create_string_buffer(EVENT.size * depth)
        self._pending = []  # iocb slot indexes queued, not yet submitted
        self._free = list(range(depth))
        self._tag_of = [0] * depth
        self._ts = _Timespec()
        self._ring = self._map_ring()

    def _map_ring(self):
        """A view of the kernel's completion ring (at the context address), or None if it is not usable."""
        head = (ctypes.c_char * RING_HEAD.size).from_address(self._ctx)
        _id, nr, _h, _t, magic, _c, incompat, hlen = RING_HEAD.unpack(bytes(head))
        if magic != AIO_RING_MAGIC or incompat != 0 or hlen != RING_HEAD.size:
            return None
        self._ring_nr = nr
        return (ctypes.c_char * (RING_HEAD.size + nr * EVENT.size)).from_address(self._ctx)

    def queue(self, tag, fd, op, offset, nbytes, buf, flags=0):
        slot = self._free.pop()
        rw_flags = RWF_DSYNC if flags & RQ_FUA else 0
        addr = buf.addr if buf else 0
        IOCB.pack_into(self._iocbs, IOCB.size * slot, slot, 0, rw_flags, IOCB_CMD[op], 0, fd, addr, nbytes, offset,
                       0, 0, 0)
        self._tag_of[slot] = tag
        self._pending.append(slot)

    def submit(self):
        pending = self._pending
        if not pending:
            return 0
        ptrs = self._ptrs
        addr = self._iocb_addr
        for i, slot in enumerate(pending):
            ptrs[i] = addr[slot]
        ret = self._syscall(ctypes.c_long(self._nr_submit), ctypes.c_ulong(self._ctx), ctypes.c_long(len(pending)),
                            ptrs)
        if ret < 0:
            if ctypes.get_errno() in (11, 4):  # EAGAIN, EINTR: nothing taken, stays queued
                return 0
            check(ret, "io_submit")
        self._pending = pending[ret:]  # what the kernel did not take is submitted next time
        return ret

    def _user_reap(self, limit):
        ring = self._ring
        nr = self._ring_nr
        head, tail = struct.unpack_from("=II", ring, 8)
        out = []
        while head != tail and len(out) < limit:
            slot, _obj, res, _res2 = EVENT.unpack_from(ring, RING_HEAD.size + head * EVENT.size)
            out.append((self._tag_of[slot], res))
            self._free.append(slot)
            head = (head + 1) % nr
        if out:
            struct.pack_into("=I", ring, 8, head)
        return out

    def reap(self, min_nr, timeout_ns):
        inflight = self.depth - len(self._free) - len(self._pending)
        if not inflight:
            if timeout_ns > 0:
                time.sleep(timeout_ns / 1e9)
            return []
        if self._ring is not None:
            out = self._user_reap(inflight)
            if len(out) >= min_nr or timeout_ns == 0:
                return out
            min_nr -= len(out)
        else:
            out = []
        ts = self._ts
        ts.tv_sec, ts.tv_nsec = divmod(max(timeout_ns, 0), 1_000_000_000)
        ret = self._syscall(ctypes.c_long(self._nr_getevents), ctypes.c_ulong(self._ctx),
                            ctypes.c_long(min(min_nr, inflight)), ctypes.c_long(inflight - len(out)), self._events,
                            ctypes.byref(ts))
        if ret < 0:
            if ctypes.get_errno() == 4:  # EINTR: a signal; the caller looks at its stop flag
                return out
            check(ret, "io_getevents")
        for i in range(ret):
            slot, _obj, res, _res2 = EVENT.unpack_from(self._events, i * EVENT.size)
            out.append((self._tag_of[slot], res))
            self._free.append(slot)
        return out

    def close(self):
        if self._ctx:
            self._syscall(ctypes.c_long(self._nr_destroy), ctypes.c_ulong(self._ctx))
            self._ctx = 0
            self._ring = None


def available():
    """True if io_setup works here (it fails in some containers or with aio-max-nr exhausted)."""
    try:
        AioEngine(1).close()
        return True
    except OSError:
        return False


"""Linux native AIO (io_setup / io_submit / io_getevents) through ctypes onto the system calls.

The iocbs are written ahead of time, a few array-slice assignments per chunk of IOs, into a ring of iocbs
whose pointer array never changes: submitting IOs ``i..j`` is one ``io_submit`` on a slice of that array,
whatever their number. Completions are read straight from the kernel's user-visible completion ring (as
fio's ``userspace_reap``), so polling costs no system call; ``io_getevents`` is used to wait.
"""

import ctypes
import platform
import struct
import sys
import time
from array import array

from .base import OP_FLUSH, OP_READ, OP_WRITE, RWF_DSYNC, IOEngine, check, libc

_SYSCALLS = {  # io_setup, io_destroy, io_getevents, io_submit
    "x86_64": (206, 207, 208, 209),
    "aarch64": (0, 1, 4, 2),
    "arm64": (0, 1, 4, 2),
    "ppc64le": (227, 228, 229, 230),
    "s390x": (243, 244, 245, 246),
    "riscv64": (0, 1, 4, 2),
}
IOCB_CMD = {OP_READ: 0, OP_WRITE: 1, OP_FLUSH: 3}  # PREAD, PWRITE, FDSYNC
IOCB_QWORDS = 8  # struct iocb: data; key+rw_flags; opcode+reqprio+fildes; buf; nbytes; offset; reserved2; flags+resfd
STAGE_MAX = 1 << 20  # iocbs written ahead at most (64 MiB); longer lists are written on as the ring is used
STAGE_CHUNK = 16384  # iocbs written per step while the worker waits, at most
STAGE_NS_PER_IO = 250  # what writing one costs, generously (measured 100-140 ns)
STAGE_URGENT = 256  # iocbs written per step when submit finds none ready (~30 µs)
EVENT = struct.Struct("=QQqq")  # data, obj, res, res2
RING_HEAD = struct.Struct("=IIIIIIII")  # id, nr, head, tail, magic, compat, incompat, header_length
AIO_RING_MAGIC = 0xA10A10A1
EAGAIN, EINTR = 11, 4
PROBE_DATA = (1 << 64) - 1  # aio_data of a probe (a late probe completion is dropped by reap)


def _op_fd(cmd, fd):
    """The iocb's third 64-bit word: opcode (u16), reqprio (s16), fildes (u32), in memory order."""
    return cmd | fd << 32 if sys.byteorder == "little" else cmd << 48 | fd


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class AioEngine(IOEngine):
    name = "aio"

    def __init__(self, depth):
        super().__init__(depth)
        machine = platform.machine()
        if machine not in _SYSCALLS:
            raise OSError(f"Linux AIO system call numbers unknown for {machine}")
        self._nr_setup, self._nr_destroy, self._nr_getevents, self._nr_submit = map(ctypes.c_long, _SYSCALLS[machine])
        self._syscall = libc().syscall
        self._syscall.restype = ctypes.c_long
        ctx = ctypes.c_ulong(0)
        check(self._syscall(self._nr_setup, ctypes.c_ulong(depth), ctypes.byref(ctx)), "io_setup")
        self._ctx = ctx.value
        self._c_ctx = ctypes.c_ulong(self._ctx)
        self._events = ctypes.create_string_buffer(EVENT.size * depth)
        self._ts = _Timespec()
        self._inflight = 0
        self._refused = []
        self._ring = self._map_ring()

    def _map_ring(self):
        """A view of the kernel's completion ring (at the context address), or None if it is not usable."""
        head = (ctypes.c_char * RING_HEAD.size).from_address(self._ctx)
        _id, nr, _h, _t, magic, _c, incompat, hlen = RING_HEAD.unpack(bytes(head))
        if magic != AIO_RING_MAGIC or incompat != 0 or hlen != RING_HEAD.size:
            return None
        self._ring_nr = nr
        return (ctypes.c_char * (RING_HEAD.size + nr * EVENT.size)).from_address(self._ctx)

    def bind(self, ios):
        super().bind(ios)
        self._cap = cap = max(1, min(len(ios), STAGE_MAX))
        self._iocbs = array("q", bytes(8 * IOCB_QWORDS * cap))
        base, step = self._iocbs.buffer_info()[0], 8 * IOCB_QWORDS
        self._ptrs = array("Q", range(base, base + step * cap, step))
        self._ptr_base = self._ptrs.buffer_info()[0]
        self._op_fd = array("q", [_op_fd(IOCB_CMD.get(c, 0), fd) for c, fd in zip(ios.code, ios.fd)])
        self._rw_flags = array("q", [RWF_DSYNC << 32 if f else 0 for f in ios.fua]) if any(ios.fua) else None
        self._probe = None
        if ios.probe is not None:
            fd, offset, addr = ios.probe
            self._probe = array("q", [-1, 0, _op_fd(IOCB_CMD[OP_READ], fd), addr, 4096, offset, 0, 0])
            self._probe_addr = array("Q", [self._probe.buffer_info()[0]])
            self._probe_ptr = ctypes.c_void_p(self._probe_addr.buffer_info()[0])
        self.rewind()

    def rewind(self):
        self._staged = self._next = 0
        self._stage(min(len(self.ios), self._cap))

    def _stage(self, upto):
        """Write the iocbs of IOs ``_staged .. upto - 1`` into their ring slots (free: ``upto <= _next + cap``)."""
        ios, cap, q = self.ios, self._cap, self._iocbs
        a = self._staged
        while a < upto:
            r = a % cap
            b = min(upto, a + cap - r)
            lo, hi = IOCB_QWORDS * r, IOCB_QWORDS * (r + b - a)
            q[lo:hi:IOCB_QWORDS] = array("q", range(a, b))  # aio_data: the IO's index
            if self._rw_flags is not None:
                q[lo + 1:hi:IOCB_QWORDS] = self._rw_flags[a:b]
            q[lo + 2:hi:IOCB_QWORDS] = self._op_fd[a:b]
            q[lo + 3:hi:IOCB_QWORDS] = ios.buf[a:b]
            q[lo + 4:hi:IOCB_QWORDS] = ios.nbytes[a:b]
            q[lo + 5:hi:IOCB_QWORDS] = ios.offset[a:b]
            a = b
        self._staged = upto

    def idle(self, budget_ns):
        if self._staged < len(self.ios):
            count = min(STAGE_CHUNK, budget_ns // STAGE_NS_PER_IO)
            self._stage(min(len(self.ios), self._next + self._cap, self._staged + count))

    def submit(self, i, j):
        if j > self._staged:
            self._stage(min(len(self.ios), i + self._cap, max(j, self._staged + STAGE_URGENT)))
        r = i % self._cap
        count = min(j - i, self._cap - r)  # up to the end of the ring; the caller sends the rest next
        ret = self._syscall(self._nr_submit, self._c_ctx, ctypes.c_long(count), ctypes.c_void_p(self._ptr_base + 8 * r))
        if ret < 0:
            err = ctypes.get_errno()
            if err in (EAGAIN, EINTR):  # nothing taken
                return 0
            self._refused.append((i, -err))  # the kernel refused IO i itself (e.g. EBADF): its result
            ret = 1
        self._inflight += ret
        self._next = i + ret
        return ret

    def probe(self):
        if self._inflight or self._probe is None:  # nothing in flight: the wait below can only end with it
            return
        ret = self._syscall(self._nr_submit, self._c_ctx, ctypes.c_long(1), self._probe_ptr)
        if ret == 1:
            ts = self._ts
            ts.tv_sec, ts.tv_nsec = 0, 1_000_000
            self._syscall(self._nr_getevents, self._c_ctx, ctypes.c_long(1), ctypes.c_long(1), self._events,
                          ctypes.byref(ts))

    def _user_reap(self):
        ring = self._ring
        head, tail = struct.unpack_from("=II", ring, 8)
        if head == tail:
            return []
        base, size = RING_HEAD.size, EVENT.size
        if head < tail:
            raw = ring[base + head * size:base + tail * size]
        else:
            raw = ring[base + head * size:base + self._ring_nr * size] + ring[base:base + tail * size]
        struct.pack_into("=I", ring, 8, tail)
        return [(data, res) for data, _obj, res, _res2 in EVENT.iter_unpack(raw) if data != PROBE_DATA]

    def reap(self, min_nr, timeout_ns):
        inflight = self._inflight
        if not inflight:
            if timeout_ns > 0:
                time.sleep(timeout_ns / 1e9)
            return []
        out = self._user_reap() if self._ring is not None else []
        if self._refused:
            out += self._refused
            self._refused = []
        if len(out) < min_nr and timeout_ns:
            left = inflight - len(out)
            ts = self._ts
            ts.tv_sec, ts.tv_nsec = divmod(max(timeout_ns, 0), 1_000_000_000)
            ret = self._syscall(self._nr_getevents, self._c_ctx, ctypes.c_long(min(min_nr - len(out), left)),
                                ctypes.c_long(left), self._events, ctypes.byref(ts))
            if ret < 0:
                if ctypes.get_errno() != EINTR:  # EINTR: a signal; the caller looks at its stop flag
                    check(ret, "io_getevents")
            elif ret:
                out += [(data, res) for data, _obj, res, _res2 in EVENT.iter_unpack(self._events[:ret * EVENT.size])
                        if data != PROBE_DATA]
        self._inflight -= len(out)
        return out

    def close(self):
        if self._ctx:
            self._syscall(self._nr_destroy, ctypes.c_ulong(self._ctx))
            self._ctx = 0
            self._ring = None


def available():
    """True if io_setup works here (it fails in some containers or with aio-max-nr exhausted)."""
    try:
        AioEngine(1).close()
        return True
    except OSError:
        return False

"""Linux native AIO (io_setup / io_submit / io_getevents) through ctypes onto the system calls.

The feeder writes the iocbs into the window, whose pointer array never changes: submitting IOs ``i..j`` is one
``io_submit`` on a slice of that array, whatever their number, and the worker does nothing per IO. Completions
are copied straight from the kernel's user-visible completion ring (as fio's ``userspace_reap``), so polling
costs no system call and no Python object per IO; ``io_getevents`` is used to wait.
"""

import ctypes
import platform
import struct
import time

from ..window import CMD_PREAD
from .base import EVENT, PROBE_DATA, IOEngine, check, event, libc

_SYSCALLS = {  # io_setup, io_destroy, io_getevents, io_submit
    "x86_64": (206, 207, 208, 209),
    "aarch64": (0, 1, 4, 2),
    "arm64": (0, 1, 4, 2),
    "ppc64le": (227, 228, 229, 230),
    "s390x": (243, 244, 245, 246),
    "riscv64": (0, 1, 4, 2),
}
RING_HEAD = struct.Struct("=IIIIIIII")  # id, nr, head, tail, magic, compat, incompat, header_length
AIO_RING_MAGIC = 0xA10A10A1
EAGAIN, EINTR = 11, 4
PROBE_BYTES = 4096


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
        self._probe_out = False  # a probe was sent and its event not seen yet
        self._ring = self._map_ring()
        self._ring_words = memoryview(self._ring).cast("B").cast("I") if self._ring is not None else None
        self._probe = None

    def _map_ring(self):
        """A view of the kernel's completion ring (at the context address), or None if it is not usable."""
        head = (ctypes.c_char * RING_HEAD.size).from_address(self._ctx)
        _id, nr, _h, _t, magic, _c, incompat, hlen = RING_HEAD.unpack(bytes(head))
        if magic != AIO_RING_MAGIC or incompat != 0 or hlen != RING_HEAD.size:
            return None
        self._ring_nr = nr
        return (ctypes.c_char * (RING_HEAD.size + nr * EVENT.size)).from_address(self._ctx)

    def bind(self, window, probe=None):
        super().bind(window, probe)
        self._ptr_base = window.ptr_base
        self._mask = window.mask
        if probe is not None:
            fd, offset = probe
            self._probe = (ctypes.c_longlong * 8)(-1, 0, CMD_PREAD | fd << 32, window.read_buffer, PROBE_BYTES,
                                                 offset, 0, 0)
            self._probe_ptr = (ctypes.c_void_p * 1)(ctypes.addressof(self._probe))

    def submit(self, i, j):
        ret = self._syscall(self._nr_submit, self._c_ctx, ctypes.c_long(j - i),
                            ctypes.c_void_p(self._ptr_base + 8 * (i & self._mask)))
        if ret < 0:
            err = ctypes.get_errno()
            if err in (EAGAIN, EINTR):  # nothing taken
                return 0
            self._done.append(event(i, -err))  # the kernel refused IO i itself (e.g. EBADF): its result
            return 1
        self._inflight += ret
        return ret

    def probe(self):
        if self._inflight or self._probe is None:  # nothing in flight: the wait below can only end with it
            return
        ret = self._syscall(self._nr_submit, self._c_ctx, ctypes.c_long(1), self._probe_ptr)
        if ret == 1:
            ts = self._ts
            ts.tv_sec, ts.tv_nsec = 0, 1_000_000
            got = self._syscall(self._nr_getevents, self._c_ctx, ctypes.c_long(1), ctypes.c_long(1), self._events,
                                ctypes.byref(ts))
            self._probe_out = got != 1

    def _user_reap(self):
        words = self._ring_words  # id, nr, head, tail, ...
        head, tail = words[2], words[3]
        if head == tail:
            return b""
        ring, base, size = self._ring, RING_HEAD.size, EVENT.size
        if head < tail:
            raw = ring[base + head * size:base + tail * size]
        else:
            raw = ring[base + head * size:base + self._ring_nr * size] + ring[base:base + tail * size]
        words[2] = tail
        return raw

    def reap(self, min_nr, timeout_ns):
        done = self.take_done() if self._done else b""
        if not self._inflight and not self._probe_out:
            if timeout_ns > 0 and not done:
                time.sleep(timeout_ns / 1e9)
            return done
        raw = self._user_reap() if self._ring is not None else b""
        got = len(raw) // EVENT.size
        if got < min_nr and timeout_ns and self._inflight > got:
            left = self._inflight - got
            ts = self._ts
            ts.tv_sec, ts.tv_nsec = divmod(max(timeout_ns, 0), 1_000_000_000)
            ret = self._syscall(self._nr_getevents, self._c_ctx, ctypes.c_long(min(min_nr - got, left)),
                                ctypes.c_long(left), self._events, ctypes.byref(ts))
            if ret < 0:
                if ctypes.get_errno() != EINTR:  # EINTR: a signal; the caller looks at its stop flag
                    check(ret, "io_getevents")
            elif ret:
                raw += self._events.raw[:ret * EVENT.size]
        if self._probe_out and raw:  # a late probe's event: not an IO
            kept = [e for e in EVENT.iter_unpack(raw) if e[0] != PROBE_DATA]
            if len(kept) * EVENT.size != len(raw):
                self._probe_out = False
                raw = b"".join(EVENT.pack(*e) for e in kept)
        self._inflight -= len(raw) // EVENT.size
        return done + raw if done else raw

    def close(self):
        if self._ctx:
            self._syscall(self._nr_destroy, ctypes.c_ulong(self._ctx))
            self._ctx = 0
            if self._ring_words is not None:
                self._ring_words.release()
            self._ring = self._ring_words = None


def available():
    """True if io_setup works here (it fails in some containers or with aio-max-nr exhausted)."""
    try:
        AioEngine(1).close()
        return True
    except OSError:
        return False

"""The look-ahead window of one worker: the IOs read ahead for it, in memory it shares with the parent.

The parent maps it (anonymous, MAP_SHARED) before forking the worker, so it lies at the same address in both and
the addresses written into it (iocbs, IO buffers) are valid in the worker. Three parties use it, each writing
only its own fields:

- the feeder (in the parent) reads the replay files and writes IOs into free slots, as ready-to-submit Linux
  AIO iocbs plus their due times, then publishes ``FED``;
- the worker submits slot ranges straight from there (one ``io_submit`` on the fixed pointer array, however
  many IOs), stamps each IO's submit time, and copies the completion events it reaps, as the kernel wrote
  them, into the completion log, their completion time stamped over a field it does not need;
- the collector (in the parent) folds the IOs submitted (below ``ISSUED``) and those completed (the completion
  log) into the streaming summaries, and publishes ``FREED``: every slot below it may be written again.

IO ``k`` (an absolute count from the first IO of the replay, over all iterations) lives in slot ``k & mask``.
The window never holds more than its ``capacity`` of IOs, nor IOs due more than ``WINDOW_NS`` after the
worker's current time (the feeder stops there), and its size in bytes is fixed when it is made (``size_bytes``).

Cursors are 8-byte aligned words, each written by one party only, always after the data they publish. That
order is what x86-64 (TSO) guarantees another CPU sees; the parent and worker also exchange pipe messages at
every phase change, which are full barriers.
"""

import ctypes
import mmap
from array import array

WINDOW_IOS = 1 << 16  # IOs a window holds at most, by default (sizing.window_ios: more for a fast trace; --window-ios)
MIN_WINDOW_IOS, MAX_WINDOW_IOS = 1 << 6, 1 << 22
WINDOW_NS = 2_000_000_000  # and at most this far ahead of the worker's time
MAX_IO_BYTES = 1 << 32  # larger than any IO (a u32 length): the IO buffers reserve this much address space
PREFAULT_MAX = 16 << 20  # a worker touches at most this much of each IO buffer before the start
SMALL_IO_BYTES = 256 << 20  # where address space is not overcommitted (vm.overcommit_memory 2): this much
MAP_NORESERVE = 0x4000  # Linux (x86, arm, powerpc, s390, riscv): reserve no swap for address space never used

# struct iocb (include/uapi/linux/aio_abi.h), 8 words: data; key | rw_flags << 32; opcode | reqprio << 16 |
# fildes << 32; buf; nbytes; offset; reserved2; flags | resfd << 32 (little-endian word order).
IOCB_WORDS = 8
W_DATA, W_RW_FLAGS, W_OP_FD, W_BUF, W_NBYTES, W_OFFSET = 0, 1, 2, 3, 4, 5
CMD_PREAD, CMD_PWRITE, CMD_FDSYNC = 0, 1, 3  # IOCB_CMD_*
CMD_SPECIAL = 0xFF  # not an AIO command: a discard or write-zeroes the worker runs as an ioctl (``special``)

# Completion log: a ring of struct io_event {data (the IO's index), obj (the worker puts the completion time
# there: ns after the iteration's start), res (bytes or -errno), res2}.
EVENT_BYTES = 32
LOG_SPARE = 64  # events beyond the window's IOs (the log can hold every IO of the window, and then some)

# Control words.
FED = 0  # feeder: IOs written (absolute)
END = 1  # feeder: index after the current iteration's last IO; NOT_YET until the feeder reached the end
FREED = 2  # collector: slots below this index are folded and free
ISSUED = 3  # worker: IOs it has submitted (its next index)
SPECIALS = 4  # feeder: entries written to the special-IO list (absolute)
LOG_HEAD = 5  # worker: events written to the completion log (absolute)
LOG_TAIL = 6  # collector: events read from the completion log (absolute)
STALLS = 7  # worker: times its window ran dry before the iteration's end while an IO could be due
STALL_NS = 8  # worker: time spent so
LOG_FULL = 9  # worker: times the completion log had no room (events kept until it had; see LogWriter)
LEAD = 10  # feeder: every IO due up to this time (ns after the iteration's start) is in the window
THINK_OFFSET = 11  # worker, dependency mode: ns it takes off each recorded think time (its own overhead)
BATCHED = 12  # worker, timed mode with the automatic batch window: 100 ms windows it batched in
CONTROL_WORDS = 16
NOT_YET = (1 << 63) - 1


# The load and dependency modes' columns (``ordered``): what the worker decides each IO's moment from.
PARENTS = 8  # completion parents a slot holds; an IO's farther ones become a watermark (``need``)
NO_IO = -1  # ``fin`` of a slot none of whose IOs completed yet


def _layout(capacity, ordered=False):
    """(column, array code, items) of a window of ``capacity`` IOs, in memory order."""
    cols = [("iocb", "q", capacity * IOCB_WORDS), ("ptr", "Q", capacity), ("due", "q", capacity),
            ("submit", "q", capacity), ("special", "q", capacity), ("target", "H", capacity),
            ("op", "B", capacity), ("control", "q", CONTROL_WORDS), ("log", "B", (capacity + LOG_SPARE) * EVENT_BYTES)]
    if ordered:
        cols += [("parents", "q", capacity * PARENTS), ("nparents", "B", capacity), ("need", "q", capacity),
                 ("think", "q", capacity), ("limit", "I", capacity), ("fin", "q", capacity),
                 ("fin_time", "q", capacity), ("depth", "H", capacity)]
    return cols


def size_of(capacity, ordered=False):
    """Bytes of shared memory a window of ``capacity`` IOs takes (each column rounded up to whole pages)."""
    return sum(-(-count * array(code).itemsize // mmap.PAGESIZE) * mmap.PAGESIZE for _n, code, count in
               _layout(capacity, ordered))


class Window:
    """One worker's window; see the module docstring. Columns are memoryviews of ``capacity`` items:

    @iocb: 8 words per slot (the iocbs), @ptr: the address of each slot's iocb (fixed; io_submit's array),
    @due: ns after the iteration's start, @submit: when the worker submitted it (same base), @target: index
    of the target, @op: the replay operation done (replayfile.ops), @special: absolute indexes of the
    discards and write-zeroes (they need an ioctl), @control: the cursors above, @log: the completion log;
    @read_buffer / @write_buffer: addresses of the IO memory (all reads land in one, all writes come from the
    other: the data does not matter to a replay).

    With ``ordered`` (the load and dependency modes), also, written by the feeder: @parents (PARENTS absolute
    indexes per slot: the completion parents it must wait for), @nparents, @need (every IO below this index must
    have completed: the parents beyond PARENTS), @think (ns after its latest parent's completion), @limit (IOs
    of its device in flight when it was recorded, itself included); by the worker: @fin (the index of the
    latest IO of the slot that completed; NO_IO), @fin_time (when), @depth (IOs of its device in flight once
    it was submitted, itself included)."""

    def __init__(self, capacity=WINDOW_IOS, io_bytes=MAX_IO_BYTES, ordered=False):
        if capacity & (capacity - 1):
            raise ValueError("the window capacity must be a power of two")
        self.capacity = capacity
        self.mask = capacity - 1
        self.log_events = capacity + LOG_SPARE
        self.ordered = ordered
        layout = _layout(capacity, ordered)
        offsets, size = {}, 0
        for name, code, count in layout:
            offsets[name] = size
            size += -(-count * array(code).itemsize // mmap.PAGESIZE) * mmap.PAGESIZE
        self.size_bytes = size
        self.mem = mmap.mmap(-1, size, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        view = memoryview(self.mem)
        for name, code, count in layout:
            start = offsets[name]
            setattr(self, name, view[start:start + count * array(code).itemsize].cast(code))
        step = IOCB_WORDS * 8
        first = self.base + offsets["iocb"]
        self.ptr[:] = array("Q", range(first, first + step * capacity, step))
        self.ptr_base = self.base + offsets["ptr"]
        self.control[END] = NOT_YET
        if ordered:
            self.fin[:] = array("q", (NO_IO,)) * capacity
        self.kinds = set()  # the parent's own: (target, op) of the IOs the feeder wrote
        self.one_size = None  # and the size of every one of them when they are all reads and writes of one (else 0)
        # The IO buffers: address space reserved in the parent, untouched (no memory used); each worker
        # touches what its IOs need (Window.prefault), in its own copy.
        try:
            self.buffers = mmap.mmap(-1, 2 * io_bytes, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE)
        except OSError:
            io_bytes = min(io_bytes, SMALL_IO_BYTES)
            self.buffers = mmap.mmap(-1, 2 * io_bytes, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE)
        self.read_buffer = ctypes.addressof(ctypes.c_char.from_buffer(self.buffers))
        self.write_buffer = self.read_buffer + io_bytes
        self.io_bytes = io_bytes

    def prefault(self, read_bytes, write_bytes):
        """Touch the first bytes of the IO buffers (in the calling process; at most PREFAULT_MAX each), so IOs
        up to that size pay no page fault."""
        page = mmap.PAGESIZE
        for base, nbytes in ((0, read_bytes), (self.io_bytes, write_bytes)):
            n = min(max(nbytes, page), self.io_bytes, PREFAULT_MAX)
            self.buffers[base:base + n:page] = bytes(-(-n // page))

    def slots(self, first, last):
        """The slot ranges holding IOs ``first .. last - 1`` (absolute): one, or two when they wrap."""
        a, b = first & self.mask, ((last - 1) & self.mask) + 1
        if last - first <= 0:
            return []
        if a < b and last - first <= self.capacity:
            return [(a, b, first)]
        return [(a, self.capacity, first), (0, b, first + self.capacity - a)]

    def field(self, word):
        """A strided view of one iocb word over all slots (e.g. W_NBYTES)."""
        return self.iocb[word::IOCB_WORDS]

    def close(self):
        for name, _code, _count in _layout(self.capacity, self.ordered):
            view = getattr(self, name, None)
            if view is not None:
                view.release()
        try:
            self.mem.close()
            self.buffers.close()
        except BufferError:  # a view is still held (by a traceback being raised): unmapped when it goes
            pass


class LogWriter:
    """The worker's end of the completion log: ``put(time, events)`` appends events (bytes of struct io_event) and
    stamps each with the completion time in its ``obj`` field. The log holds ``log_events`` events, more than
    the window's IOs: an event is only read once, and its slot only written again after it was, so the log
    cannot fill. (Should it ever, events would wait here, in @pending, counted in LOG_FULL.) The load and
    dependency modes append their completions to @pending themselves and ``flush`` before they wait (or once a
    few dozen are held), so that a completion's dependent IO goes out first."""

    def __init__(self, window):
        self.w = window
        self.ctl = window.control
        self.log = window.log
        self.words = window.log.cast("q")
        self.size = window.log_events
        self.head = window.control[LOG_HEAD]
        self.pending = []

    def put(self, time, events):
        if self.pending or not self._put(time, events):
            self.pending.append((time, events))
            self.ctl[LOG_FULL] += 1
            self.flush()

    def flush(self):
        while self.pending and self._put(*self.pending[0]):
            self.pending.pop(0)
        return not self.pending

    def _put(self, time, events):
        n = len(events) // EVENT_BYTES
        head, size = self.head, self.size
        if head + n - self.ctl[LOG_TAIL] > size:
            return False
        pos = head % size
        first = min(n, size - pos)
        self.log[pos * EVENT_BYTES:(pos + first) * EVENT_BYTES] = events[:first * EVENT_BYTES]
        self.words[pos * 4 + 1:(pos + first) * 4:4] = array("q", (time,)) * first
        if first < n:
            self.log[:(n - first) * EVENT_BYTES] = events[first * EVENT_BYTES:]
            self.words[1:(n - first) * 4:4] = array("q", (time,)) * (n - first)
        self.head = head + n
        self.ctl[LOG_HEAD] = self.head
        return True


def read_log(window, tail, most=None):
    """The collector's end: the events from ``tail`` (an absolute count) to the worker's head (at most ``most``
    of them), as one ``array('q')`` of 4 words per event (data: the IO's index; obj: its completion time; res;
    res2), and the new tail (to publish in LOG_TAIL once the events are used)."""
    size = window.log_events
    head = window.control[LOG_HEAD]
    if most is not None:
        head = min(head, tail + most)
    out = array("q")
    if head > tail:
        pos, n = tail % size, head - tail
        first = min(n, size - pos)
        out.frombytes(window.log[pos * EVENT_BYTES:(pos + first) * EVENT_BYTES])
        if first < n:
            out.frombytes(window.log[:(n - first) * EVENT_BYTES])
    return out, head

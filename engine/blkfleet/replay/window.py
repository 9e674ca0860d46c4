"""The look-ahead window of one worker: the IOs read ahead for it, in memory it shares with the parent.

The parent maps it (anonymous, MAP_SHARED) before forking the worker, so it lies at the same address in both and
the addresses written into it (iocbs, IO buffers) are valid in the worker. Three parties use it, each writing
only its own fields:

- the feeder (in the parent) reads the replay files and writes IOs into free slots, as ready-to-submit Linux
  AIO iocbs plus their due times, then publishes ``FED``;
- the worker submits slot ranges straight from there (one ``io_submit`` on the fixed pointer array, however
  many IOs), stamps each IO's submit time, and copies the completion events it reaps, as the kernel wrote
  them, into the completion log, with one completion time per reap;
- the collector (in the parent) reads the completion log, folds each IO into the streaming summaries, and
  publishes ``FREED``: every slot below it may be written again.

IO ``k`` (an absolute count from the first IO of the replay, over all iterations) lives in slot ``k & mask``.
The window never holds more than ``WINDOW_IOS`` IOs, nor IOs due more than ``WINDOW_NS`` after the worker's
current time (the feeder stops there), and its size in bytes is fixed when it is made (``size_bytes``).

Cursors are 8-byte aligned words, each written by one party only, always after the data they publish. That
order is what x86-64 (TSO) guarantees another CPU sees; the parent and worker also exchange pipe messages at
every phase change, which are full barriers.
"""

import ctypes
import mmap
from array import array

WINDOW_IOS = 1 << 16  # IOs in a window at most (a power of two; --window-ios)
MIN_WINDOW_IOS, MAX_WINDOW_IOS = 1 << 6, 1 << 22
WINDOW_NS = 2_000_000_000  # and at most this far ahead of the worker's time
LOG_BYTES_PER_IO = 16  # completion log: this much per IO of the window (its events wait in the worker if full)
MIN_LOG_BYTES = 1 << 16
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

# Completion log records: {count (i64), completion time (i64, ns after the iteration's start)} then ``count``
# events {data (the IO's index), obj, res (bytes or -errno), res2} as struct io_event; count -1: wrap to 0.
EVENT_BYTES = 32
RECORD_HEAD = 16
WRAP = -1

# Control words.
FED = 0  # feeder: IOs written (absolute)
END = 1  # feeder: index after the current iteration's last IO; NOT_YET until the feeder reached the end
FREED = 2  # collector: slots below this index are folded and free
ISSUED = 3  # worker: IOs it has submitted (its next index)
SPECIALS = 4  # feeder: entries written to the special-IO list (absolute)
LOG_HEAD = 5  # worker: bytes written to the completion log (absolute)
LOG_TAIL = 6  # collector: bytes read from the completion log (absolute)
STALLS = 7  # worker: times it found no IO left in the window before the iteration's end
STALL_NS = 8  # worker: time spent so
LOG_FULL = 9  # worker: times the completion log had no room (events kept until it had)
LEAD = 10  # feeder: every IO due up to this time (ns after the iteration's start) is in the window
CONTROL_WORDS = 16
NOT_YET = (1 << 63) - 1


class Window:
    """One worker's window; see the module docstring. Columns are memoryviews of ``capacity`` items:

    @iocb: 8 words per slot (the iocbs), @ptr: the address of each slot's iocb (fixed; io_submit's array),
    @due: ns after the iteration's start, @submit: when the worker submitted it (same base), @target: index
    of the target, @op: the replay operation done (replayfile.ops), @special: absolute indexes of the
    discards and write-zeroes (they need an ioctl), @control: the cursors above, @log: the completion log;
    @read_buffer / @write_buffer: addresses of the IO memory (all reads land in one, all writes come from the
    other: the data does not matter to a replay)."""

    def __init__(self, capacity=WINDOW_IOS, log_bytes=None, io_bytes=MAX_IO_BYTES):
        if capacity & (capacity - 1):
            raise ValueError("the window capacity must be a power of two")
        self.capacity = capacity
        self.mask = capacity - 1
        log_bytes = log_bytes or max(MIN_LOG_BYTES, capacity * LOG_BYTES_PER_IO)
        self.log_bytes = log_bytes
        layout = [("iocb", "q", capacity * IOCB_WORDS), ("ptr", "Q", capacity), ("due", "q", capacity),
                  ("submit", "q", capacity), ("special", "q", capacity), ("target", "H", capacity),
                  ("op", "B", capacity), ("control", "q", CONTROL_WORDS), ("log", "B", log_bytes)]
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
        self.log_words = memoryview(self.mem)[offsets["log"]:offsets["log"] + log_bytes].cast("q")
        step = IOCB_WORDS * 8
        first = self.base + offsets["iocb"]
        self.ptr[:] = array("Q", range(first, first + step * capacity, step))
        self.ptr_base = self.base + offsets["ptr"]
        self.control[END] = NOT_YET
        self.kinds = set()  # the parent's own: (target, op) of the IOs the feeder wrote
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
        for name in ("iocb", "ptr", "due", "submit", "special", "target", "op", "control", "log", "log_words"):
            view = getattr(self, name, None)
            if view is not None:
                view.release()
        self.mem.close()
        self.buffers.close()


class LogWriter:
    """The worker's end of the completion log: ``put(time, events)`` appends a record (``events``: bytes of
    struct io_event); when the collector has left no room, records wait here (@pending) and the time is
    counted in LOG_FULL. ``flush()`` retries them; ``pending`` is empty once all are in."""

    def __init__(self, window):
        self.w = window
        self.words = window.log_words
        self.head = window.control[LOG_HEAD]
        self.pending = []

    def put(self, time, events):
        if self.pending:
            self.pending.append((time, events))
            self.flush()
        elif not self._put(time, events):
            self.pending.append((time, events))
            self.w.control[LOG_FULL] += 1

    def flush(self):
        while self.pending and self._put(*self.pending[0]):
            self.pending.pop(0)
        return not self.pending

    def _put(self, time, events):
        w = self.w
        size = w.log_bytes
        need = RECORD_HEAD + len(events)
        head = self.head
        pos = head % size
        room = size - (head - w.control[LOG_TAIL])
        if pos + need > size:  # no room before the end: a wrap mark, then from the start
            if room < size - pos + need:
                return False
            self.words[pos >> 3] = WRAP
            head += size - pos
            pos = 0
        elif room < need:
            return False
        self.words[pos >> 3] = len(events) // EVENT_BYTES
        self.words[(pos >> 3) + 1] = time
        w.log[pos + RECORD_HEAD:pos + need] = events
        self.head = head + need
        w.control[LOG_HEAD] = self.head
        return True


def read_log(window, tail):
    """The collector's end: [(time, events bytes)] of the records from byte ``tail`` (absolute) to the worker's
    head, and the new tail (to publish in LOG_TAIL once the events are used)."""
    size = window.log_bytes
    head = window.control[LOG_HEAD]
    words = window.log_words
    out = []
    while tail < head:
        pos = tail % size
        count = words[pos >> 3]
        if count == WRAP:
            tail += size - pos
            continue
        end = pos + RECORD_HEAD + count * EVENT_BYTES
        out.append((words[(pos >> 3) + 1], window.log[pos + RECORD_HEAD:end].tobytes()))
        tail += end - pos
    return out, tail

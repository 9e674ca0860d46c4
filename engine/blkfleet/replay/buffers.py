"""Page-aligned IO buffers for O_DIRECT, one per in-flight slot, grown on demand and reused."""

import ctypes
import mmap


class Buffer:
    __slots__ = ("map", "addr", "size", "view")

    def __init__(self, size):
        self.size = max(mmap.PAGESIZE, -(-size // mmap.PAGESIZE) * mmap.PAGESIZE)
        self.map = mmap.mmap(-1, self.size)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.view = memoryview(self.map)


class BufferPool:
    """``get(slot, nbytes)``: the slot's buffer, at least ``nbytes`` long (anonymous memory reads as zeros)."""

    def __init__(self, slots):
        self._bufs = [None] * slots

    def prepare(self, slots, nbytes, budget=64 << 20):
        """Allocate and touch the first ``slots`` buffers before the replay starts (within ``budget`` bytes), so
        the first IOs do not pay for mmap and page faults."""
        count = min(slots, len(self._bufs), max(1, budget // max(nbytes, 1)))
        for slot in range(count):
            buf = self.get(slot, nbytes)
            buf.map.write(bytes(buf.size))
            buf.map.seek(0)

    def get(self, slot, nbytes):
        buf = self._bufs[slot]
        if buf is None or buf.size < nbytes:
            buf = self._bufs[slot] = Buffer(nbytes)
        return buf

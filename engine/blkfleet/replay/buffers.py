"""Page-aligned, pre-faulted IO memory for O_DIRECT."""

import ctypes
import mmap


class Buffer:
    """``size`` bytes (at least a page) of anonymous memory, touched so the first IO pays no page fault."""

    __slots__ = ("map", "addr", "size", "view")

    def __init__(self, size):
        self.size = max(mmap.PAGESIZE, -(-size // mmap.PAGESIZE) * mmap.PAGESIZE)
        self.map = mmap.mmap(-1, self.size)
        self.map.write(bytes(self.size))
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.view = memoryview(self.map)

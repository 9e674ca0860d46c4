"""Replay files: btrecord's format (``compat``) and blkfleet's native format, one reader interface."""

from ..errors import TraceFormatError
from ..files import open_file
from . import compat, native
from .reader import IOChunk

__all__ = ["IOChunk", "compat", "iter_ios", "native", "open_replay"]


def open_replay(path, timing=False):
    """Open a replay file of either format, detected from its first bytes. ``timing``: its chunks carry the IOs'
    recorded timing, where the file has it (native version 2; decoding it costs about 1.5 µs per IO)."""
    with open_file(path) as f:
        head = f.read(8)
    if head == native.MAGIC:
        reader = native.NativeReader(path)
        reader.decode_timing = timing
        return reader
    if len(head) == 8 and int.from_bytes(head, "little") == compat.VERSION:
        return compat.BtrecordReader(path)
    raise TraceFormatError(path, 0, "not a replay file (neither blkfleet native nor btrecord format)")


def iter_ios(reader):
    """Yield (time, sector, nbytes, op, flags) for every IO of an open replay file, in file order.

    btrecord files carry one time per bunch: every IO of a bunch gets that time, reads and writes only.
    ``reader.chunks()`` gives the same as columns of many IOs at once (IOChunk).
    """
    for chunk in reader.chunks():
        yield from chunk

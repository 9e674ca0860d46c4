"""The transforms, each on whole chunks of one stream of IOs, in the order they are applied:

1. time: t' = T0 + offset + (t - first) / rate, where T0 is the earliest first IO of all inputs, ``first`` this
   input's first IO, ``offset`` and ``rate`` its start offset and rate factor (1 input, no options: t' = t);
2. window: IOs with T0 + from <= t' < T0 + to are kept;
3. operations: IOs of the skipped operations are left out;
4. LBA: offset + shift, then x scale (rounded down to the alignment unit), then wrap-around into the target
   size, then alignment of offset (down) and end (up) to the logical block size;
5. time scale: t'' = T0 + (t' - T0) x time_scale.

Wrap-around keeps alignment: the offset is taken modulo the target size rounded down to a multiple of the
alignment unit (4 KiB, or the logical block size if larger), so an IO aligned to 4 KiB or less stays aligned;
an IO that then crosses the end of the target is moved back to end at it (its start rounded down to the unit).
Flushes (no data) keep offset 0.
"""

from array import array
from bisect import bisect_left
from itertools import repeat
from operator import add

from ..errors import BlkfleetError
from ..replayfile.ops import FLUSH
from ..streams import chunks as ch

WRAP_UNIT = 4096
SECTOR = 512


class Plan:
    """What to do to every IO (the options of transform), and the counts of what was done.

    @t0: the mix's start (ns), @window: (from, to) ns after t0 or None each, @skip: ops left out (a set),
    @shift, @scale, @wrap, @align: LBA steps (bytes; scale a factor; None when not asked),
    @time_scale: factor (1: none)."""

    def __init__(self, window=(None, None), skip=(), shift=0, scale=None, wrap=None, align=None, time_scale=1.0):
        self.t0 = 0
        self.window, self.skip = window, frozenset(skip)
        self.shift, self.scale, self.wrap, self.align = shift, scale, wrap, align
        self.time_scale = time_scale
        self.unit = max(WRAP_UNIT, align or 0)
        self.counts = {"ios_in": 0, "ios_out": 0, "outside_window": 0, "skipped_ops": 0, "wrapped": 0,
                       "moved_from_end": 0, "aligned": 0}

    @property
    def touches_lba(self):
        return bool(self.shift) or self.scale is not None or self.wrap is not None or self.align is not None

    def apply(self, chunk, first, offset, rate, where):
        """The chunk of one input stream (``first``, ``offset``, ``rate``: its time map) transformed."""
        c = self.counts
        c["ios_in"] += len(chunk)
        chunk = self._time_map(chunk, first, offset, rate, where)
        chunk = self._window(chunk)
        if self.skip and set(chunk.ops) & self.skip:
            keep = bytes(0 if o in self.skip else 1 for o in chunk.ops)
            c["skipped_ops"] += keep.count(0)
            chunk = ch.keep(chunk, keep)
        if len(chunk) and self.touches_lba:
            chunk = self._lba(chunk, where)
        if len(chunk) and self.time_scale != 1:
            t0, f = self.t0, self.time_scale
            chunk = ch.with_columns(chunk, times=_q([t0 + round((t - t0) * f) for t in chunk.times], where, TIMES))
        c["ios_out"] += len(chunk)
        return chunk

    def _time_map(self, chunk, first, offset, rate, where):
        base = self.t0 + offset
        if rate == 1:
            if base == first:
                return chunk
            delta = base - first
            return ch.with_columns(chunk, times=_q(map(add, chunk.times, repeat(delta)), where, TIMES))
        return ch.with_columns(chunk, times=_q([base + round((t - first) / rate) for t in chunk.times], where, TIMES))

    def _window(self, chunk):
        lo, hi = self.window
        if lo is None and hi is None:
            return chunk
        times = chunk.times
        start = bisect_left(times, self.t0 + lo) if lo is not None else 0
        stop = bisect_left(times, self.t0 + hi) if hi is not None else len(times)
        stop = max(start, stop)
        self.counts["outside_window"] += len(times) - (stop - start)
        return ch.cut(chunk, start, stop) if (start, stop) != (0, len(times)) else chunk

    def _lba(self, chunk, where):
        offsets = [s * SECTOR for s in chunk.sectors]
        sizes = list(chunk.nbytes)
        data = [o != FLUSH for o in chunk.ops]
        if self.shift:
            offsets = [o + self.shift if d else o for o, d in zip(offsets, data)]
            if min(offsets) < 0:
                raise BlkfleetError(f"{where}: --shift {self.shift} moves an IO before the start of the device "
                                    f"(offset {min(offsets)})")
        if self.scale is not None:
            unit = self.align or SECTOR
            offsets = [int(o * self.scale) // unit * unit if d else o for o, d in zip(offsets, data)]
        if self.wrap is not None:
            offsets = self._wrapped(offsets, sizes, data, where)
        if self.align is not None:
            offsets, sizes = self._aligned(offsets, sizes, data)
        if max(sizes) > 0xFFFFFFFF:
            raise BlkfleetError(f"{where}: an IO grew beyond 2^32 - 1 bytes")
        return ch.with_columns(chunk, sectors=_q([o // SECTOR for o in offsets], where, "an offset"),
                               nbytes=_q(sizes, where, "a size"))

    def _wrapped(self, offsets, sizes, data, where):
        size, unit = self.wrap, self.unit
        span = size // unit * unit
        if not span:
            raise BlkfleetError(f"--wrap {size}: the target must hold at least {unit} bytes")
        out = []
        wrapped = moved = 0
        for o, n, d in zip(offsets, sizes, data):
            if not d:
                out.append(o)
                continue
            if n > size:
                raise BlkfleetError(f"{where}: an IO of {n} bytes cannot fit a target of {size} bytes (--wrap)")
            w = o % span
            if w + n > size:
                w = (size - n) // unit * unit
                moved += 1
            if w != o:
                wrapped += 1
            out.append(w)
        self.counts["wrapped"] += wrapped
        self.counts["moved_from_end"] += moved
        return out

    def _aligned(self, offsets, sizes, data):
        b = self.align
        new_offsets, new_sizes, changed = [], [], 0
        for o, n, d in zip(offsets, sizes, data):
            if d and (o % b or n % b):
                start = o - o % b
                end = -(-(o + n) // b) * b
                limit = self.wrap // b * b if self.wrap is not None else None
                if limit is not None and end > limit:
                    start, end = start - (end - limit), limit
                changed += 1
                new_offsets.append(max(start, 0))
                new_sizes.append(end - max(start, 0))
            else:
                new_offsets.append(o)
                new_sizes.append(n)
        self.counts["aligned"] += changed
        return new_offsets, new_sizes


TIMES = "a time stamp"


def _q(values, where, what):
    """``values`` as an int64 column; one error naming the input if one of them does not fit."""
    try:
        return array("q", values)
    except OverflowError:
        raise BlkfleetError(f"{where}: {what} beyond the 64-bit range after the transform") from None

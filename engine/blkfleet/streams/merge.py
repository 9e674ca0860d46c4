"""Merge several time-ordered streams of IOChunks into one, by time, a chunk at a time.

Each stream keeps one chunk buffered. Everything up to the earliest of the buffered chunks' last times can be
given out: no stream can still bring an earlier IO (each is in time order). Those IOs are joined and sorted by
time with one index sort (Timsort merges the runs: about linear), ties in stream order, so memory holds one
chunk per stream whatever the length of the streams.
"""

from array import array
from bisect import bisect_right

from . import chunks as ch


def merge(streams, tagged=False):
    """Yield IOChunks in time order from ``streams`` (iterables of IOChunks, each in time order; a chunk whose
    times go down is sorted first). ``tagged``: yield (chunk, tags) instead, ``tags`` an ``array('H')`` giving the
    index of the stream of every IO."""
    iters = [iter(s) for s in streams]
    if len(iters) == 1 and not tagged:
        for c in iters[0]:
            if len(c):
                yield ch.sort(c)
        return
    bufs = [None] * len(iters)
    live = list(range(len(iters)))
    while live:
        for i in list(live):
            if bufs[i] is None or not len(bufs[i]):
                bufs[i] = _next(iters[i])
                if bufs[i] is None:
                    live.remove(i)
        if not live:
            return
        cutoff = min(bufs[i].times[-1] for i in live)
        parts, tags = [], array("H")
        for i in live:
            n = bisect_right(bufs[i].times, cutoff)
            if n:
                parts.append(ch.cut(bufs[i], 0, n))
                bufs[i] = ch.cut(bufs[i], n)
                tags.extend(array("H", [i]) * n)
        out = ch.join(parts)
        if len(parts) > 1 and not ch.rising(out.times):
            order = sorted(range(len(out)), key=out.times.__getitem__)
            out = ch.pick(out, order)
            tags = array("H", map(tags.__getitem__, order))
        yield (out, tags) if tagged else out


def _next(it):
    """The next non-empty chunk of a stream, sorted, or None at its end."""
    for c in it:
        if len(c):
            return ch.sort(c)
    return None

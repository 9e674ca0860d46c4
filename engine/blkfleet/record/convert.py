"""Bunch queued IOs into replay files: btrecord's exact rules (``--compat``) or the native format.

Bunching (both formats): a bunch starts at an IO's time; the next IO closes it and starts a new one if the
bunch already holds ``max_pkts`` IOs or the IO is more than ``max_time`` ns after the bunch's first IO.
"""

from itertools import chain

from ..errors import TraceFormatError
from ..replayfile import compat, native
from ..replayfile.ops import classify
from ..trace.actions import is_queue
from ..trace.reader import TraceReader

M64 = (1 << 64) - 1


def _queue_offset(path, index):
    """Byte offset of the index-th Q event of a trace file (only used to word an error)."""
    seen = 0
    with TraceReader(path) as reader:
        for rec in reader:
            if is_queue(rec.action):
                if seen == index:
                    return reader.offset
                seen += 1
    return -1


def to_btrecord(batches, writer, summary, max_time, max_pkts, trace_path, on_packet=None):
    """btrecord's loop: per-file genesis, unsigned window test, rw = READ bit, quirks kept."""
    pack = compat.PACKET.pack
    tally = summary.by_action
    genesis = start = 0
    bunch = []
    n = 0
    for t, sector, nbytes, action, _pid in chain.from_iterable(batches):
        if genesis == 0:
            genesis = t
            writer.genesis = t
        elif t < genesis:
            raise TraceFormatError(
                trace_path, _queue_offset(trace_path, n), f"time inversion: {t} ns is before genesis {genesis} ns"
            )
        if bunch and (len(bunch) >= max_pkts or (t - start) & M64 > max_time):
            writer.add_bunch(start, bunch)
            bunch = []
        if not bunch:
            start = t
        rw = action >> 16 & 1
        bunch.append(pack(sector, nbytes, rw))
        if on_packet:
            on_packet(t, sector, nbytes, rw, start, genesis, len(bunch) == 1)
        key = action if nbytes else ~action
        entry = tally.get(key)
        if entry is None:
            tally[key] = [1, nbytes]
        else:
            entry[0] += 1
            entry[1] += nbytes
        n += 1
    if bunch:
        writer.add_bunch(start, bunch)
    summary.ios = n
    summary.bunches = writer.bunches
    summary.first_time = genesis
    summary.last_time = t if n else 0


def to_native(batches, writer, summary, max_time, max_pkts, trace_path):
    """Native loop: per-IO times (offset from the bunch time), ops kept; time must not go backwards."""
    pack = native.PACKET.pack
    tally = summary.by_action
    kinds = {}
    start = last = 0
    bunch = []
    n = 0
    for t, sector, nbytes, action, pid in chain.from_iterable(batches):
        if t < last:
            raise TraceFormatError(
                trace_path, _queue_offset(trace_path, n), f"time goes backwards: {t} ns after {last} ns"
            )
        if bunch and (len(bunch) >= max_pkts or t - start > max_time):
            writer.add_bunch(start, bunch, last)
            bunch = []
        if not bunch:
            start = t
        key = action if nbytes else ~action
        kind = kinds.get(key)
        if kind is None:
            kind = kinds[key] = classify(action, nbytes)
        bunch.append(pack(sector, nbytes, t - start, kind[0], kind[1], pid))
        last = t
        entry = tally.get(key)
        if entry is None:
            tally[key] = [1, nbytes]
        else:
            entry[0] += 1
            entry[1] += nbytes
        n += 1
    if bunch:
        writer.add_bunch(start, bunch, last)
    summary.ios = n
    summary.bunches = writer.bunches
    summary.first_time = writer.genesis
    summary.last_time = last

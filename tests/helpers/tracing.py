"""Trace block devices with the ftrace blk tracer while a test runs (what the kernel really received)."""

import os
from collections import Counter
from contextlib import contextmanager

from blkfleet.capture import foreground
from blkfleet.percpu import find_per_cpu
from blkfleet.trace.queued import queued_batches


class Traced:
    """Filled when the ``traced`` block ends: ``summary`` (the capture summary) and ``queued(device)``."""

    summary = None

    def queued(self, device):
        return self.summary["devices"].get(os.path.basename(device), {}).get("queued", 0)


@contextmanager
def traced(devices, outdir, lock=None, **options):
    """Capture Q events of ``devices`` into ``outdir`` (DEV.blktrace.CPU) for the duration of the block;
    ``lock``: the TracerLock the ``tracer`` fixture holds."""
    result = Traced()
    with foreground.traced(devices, str(outdir), lock=lock, **options) as summary:
        yield result
    result.summary = summary


def queued_extents(outdir, device):
    """Counter of (sector, bytes) of the Q events traced for ``device`` in ``outdir``."""
    seen = Counter()
    for path in find_per_cpu(str(outdir), os.path.basename(device), "blktrace"):
        for batch in queued_batches(path):
            seen.update(zip(batch.sectors, batch.nbytes))
    return seen

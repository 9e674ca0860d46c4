"""Trace block devices with the ftrace blk tracer while a test runs (what the kernel really received)."""

import os
import threading
from collections import Counter
from contextlib import contextmanager

from blkfleet.capture import tracefs
from blkfleet.capture.split import Splitter
from blkfleet.percpu import find_per_cpu
from blkfleet.trace.queued import queued_batches


class Traced:
    """Filled when the ``traced`` block ends: ``summary`` (Splitter.close()) and ``queued(device)``."""

    summary = None

    def queued(self, device):
        return self.summary["devices"].get(os.path.basename(device), {}).get("queued", 0)


@contextmanager
def traced(devices, outdir, lock, act_mask="queue", buffer_kb=16384):
    """Capture Q events of ``devices`` into ``outdir`` (DEV.blktrace.CPU) for the duration of the block."""
    dev_ts = []
    for dev in devices:
        rdev = os.stat(dev).st_rdev
        dev_ts.append(os.major(rdev) << 20 | os.minor(rdev))
    splitter = Splitter(str(outdir), devices=dev_ts)
    result = Traced()
    with tracefs.configure(devices, act_mask=act_mask, buffer_kb=buffer_kb, lock=lock) as cap:
        reader = threading.Thread(target=lambda: [splitter.feed(c) for c in cap.chunks()])
        reader.start()
        cap.start()
        try:
            yield result
        finally:
            cap.stop()
            reader.join()
    result.summary = splitter.close()


def queued_extents(outdir, device):
    """Counter of (sector, bytes) of the Q events traced for ``device`` in ``outdir``."""
    seen = Counter()
    for path in find_per_cpu(str(outdir), os.path.basename(device), "blktrace"):
        for batch in queued_batches(path):
            seen.update(zip(batch.sectors, batch.nbytes))
    return seen

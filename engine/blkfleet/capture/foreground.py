"""A capture around a block of code, in this process (tests, benchmarks, fixture scripts).

    with traced(["/dev/loop3"], "out") as result:
        run_the_workload()
    result["devices"]["loop3"]["queued"]

The tracer lock is waited for (another capture may hold it for a while); the tracer state is restored and
the lock released however the block ends.
"""

import threading
from contextlib import contextmanager

from . import tracefs
from .ftrace import ftrace_backend


@contextmanager
def traced(devices, outdir, lock=None, lock_timeout=600.0, **options):
    """Capture ``devices`` into ``outdir`` (DEV.blktrace.CPU) while the block runs; the yielded dict is filled
    with the capture summary afterwards. ``lock``: a TracerLock the caller already holds (kept held), else
    one is taken for the block. ``options``: ``ftrace.ftrace_backend``'s (mode, act_mask, buffer_kb, ...)."""
    own = lock is None
    if own:
        lock = tracefs.TracerLock().acquire(timeout=lock_timeout)
    result = {}
    try:
        capture = ftrace_backend(devices, outdir, lock=lock, **options).setup()
        stop = threading.Event()
        poller = threading.Thread(target=capture.run, args=(stop.is_set,), daemon=True)
        try:
            capture.start()
            poller.start()
            yield result
        finally:
            stop.set()
            if poller.is_alive():
                poller.join()
            result.update(capture.finish())
    finally:
        if own:
            lock.release()

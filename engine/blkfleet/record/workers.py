"""Calls run side by side in forked processes, their outcomes taken in the order given.

``record`` converts the trace files of a capture this way, one per usable CPU at a time: the files are
independent, and each conversion is bound by one CPU. An outcome crosses back as a pickle on a pipe (a
FileSummary, or the error the call raised, in a form the parent raises again with the same message and code).
"""

import os
import pickle
import select
import signal
import traceback

from ..errors import BlkfleetError
from ..process import end_with_parent

READ = 1 << 16
_stopping = False  # in a child: a signal told it to stop


class WorkerBug(Exception):
    """A call raised something that is not a user-facing error: its type, message and traceback in the worker."""


def ordered(calls, workers):
    """Yield ``(True, value)`` or ``(False, exception)`` for every call of ``calls`` (functions of no
    arguments), in their order, running up to ``workers`` of them at a time, each in a child process.

    Closing the generator early (the consumer raised, or was interrupted) stops the children still running with
    SIGTERM, which unwinds them like an error would (files being written are removed), and reaps them."""
    running = {}  # read end of a child's pipe -> [index, pid, bytes so far]
    outcomes = {}
    started = taken = 0
    try:
        while taken < len(calls):
            while started < len(calls) and len(running) < workers:
                fd, pid = _start(calls[started])
                running[fd] = [started, pid, []]
                started += 1
            if taken in outcomes:
                yield outcomes.pop(taken)
                taken += 1
                continue
            for fd in select.select(list(running), [], [])[0]:
                data = os.read(fd, READ)
                if data:
                    running[fd][2].append(data)
                    continue
                index, pid, parts = running.pop(fd)
                os.close(fd)
                _pid, status = os.waitpid(pid, 0)
                outcomes[index] = _outcome(b"".join(parts), status)
    finally:
        for fd, (_index, pid, _parts) in running.items():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            os.close(fd)
            os.waitpid(pid, 0)


def _start(call):
    """Fork a child that runs ``call`` and writes its outcome to a pipe: (read end, pid)."""
    r, w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        os.close(w)
        return r, pid
    status = 1
    try:
        os.close(r)
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        if not end_with_parent(parent, signal.SIGTERM):  # it does not go on converting for nobody
            raise SystemExit(1)
        try:
            outcome = (True, call())
        except BaseException as e:  # everything goes back to the parent, which decides
            outcome = (False, _portable(e))
        data = pickle.dumps(outcome)
        view = memoryview(data)
        while view:
            view = view[os.write(w, view) :]
        status = 0
    finally:
        os._exit(status)  # never back into the parent's code, nor its atexit handlers or buffers


def _stop(_signum, _frame):
    """The child is told to stop (^C reaches it and the parent, which then sends SIGTERM): unwind once, so that
    a second signal cannot cut short the removal of a file being written."""
    global _stopping
    if not _stopping:
        _stopping = True
        raise SystemExit(1)


def _portable(e):
    """What the parent raises for an exception of the child: ("blkfleet", message, code, details, OS error of its
    context), ("os", errno, strerror, filename), ("interrupted",) or ("bug", text)."""
    if isinstance(e, BlkfleetError):
        code = e.code if "code" in vars(e) or type(e).code != BlkfleetError.code else None
        cause = e.__context__
        os_error = (cause.errno, cause.strerror, cause.filename) if isinstance(cause, OSError) else None
        return ("blkfleet", str(e), code, dict(e.details), os_error)
    if isinstance(e, OSError):
        return ("os", e.errno, e.strerror or str(e), e.filename)
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
        return ("interrupted",)
    return ("bug", "".join(traceback.format_exception(type(e), e, e.__traceback__)))


def _outcome(data, status):
    """(ok, value or exception) of what a child wrote and its exit status."""
    try:
        ok, value = pickle.loads(data)
    except Exception:  # nothing, or cut short: the child was killed
        return False, WorkerBug(f"a worker process ended without a result (wait status {status})")
    if ok:
        return True, value
    kind = value[0]
    if kind == "blkfleet":
        _kind, message, code, details, os_error = value
        error = BlkfleetError(message, code=code, **details)
        if os_error:
            error.__context__ = OSError(*os_error)
        return False, error
    if kind == "os":
        _kind, number, text, filename = value
        return False, OSError(number, text, filename) if number else OSError(text)
    if kind == "interrupted":
        return False, KeyboardInterrupt()
    return False, WorkerBug(f"in a worker process:\n{value[1]}")

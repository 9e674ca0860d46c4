"""Job control of a replay started with ``--run-id ID``: its run directory, its lease, status, renew and stop.

The engine keeps ``RUN_ROOT/ID/`` (root-owned, mode 0700, under a trusted ``/run/blkfleet``):

- ``run.json``, replaced atomically: ``version``, ``run_id``, ``pid`` and ``pid_start`` (the engine's process
  and its start time in clock ticks since boot, from ``/proc/PID/stat``), ``state`` (``running`` or
  ``finished``), ``started`` (ISO 8601), ``lease_s`` (or null), ``results`` (the results JSON written, or
  null), ``exit_code`` and ``stop_reason`` (null until it finished; ``stop_reason`` stays null for a replay
  that ran to its end).
- ``lease``: an empty file whose modification time is the lease. ``renew`` touches it; with ``--lease SEC``
  the engine stops the replay as SIGTERM would when it is older than SEC.
- ``lock``: held (``flock``) by the running engine, so two starts with one ID cannot both go ahead.

Nothing here signals a pid on the word of ``run.json`` alone: ``stop`` sends SIGTERM only to a process whose
start time is the recorded one *and* whose command line names the run ID after ``--run-id``, read from a run
directory that only root can write to. A pid that was reused, or a run.json naming some other process, is
never signalled.
"""

import datetime
import fcntl
import os
import shutil
import signal
import stat
import time

from ..errors import BlkfleetError
from ..files import create_new, private_dir, read_json, untrusted_reason, write_json_file
from ..names import check_name, name_problem
from ..process import process_start

RUN_ROOT = "/run/blkfleet/replay"
RUN_NAME, LEASE_NAME, LOCK_NAME = "run.json", "lease", "lock"
RUN_VERSION = 1
PRUNE_AFTER_S = 86400.0
STOP_TIMEOUT_S = 30.0
RUN_MAX_BYTES = 64 << 10


def check_run_id(run_id):
    return check_name(run_id, "run ID")


def check_lease(text):
    """``--lease SEC``: a finite number of seconds > 0."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise BlkfleetError(f"invalid lease {text!r} (seconds, a number > 0)") from None
    if not 0 < value < float("inf"):
        raise BlkfleetError(f"invalid lease {text!r} (seconds, a number > 0)")
    return value


def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _run_dir(run_id):
    return os.path.join(RUN_ROOT, check_run_id(run_id))


def cmdline(pid):
    """The arguments of process ``pid``, or None."""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            raw = f.read(1 << 20)
    except OSError:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]]


def names_run(args, run_id):
    """Whether a command line names ``run_id`` as the value of ``--run-id``."""
    if not args:
        return False
    pairs = zip(args, args[1:])
    return any(a == "--run-id" and b == run_id for a, b in pairs) or f"--run-id={run_id}" in args


def engine_alive(state):
    """None if the process of ``state`` is this run's engine and alive, else why not."""
    pid, start = state.get("pid"), state.get("pid_start")
    if type(pid) is not int or pid <= 1 or type(start) is not int:
        return "run.json names no valid pid"
    if process_start(pid) != start:
        return f"pid {pid} with start time {start} is gone"
    if not names_run(cmdline(pid), state["run_id"]):
        return f"pid {pid} is not the engine of run {state['run_id']} (its command line does not name the run ID)"
    return None


def _load(run_id):
    """(run directory, run.json as a dict) or (None, None) when there is no run ``run_id``."""
    path = _run_dir(run_id)
    if not os.path.lexists(path):
        return None, None
    reason = untrusted_reason(path)
    if reason:
        raise BlkfleetError(f"{path}: refusing this run directory: {reason}")
    st = os.lstat(path)
    if st.st_uid != 0 and st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise BlkfleetError(f"{path}: refusing this run directory: it is not private to root")
    state_path = os.path.join(path, RUN_NAME)
    if not os.path.lexists(state_path):
        return path, None
    state = read_json(state_path, "run state", max_bytes=RUN_MAX_BYTES, nofollow=True)
    if not isinstance(state, dict) or state.get("run_id") != run_id or state.get("state") not in (
            "running", "finished"):
        raise BlkfleetError(f"{state_path}: not the run state of run {run_id}")
    return path, state


def _lease_age(path):
    try:
        return round(max(time.time() - os.lstat(os.path.join(path, LEASE_NAME)).st_mtime, 0.0), 3)
    except OSError:
        return None


def status(run_id):
    """The job-status document of run ``run_id`` (``state``: none, running, finished or dead)."""
    path, state = _load(run_id)
    doc = {"run_id": run_id, "state": "none", "pid": None, "exit_code": None, "results": None,
           "stop_reason": None, "lease_s": None, "lease_age_s": None, "started": None}
    if state is None:
        return doc
    for key in ("pid", "exit_code", "results", "stop_reason", "lease_s", "started"):
        doc[key] = state.get(key)
    if state["state"] == "finished":
        doc["state"] = "finished"
    else:
        problem = engine_alive(state)
        doc["state"] = "dead" if problem else "running"
        if problem:
            doc["problem"] = problem
        doc["lease_age_s"] = _lease_age(path)
    return doc


def renew(run_id):
    """Touch the lease of a running run; the status document with ``renewed``."""
    doc = status(run_id)
    renewed = False
    if doc["state"] == "running":
        lease = os.path.join(_run_dir(run_id), LEASE_NAME)
        try:
            fd = os.open(lease, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            fd = None
        if fd is not None:
            try:
                os.utime(fd)
                renewed = True
            finally:
                os.close(fd)
        doc = status(run_id)
    doc["renewed"] = renewed
    return doc


def stop(run_id, timeout=STOP_TIMEOUT_S):
    """SIGTERM the engine of a running run (only if it provably is that engine), wait until it is gone."""
    doc = status(run_id)
    if doc["state"] != "running":
        doc["stopped"] = False
        return doc
    path, state = _load(run_id)
    problem = engine_alive(state) if state else "no run state"
    if problem:  # it changed between the two reads
        doc = status(run_id)
        doc["stopped"] = False
        return doc
    pid, start = state["pid"], state["pid_start"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_start(pid) == start and time.monotonic() < deadline:
        time.sleep(0.05)
    gone = process_start(pid) != start
    doc = status(run_id)
    doc["stopped"] = gone
    if not gone:
        doc["problem"] = f"pid {pid} still runs {timeout:g} s after SIGTERM"
    return doc


class RunDir:
    """The run directory of the engine itself: created at the start, ``finish``-ed at the exit."""

    def __init__(self, run_id, lease_s=None):
        self.run_id = check_run_id(run_id)
        self.lease_s = lease_s
        prune()
        self.path = private_dir(_run_dir(run_id), "run directory")
        self._lock = self._take_lock()
        self.lease = os.path.join(self.path, LEASE_NAME)
        self._reset_lease()
        self.state = {
            "version": RUN_VERSION, "run_id": run_id, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
            "state": "running", "started": _now_iso(), "lease_s": lease_s, "results": None, "exit_code": None,
            "stop_reason": None,
        }
        write_json_file(os.path.join(self.path, RUN_NAME), self.state, mode=0o600)

    def _take_lock(self):
        lock = os.path.join(self.path, LOCK_NAME)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise BlkfleetError(f"{lock}: cannot open the run lock: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                _path, state = _load(self.run_id)
            except BlkfleetError:
                state = None
            who = f" (pid {state['pid']}, started {state['started']})" if state else ""
            raise BlkfleetError(f"run {self.run_id} is already running{who}") from None
        return fd

    def _reset_lease(self):
        try:
            os.unlink(self.lease)
        except FileNotFoundError:
            pass
        os.close(create_new(self.lease, 0o600))

    def lease_expired(self):
        """Whether the lease was not renewed within ``lease_s`` (a lease file removed counts as expired)."""
        if self.lease_s is None:
            return False
        try:
            mtime = os.lstat(self.lease).st_mtime
        except OSError:
            return True
        return time.time() - mtime > self.lease_s

    def finish(self, exit_code, results=None, stop_reason=None):
        self.state.update(state="finished", exit_code=exit_code, results=results, stop_reason=stop_reason,
                          finished=_now_iso())
        write_json_file(os.path.join(self.path, RUN_NAME), self.state, mode=0o600)
        os.close(self._lock)


def prune(now=None):
    """Remove the run directories of runs that finished (or died) more than PRUNE_AFTER_S ago."""
    now = time.time() if now is None else now
    try:
        names = os.listdir(RUN_ROOT)
    except OSError:
        return
    if untrusted_reason(RUN_ROOT):
        return
    for name in names:
        if name_problem(name) is None:
            try:
                path, state = _load(name)
            except BlkfleetError:
                continue
            if state is None:
                continue
            try:
                age = now - os.lstat(os.path.join(path, RUN_NAME)).st_mtime
            except OSError:
                continue
            if age > PRUNE_AFTER_S and (state["state"] == "finished" or engine_alive(state)):
                shutil.rmtree(path, ignore_errors=True)


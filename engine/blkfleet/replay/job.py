"""Job control of a replay started with ``--run-id ID``: its run directory, its lease, status, renew, stop and
the start of an armed replay.

The engine keeps ``RUN_ROOT/ID/`` (root-owned, mode 0700, under a trusted ``/run/blkfleet``):

- ``run.json``, replaced atomically: ``version``, ``run_id``, ``pid`` and ``pid_start`` (the engine's process
  and its start time in clock ticks since boot, from ``/proc/PID/stat``), ``state`` (``arming``, ``armed``,
  ``running`` or ``finished``), ``started`` (ISO 8601), ``lease_s`` (or null), ``arm_wait_s``, ``armed_at`` and
  ``start_at`` (epoch seconds; null without ``--arm``), ``results`` (the results JSON written, or null),
  ``exit_code`` and ``stop_reason`` (null until it finished; ``stop_reason`` stays null for a replay that ran to
  its end).
- ``lease``: an empty file whose modification time is the lease. ``renew`` touches it; with ``--lease SEC``
  the engine stops the replay as SIGTERM would when it is older than SEC. It counts from the replay's start:
  an armed replay is bounded by its arm wait instead.
- ``start.json``: ``{"at": EPOCH}``, written by ``job start`` for an armed replay.
- ``lock``: held (``flock``) by the running engine, so two starts with one ID cannot both go ahead.

Two-phase start (``replay --arm SEC``): the engine reads its files, opens and checks its targets, starts its
workers pinned to their CPUs and waits until each is ready (``arming``); then it reports ``armed`` and waits at
most SEC seconds for ``job start ID --at EPOCH``, polling for ``start.json`` every ARM_POLL_S. The controller
starts every target of a fleet at one instant a short margin after the last one armed; a target that never arms
makes it start none, and an armed engine that gets no start ends by itself (``not_started``, nothing replayed).

Nothing here signals a pid on the word of ``run.json`` alone: ``stop`` sends SIGTERM only to a process whose
start time is the recorded one *and* whose command line names the run ID after ``--run-id``, read from a run
directory that only root can write to. A pid that was reused, or a run.json naming some other process, is
never signalled.
"""

import datetime
import fcntl
import math
import os
import re
import shutil
import signal
import stat
import time

from ..errors import BlkfleetError
from ..files import create_new, private_dir, read_json, untrusted_reason, write_json_file
from ..names import check_name, name_problem
from ..process import process_start

RUN_ROOT = "/run/blkfleet/replay"
RUN_NAME, LEASE_NAME, LOCK_NAME, START_NAME = "run.json", "lease", "lock", "start.json"
RUN_VERSION = 1
LIVE = ("arming", "armed", "running")  # run.json states of an engine that has not finished
ARM_POLL_S = 0.005  # how often an armed engine looks for its start: a small part of the controller's margin
PRUNE_AFTER_S = 86400.0
STOP_TIMEOUT_S = 30.0
RUN_MAX_BYTES = 64 << 10


def check_run_id(run_id):
    return check_name(run_id, "run ID")


def parse_instant(text, option):
    """A wall-clock instant: seconds since the epoch, or ISO 8601 (local time if it has no zone)."""
    try:
        value = float(text)
    except ValueError:
        iso = re.sub(r"\.(\d+)", lambda m: "." + (m.group(1) + "000000")[:6], text.strip().replace("Z", "+00:00"))
        try:  # fraction padded to 6 digits: Python 3.9's fromisoformat takes only 3 or 6
            value = datetime.datetime.fromisoformat(iso).timestamp()
        except ValueError:
            raise BlkfleetError(f"invalid {option} {text!r} (seconds since the epoch or ISO 8601)") from None
    if not math.isfinite(value):
        raise BlkfleetError(f"invalid {option} {text!r} (seconds since the epoch or ISO 8601)")
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
    if not isinstance(state, dict) or state.get("run_id") != run_id or state.get("state") not in LIVE + (
            "finished",):
        raise BlkfleetError(f"{state_path}: not the run state of run {run_id}")
    return path, state


def _lease_age(path):
    try:
        return round(max(time.time() - os.lstat(os.path.join(path, LEASE_NAME)).st_mtime, 0.0), 3)
    except OSError:
        return None


def status(run_id):
    """The job-status document of run ``run_id`` (``state``: none, arming, armed, running, finished or dead)."""
    path, state = _load(run_id)
    doc = {"run_id": run_id, "state": "none", "pid": None, "exit_code": None, "results": None,
           "stop_reason": None, "lease_s": None, "lease_age_s": None, "started": None, "armed_at": None,
           "start_at": None}
    if state is None:
        return doc
    for key in ("pid", "exit_code", "results", "stop_reason", "lease_s", "started", "armed_at", "start_at"):
        doc[key] = state.get(key)
    if state["state"] == "finished":
        doc["state"] = "finished"
    else:
        problem = engine_alive(state)
        doc["state"] = "dead" if problem else state["state"]
        if problem:
            doc["problem"] = problem
        doc["lease_age_s"] = _lease_age(path)
    return doc


def renew(run_id):
    """Touch the lease of a running run; the status document with ``renewed``."""
    doc = status(run_id)
    renewed = False
    if doc["state"] in LIVE:
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
    if doc["state"] not in LIVE:
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


def start(run_id, at):
    """Give an armed (or arming) run its start instant ``at`` (epoch seconds) and renew its lease; the status
    document with ``start_accepted``. A run that is not waiting for a start is left alone."""
    doc = status(run_id)
    if doc["state"] not in ("arming", "armed"):
        doc["start_accepted"] = False
        doc["problem"] = f"run {run_id} is {doc['state']}, not waiting for a start (replay --arm)"
        return doc
    write_json_file(os.path.join(_run_dir(run_id), START_NAME), {"at": at}, mode=0o600)
    doc = renew(run_id)
    del doc["renewed"]
    doc["start_accepted"] = True
    doc["start_at"] = at
    return doc


class RunDir:
    """The run directory of the engine itself: created at the start, ``finish``-ed at the exit."""

    def __init__(self, run_id, lease_s=None, arm_wait_s=None):
        self.run_id = check_run_id(run_id)
        self.lease_s = lease_s
        self.arm_wait_s = arm_wait_s
        prune()
        self.path = private_dir(_run_dir(run_id), "run directory")
        self._lock = self._take_lock()
        self.lease = os.path.join(self.path, LEASE_NAME)
        self._reset_lease()
        self.start_file = os.path.join(self.path, START_NAME)
        _remove(self.start_file)
        self.state = {
            "version": RUN_VERSION, "run_id": run_id, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
            "state": "running" if arm_wait_s is None else "arming", "started": _now_iso(), "lease_s": lease_s,
            "arm_wait_s": arm_wait_s, "armed_at": None, "start_at": None, "results": None, "exit_code": None,
            "stop_reason": None,
        }
        self._save()

    def _save(self):
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
            raise BlkfleetError(f"run {self.run_id} is already running{who}", code="already_running") from None
        return fd

    def _reset_lease(self):
        _remove(self.lease)
        os.close(create_new(self.lease, 0o600))

    def armed(self, stop):
        """Report the run armed (every worker ready), then wait for its start instant from ``job start``; returns
        it (epoch seconds). ``stop()``: the signal that asked the replay to stop, or None. Raises BlkfleetError
        (interrupted) on a stop, (not_started) when no start came within the arm wait."""
        self.state.update(state="armed", armed_at=time.time())
        self._save()
        deadline = time.monotonic() + self.arm_wait_s
        while True:
            signum = stop()
            if signum is not None:
                raise BlkfleetError(f"stopped by {signal.Signals(signum).name} while armed: nothing replayed",
                                    code="interrupted")
            if os.path.lexists(self.start_file):
                at = read_json(self.start_file, "start", max_bytes=RUN_MAX_BYTES, nofollow=True)
                value = at.get("at") if isinstance(at, dict) else None
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                    raise BlkfleetError(f"{self.start_file}: not a start instant")
                self.state.update(state="running", start_at=float(value))
                self._save()
                return float(value)
            if time.monotonic() >= deadline:
                raise BlkfleetError(f"run {self.run_id}: armed, but no start came within {self.arm_wait_s:g} s "
                                    "('blkfleet job start'): nothing replayed", code="not_started")
            time.sleep(ARM_POLL_S)

    def lease_expired(self):
        """Whether the lease was not renewed within ``lease_s`` (a lease file removed counts as expired). An armed
        replay's lease counts from its start (``job start`` renews it): until then its arm wait bounds it."""
        if self.lease_s is None or self.state["state"] != "running":
            return False
        try:
            mtime = os.lstat(self.lease).st_mtime
        except OSError:
            return True
        return time.time() - mtime > self.lease_s

    def finish(self, exit_code, results=None, stop_reason=None):
        self.state.update(state="finished", exit_code=exit_code, results=results, stop_reason=stop_reason,
                          finished=_now_iso())
        self._save()
        os.close(self._lock)


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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
            try:  # the age first: a start-up reads only the runs old enough to go, not every run of the day
                if now - os.lstat(os.path.join(RUN_ROOT, name, RUN_NAME)).st_mtime <= PRUNE_AFTER_S:
                    continue
                path, state = _load(name)
            except (OSError, BlkfleetError):
                continue
            if state is not None and (state["state"] == "finished" or engine_alive(state)):
                shutil.rmtree(path, ignore_errors=True)


"""Capture as a detached background job: ``start`` / ``stop`` / ``status`` / ``restore``.

``start`` validates what it can, makes or checks the output directory (it must be one only root can
change: ``files.trusted_dir``; a new one is made with mode 0700), then double-forks the daemon
(``daemon.run``), which reports one JSON document back through a pipe before ``start`` returns. The daemon
traces until it receives SIGTERM or SIGINT (``stop``) or ``--duration`` elapses, then finishes the backend
(tracer restored, files written) and stores the summary in ``DIR/capture.json`` with ``state: stopped``.

Whether the daemon lives, and which pid may be signalled, is decided only from its lock and record under
``/run/blkfleet/capture`` (``rundir``), never from ``capture.json``. A capture whose daemon is gone before it
stopped is *dead*: ``status`` says so and changes nothing; ``stop`` recovers it (the buffers still in the
kernel salvaged into its raw files, the tracer restored, an orphaned blktrace stopped, debugfs unmounted if
it mounted it) and converts what it captured; ``start --force`` and ``restore -D`` recover it too.

Run tokens: ``start --token T`` records T. A start that finds a capture of the same token changes nothing
(idempotent, even when that capture has finished); one that finds a running capture of another token (or
none) fails unless ``--force``, which stops that capture, discards its files and starts afresh. Without a token,
a start that finds a finished capture of the same devices without one changes nothing too (a play run again must
not fail on what its first run left), unless ``--force``, which discards it and starts afresh; any other finished
capture is discarded only with ``--force``, since its files may not have been collected yet.
"""

import json
import os
import secrets
import select
import signal
import sys
import time
import traceback

from ..errors import BlkfleetError
from ..files import loads_json, open_append, trusted_dir, untrusted_reason
from . import daemon, outputs, rundir, state, tracefs
from .blktrace import stop_orphan, unmount_debugfs
from .daemon import finish_summary
from .ftrace import read_cpu_stats
from .state import FINISHED, STATE_NAME, public

LOG_NAME = "capture.log"
BACKENDS = ("auto", "blktrace", "ftrace")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 300.0

__all__ = ["BACKENDS", "StartOptions", "files", "finish_summary", "inspect", "restore", "start", "status", "stop"]


class StartOptions:
    def __init__(self, devices, outdir, backend="auto", act_mask="queue", buffer_kb=512, buffer_count=8,
                 duration=None, mode="auto", interval=0.05, keep_raw=False, force=False, splice=None,
                 lock_path=tracefs.LOCK_PATH, token=None, check=False, completions=True):
        self.devices = list(devices)
        self.outdir = os.path.abspath(outdir)
        self.backend = backend
        self.act_mask = act_mask
        self.buffer_kb = buffer_kb
        self.buffer_count = buffer_count
        self.duration = duration
        self.mode = mode
        self.interval = interval
        self.keep_raw = keep_raw
        self.force = force
        self.splice = splice
        self.lock_path = lock_path
        self.token = token
        self.check = check
        self.completions = completions
        self.log_name = LOG_NAME

    def to_json(self):
        return {"act_mask": self.act_mask, "buffer_kb": self.buffer_kb, "buffer_count": self.buffer_count,
                "duration": self.duration, "mode": self.mode, "interval": self.interval,
                "keep_raw": self.keep_raw, "completions": self.completions}


class Inspection:
    """What is in an output directory: ``state`` (capture.json or None), ``kind`` (none, running, dead,
    stopped, failed, salvaged), ``pid`` (the daemon's, only when proven) and ``record`` (its run record)."""

    def __init__(self, outdir, doc, kind, pid=None, record=None):
        self.outdir = outdir
        self.state = doc
        self.kind = kind
        self.pid = pid
        self.record = record
        self.salvaged = None


def inspect(outdir):
    """Read ``outdir`` without changing anything."""
    outdir = os.path.abspath(outdir)
    doc = state.load(outdir)
    if doc is None:
        return Inspection(outdir, None, "none")
    if doc["state"] in FINISHED:
        return Inspection(outdir, doc, doc["state"])
    key = rundir.key_of(outdir)
    alive, pid, record = rundir.daemon(key)
    if record is not None and record["run_id"] != doc.get("run_id"):
        record = None if not alive else record
    if alive:
        return Inspection(outdir, doc, "running", pid, record)
    again = state.load(outdir)  # it may have finished since the first read
    if again is not None and again["state"] in FINISHED:
        return Inspection(outdir, again, again["state"])
    return Inspection(outdir, again or doc, "dead", None, record)


def _devices(doc):
    return ", ".join(doc.get("devices") or []) or "no device"


# -- start ------------------------------------------------------------------------------------------------


def _validate(opts):
    if opts.backend not in BACKENDS:
        raise BlkfleetError(f"unknown backend {opts.backend!r} (known: {', '.join(BACKENDS)})")
    if not opts.devices:
        raise BlkfleetError("no device given (--device DEV)")
    if opts.token is not None:
        state.check_token(opts.token)
    tracefs.require_root()
    tracefs.act_mask_value(opts.act_mask)
    if opts.buffer_kb <= 0 or opts.buffer_count <= 0:
        raise BlkfleetError("--buffer-size and --buffer-count must be positive")
    if opts.duration is not None and opts.duration <= 0:
        raise BlkfleetError("--duration must be positive")
    names = []
    for dev in opts.devices:
        name, _ = tracefs.device_trace_dir(dev)
        if name in names:
            raise BlkfleetError(f"device {name} given twice")
        names.append(name)
    if opts.backend == "ftrace":
        try:
            tracing = tracefs.find_tracefs(mount=not opts.check)
        except BlkfleetError:
            if not opts.check:
                raise
        else:
            tracefs.require_blk_tracer(tracing)
    return names


def _check_new_dir(outdir):
    """For check mode: the directory ``start`` would use or make is acceptable (nothing is created)."""
    if os.path.lexists(outdir):
        state.refuse_untrusted(outdir)
        return
    parent = os.path.dirname(outdir)
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    reason = untrusted_reason(parent)
    if reason:
        raise BlkfleetError(f"{outdir}: refusing this capture directory: {parent} above it: {reason}")


def _decide(opts, names, seen):
    """What a start does with what ``seen`` found: ``(doc, action)``: a document to return (nothing to start),
    or None and one of "start", "replace" (stop the running capture, discard, start), "recover" (a dead
    capture, recovered then discarded), "discard" (a finished capture, discarded)."""
    doc, kind = seen.state, seen.kind
    where = opts.outdir
    if kind == "none":
        return None, "start"
    same_token = doc.get("token") == opts.token
    if kind == "running":
        if same_token and sorted(doc.get("devices") or []) == sorted(names):
            return dict(public(doc), action="start", started=False, state="running",
                        message=f"a capture of {_devices(doc)} is already running in {where} (pid {doc.get('pid')}, "
                                f"since {doc.get('start_time')}, token {doc.get('token')}): nothing started"), None
        if same_token:
            raise BlkfleetError(f"a capture of {_devices(doc)} is already running in {where} (pid {doc.get('pid')}); "
                                "stop it first or use another directory", code="already_running")
        if not opts.force:
            raise BlkfleetError(f"a capture of another run (token {doc.get('token')}) is running in {where} "
                                f"(pid {doc.get('pid')}, since {doc.get('start_time')}); stop it, or start with "
                                "--force to stop and discard it", code="already_running")
        return None, "replace"
    if kind == "dead":
        if not opts.force:
            raise BlkfleetError(f"the capture in {where} died (pid {doc.get('pid')} is gone); run 'capture stop' "
                                "to collect what it wrote, or start with --force to discard it")
        return None, "recover"
    if doc.get("output_dir") != where:  # not the state this directory's capture wrote: nothing in it is reported
        same_token = False
    if opts.token is not None and same_token:
        return dict(public(doc), action="start", started=False, state=kind,
                    message=f"the capture of run token {opts.token} in {where} already ran ({kind} at "
                            f"{doc.get('stop_time')}): nothing started (another token with --force, or another "
                            "directory, to capture again)"), None
    if same_token and not opts.force and sorted(doc.get("devices") or []) == sorted(names):
        return dict(public(doc), action="start", started=False, state=kind,
                    message=f"the capture of {_devices(doc)} in {where} already ran ({kind} at "
                            f"{doc.get('stop_time')}): nothing started (--force to discard it and capture again)"), None
    if not opts.force:
        raise BlkfleetError(f"{where} holds a finished capture ({kind} at {doc.get('stop_time')}); "
                            "use another directory or --force to overwrite it")
    return None, "discard"


def start(opts, report_timeout=START_TIMEOUT):
    """Start a detached capture; returns the JSON document to print (with ``--check``: what it would do)."""
    names = _validate(opts)
    if opts.check:
        _check_new_dir(opts.outdir)
    else:
        trusted_dir(opts.outdir, "capture directory", mode=0o700)
    seen = inspect(opts.outdir)
    doc, action = _decide(opts, names, seen)
    if doc is not None:
        return doc
    if opts.check:
        would = {"start": "would start a capture", "replace": "would stop and discard the running capture, then "
                 "start", "recover": "would recover and discard the dead capture, then start",
                 "discard": "would discard the finished capture, then start"}[action]
        return {"action": "start", "check": True, "started": True, "state": seen.kind, "output_dir": opts.outdir,
                "token": opts.token, "message": f"{would} of {', '.join(names)} in {opts.outdir}"}
    recovered = []
    if action == "replace":
        _stop_running(seen, STOP_TIMEOUT)
        recovered.append(f"the running capture of token {seen.state.get('token')} (pid {seen.pid}) was stopped "
                         "and discarded")
    elif action == "recover":
        recovered = _recover(seen)
    outputs.discard(opts.outdir, data=action != "start")
    return _spawn(opts, recovered, report_timeout)


def _spawn(opts, recovered, report_timeout):
    log_path = os.path.join(opts.outdir, LOG_NAME)
    try:
        log_fd = open_append(log_path)
    except OSError as e:
        raise BlkfleetError(f"{log_path}: cannot open the capture log: {e.strerror}") from None
    run_id = secrets.token_hex(16)
    key = rundir.key_of(opts.outdir)
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (runs in the child)
        code = 1
        try:
            os.close(r)
            os.setsid()
            if os.fork():
                os._exit(0)
            os.chdir("/")
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            code = daemon.run(opts, w, recovered, run_id, key)
        except BaseException:
            try:
                last = traceback.format_exc().strip().splitlines()[-1]
                os.write(w, json.dumps({"error": f"capture daemon: {last}"}).encode())
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(w)
    os.close(log_fd)
    os.waitpid(pid, 0)
    data = b""
    deadline = time.monotonic() + report_timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            os.close(r)
            raise BlkfleetError(f"the capture daemon did not report within {report_timeout:.0f} s (see {log_path})")
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    try:
        doc = loads_json(data, "the capture daemon's report")
    except BlkfleetError:
        raise BlkfleetError(f"the capture daemon failed to start (see {log_path})") from None
    if "error" in doc:
        raise BlkfleetError(str(doc["error"]).replace("\n", " "), code=doc.get("code"))
    return doc


# -- stop / recovery --------------------------------------------------------------------------------------


def _stop_running(seen, timeout):
    """SIGTERM the proven daemon of a running capture and wait until its lock is free."""
    if seen.pid is None:
        raise BlkfleetError(f"the capture in {seen.outdir} runs, but its process cannot be proven from "
                            f"{rundir.RUN_DIR} (no record or another lock holder): nothing signalled")
    try:
        os.kill(seen.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    key = rundir.key_of(seen.outdir)
    deadline = time.monotonic() + timeout
    while rundir.daemon(key)[0]:
        if time.monotonic() >= deadline:
            raise BlkfleetError(f"the capture (pid {seen.pid}) did not stop within {timeout:.0f} s; it is still "
                                f"writing (see {os.path.join(seen.outdir, LOG_NAME)}); run stop again later")
        time.sleep(0.05)


def _recover(seen):
    """Undo what the dead daemon of ``seen`` left, as its run record says; returns what was done. Without a
    record (none was written, or the host rebooted since) there is nothing of it to undo."""
    record = seen.record
    if record is None:
        return []
    done = []
    try:
        if tracefs.recover_tracer(lock_path=tracefs.LOCK_PATH, timeout=2.0):
            done.append("ftrace tracer state restored")
    except tracefs.TracerBusy:
        done.append("tracer now owned by another capture: not touched")
    except BlkfleetError as e:
        done.append(f"tracer not restored: {e}")
    pid = record.get("blktrace_pid")
    if isinstance(pid, int) and stop_orphan(pid, record.get("blktrace_start")):
        done.append(f"orphaned blktrace (pid {pid}) stopped")
    if record.get("debugfs_mounted") is True:
        done.append("debugfs unmounted" if unmount_debugfs() else "debugfs left mounted (in use)")
    key = rundir.key_of(seen.outdir)
    salvaged = (rundir.read_record(key) or {}).get("salvaged")
    if isinstance(salvaged, dict) and isinstance(salvaged.get("events"), int):
        done.append(f"{salvaged['events']} events recovered from the kernel's buffers"
                    + (f" ({salvaged['error']})" if salvaged.get("error") else ""))
        seen.salvaged = salvaged
    rundir.forget(key)
    return done


def stop(outdir, timeout=STOP_TIMEOUT, token=None, check=False):
    """Stop the capture in ``outdir``; returns the JSON document (summary) to print."""
    outdir = os.path.abspath(outdir)
    if token is not None:
        state.check_token(token)
    seen = inspect(outdir)
    doc, kind = seen.state, seen.kind
    if kind == "none":
        raise BlkfleetError(f"no capture in {outdir} (no {STATE_NAME})", code="not_found")
    if token is not None and doc.get("token") != token:
        raise BlkfleetError(f"the capture in {outdir} belongs to another run (token {doc.get('token')}, not "
                            f"{token}): not stopped", code="already_running")
    if kind in FINISHED:
        out = _stop_doc(doc, False, f"the capture in {outdir} had already stopped (at {doc.get('stop_time')}, "
                                    f"{doc.get('stop_reason', 'stop')}): nothing to do")
        out["collected_before"] = bool(doc.get("collected"))
        if not doc.get("collected") and not check:
            _mark_collected(outdir, doc)
        return out
    if check:
        return dict(public(doc), action="stop", check=True, stopped=True, state=kind,
                    message=f"would stop the {kind} capture of {_devices(doc)} in {outdir}")
    if kind == "running":
        _stop_running(seen, timeout)
        seen = inspect(outdir)
        if seen.kind in FINISHED:
            _mark_collected(outdir, seen.state)
            return _stop_doc(seen.state, True, f"capture of {_devices(seen.state)} stopped")
    return _salvage(seen)


def _mark_collected(outdir, doc):
    """Record that a stop returned this summary: later stops answer it with exit status 0 (its error, if any,
    was reported once)."""
    try:
        state.save(outdir, dict(doc, collected=True))
    except OSError:
        pass


def _salvage(seen):
    """Recover a dead capture and convert what it captured; ``state: salvaged``."""
    outdir, doc = seen.outdir, seen.state
    recovered = list(doc.get("recovery") or []) + _recover(seen)
    seen.salvaged = seen.salvaged or doc.get("salvaged")
    outputs.remove(os.path.join(outdir, outputs.RESERVE))
    error = (f"the capture process (pid {doc.get('pid')}) died before it stopped; "
             + ("; ".join(recovered) if recovered else "no tracer state of it left to restore")
             + "; events after its death are missing and drops are unknown")
    from . import salvage

    try:
        summary = salvage.convert_dead(outdir, doc)
    except (OSError, BlkfleetError) as e:
        summary = {}
        error += f"; salvage failed: {e}"
    now = time.time()
    start_epoch = doc.get("start_epoch")
    doc = dict(doc, state="salvaged", collected=True, stop_time=daemon.now(), stop_epoch=now, stop_reason="dead",
               duration=round(now - start_epoch, 6) if isinstance(start_epoch, (int, float)) else None,
               summary=finish_summary(summary, error))
    if seen.salvaged is not None:
        doc["summary"]["salvaged"] = seen.salvaged
    try:
        state.save(outdir, doc)
    except OSError as e:
        doc["summary"]["error"] += f"; cannot write {state.state_file(outdir)}: {e.strerror or e}"
    return _stop_doc(doc, True, f"the capture (pid {doc.get('pid')}) had died; "
                                + ("; ".join(recovered) or "nothing to restore") + "; its files were salvaged")


def _stop_doc(doc, stopped, message):
    summary = dict(doc.get("summary") or {})
    out = dict(public(doc), **summary)
    out.update(action="stop", stopped=stopped, state=doc.get("state"), message=message,
               stop_time=doc.get("stop_time"), duration=doc.get("duration"), stop_reason=doc.get("stop_reason"))
    return out


# -- status / restore -------------------------------------------------------------------------------------


def status(outdir):
    """The state of the capture in ``outdir``; changes nothing (a dead capture is recovered by ``stop``)."""
    seen = inspect(outdir)
    doc, kind, outdir = seen.state, seen.kind, seen.outdir
    if kind == "none":
        return {"action": "status", "state": "none", "output_dir": outdir, "message": f"no capture in {outdir}"}
    out = dict(public(doc), action="status", state=kind)
    if kind == "running":
        start_epoch = doc.get("start_epoch")
        out["elapsed"] = round(time.time() - start_epoch, 3) if isinstance(start_epoch, (int, float)) else None
        out["message"] = f"capture of {_devices(doc)} running" + (
            f" for {out['elapsed']:.1f} s" if out["elapsed"] is not None else "")
        out["bytes_written"] = _dir_bytes(outdir)
        ncpus = (doc.get("backend_info") or {}).get("ncpus")
        if doc.get("backend") == "ftrace" and isinstance(ncpus, int) and 0 < ncpus <= 8192:
            try:
                stats = read_cpu_stats(tracefs.find_tracefs(mount=False), ncpus)
                out["kernel"] = {str(c): s for c, s in sorted(stats.items())}
            except BlkfleetError:
                pass
    elif kind == "dead":
        out["recoverable"] = seen.record is not None
        out["message"] = (f"the capture process (pid {doc.get('pid')}) died before it stopped; run 'capture stop' "
                          "to recover the tracer and salvage what it captured")
    else:
        out.update({k: doc.get(k) for k in ("stop_time", "duration", "stop_reason")})
        summary = doc.get("summary") or {}
        out.update({k: summary.get(k) for k in ("queued", "records", "drops", "error", "files")})
        out["message"] = f"the capture in {outdir} is {kind} (at {doc.get('stop_time')})"
    return out


def files(outdir, token=None):
    """The trace files of the finished capture in ``outdir`` and its ``capture.json``, each ``{name, path, size,
    sha256}``: what a copy must match (``capture files``). Only plain regular files directly in ``outdir``."""
    from ..bundle.manifest import sha256_file

    seen = inspect(outdir)
    doc, kind = seen.state, seen.kind
    if kind == "none":
        raise BlkfleetError(f"no capture in {seen.outdir} (no {STATE_NAME})", code="not_found")
    if token is not None and doc.get("token") != state.check_token(token):
        raise BlkfleetError(f"the capture in {seen.outdir} belongs to another run (token {doc.get('token')}, not "
                            f"{token})", code="already_running")
    if kind not in FINISHED:
        raise BlkfleetError(f"the capture in {seen.outdir} is {kind}: stop it first")
    names = list((doc.get("summary") or {}).get("files") or []) + [STATE_NAME]
    out = []
    for name in names:
        if name != STATE_NAME and state.capture_file_problem(name):
            raise BlkfleetError(f"{seen.outdir}: {STATE_NAME} names a trace file {name!r}: "
                                f"{state.capture_file_problem(name)}")
        path = os.path.join(seen.outdir, name)
        if not os.path.isfile(path) or os.path.islink(path):
            raise BlkfleetError(f"{path}: not a regular file", code="not_found")
        sha256, size = sha256_file(path)
        out.append({"name": name, "path": path, "size": size, "sha256": sha256})
    return {"action": "files", "output_dir": seen.outdir, "token": doc.get("token"), "state": kind, "files": out}


def _dir_bytes(outdir):
    total = 0
    for root, _, names in os.walk(outdir):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def restore(outdir=None, lock_path=tracefs.LOCK_PATH):
    """Without ``outdir``: restore the ftrace tracer after a crashed capture (refused while a live capture owns
    it). With ``outdir``: recover the dead capture recorded there (its ``stop`` then salvages its files)."""
    done = []
    if outdir:
        seen = inspect(outdir)
        if seen.kind == "running":
            raise BlkfleetError(f"the capture in {seen.outdir} is running (pid {seen.state.get('pid')}); stop it "
                                "instead")
        if seen.kind == "dead":
            done += _recover(seen)
            if done:  # kept for the 'stop' that salvages it: its record is gone now
                doc = dict(seen.state, recovery=list(seen.state.get("recovery") or []) + done)
                if seen.salvaged is not None:
                    doc["salvaged"] = seen.salvaged
                state.save(seen.outdir, doc)
    elif tracefs.recover_tracer(lock_path=lock_path, timeout=2.0):
        done.append("ftrace tracer state restored")
    return {"action": "restore", "restored": bool(done), "done": done,
            "message": "; ".join(done) if done else "nothing to restore"}

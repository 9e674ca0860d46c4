"""The detached capture process: set up, report, trace until told to stop, finish, record the summary.

``control.start`` double-forks it (own session, no terminal, stdin from /dev/null, stdout and stderr to
``DIR/capture.log``, working directory ``/``). Before it touches a tracer it takes its lock and writes its
record under ``/run/blkfleet/capture`` (``rundir``); it drops both only after the final ``capture.json`` is
written, so ``stop`` knows it has finished when the lock is free.

State kept by the daemon, field by field (``capture.json``, also the answer of ``status``):

* ``version``: 2; ``state``: running, stopping, then stopped or failed;
* ``run_id``: 32 hex digits made by ``start``, also in the run record (which record is this capture's);
* ``token``: the caller's run token (``--token``) or null; ``start`` with the same token is idempotent;
* ``pid``, ``pid_start``: the daemon and its start time (for people: blkfleet signals the pid proven by the
  run lock, never this one);
* ``backend``, ``mode``, ``requested_backend``, ``fallback_reason``, ``devices``, ``device_args``,
  ``options``, ``backend_info``: what traces and how;
* ``block_devices``: per traced device its ``dev`` (major:minor), ``size`` and ``logical_block_size`` (bytes),
  read when it started (``block_devices``);
* ``output_dir``, ``log``, ``state_file``, ``host``, ``start_time``, ``start_epoch``, ``recovered``;
* at the end ``stop_reason`` (SIGTERM, SIGINT, duration, error), ``stop_time``, ``stop_epoch``,
  ``duration`` and ``summary`` (``control.finish_summary``).
"""

import datetime
import json
import os
import signal
import socket
import time
import traceback

from .. import codes
from ..device import sysfs
from ..errors import BlkfleetError
from ..files import create_new
from ..process import process_start
from . import outputs, rundir, state
from .blktrace import BlktraceCapture, BlktraceUnavailable
from .ftrace import ftrace_backend

RESERVE_BYTES = 64 << 10  # freed when the disk fills, so that the final state and summary can be written


def now():
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="milliseconds")


def log(text):
    print(f"{now()} {text}", flush=True)


def save_quietly(outdir, doc):
    """state.save for the daemon: a failure is logged, never fatal (the summary is also in the log)."""
    try:
        state.save(outdir, doc)
    except OSError as e:
        log(f"cannot write {state.state_file(outdir)}: {e.strerror or e}")
        print(json.dumps(doc, sort_keys=True), flush=True)


def _report(fd, doc):
    os.write(fd, json.dumps(doc, sort_keys=True).encode())
    os.close(fd)


def _setup(opts, owner):
    """The ``backend.CaptureBackend``, set up (tracer owned and configured, blktrace running);
    ``(backend, fallback reason)``."""
    fallback = None
    if opts.backend in ("auto", "blktrace"):
        try:
            return BlktraceCapture(opts.devices, opts.outdir, opts.act_mask, opts.buffer_kb, opts.buffer_count,
                                   opts.interval).setup(), None
        except BlktraceUnavailable as e:
            if opts.backend == "blktrace":
                raise
            fallback = str(e)
            log(f"falling back to ftrace: {fallback}")
    backend = ftrace_backend(opts.devices, opts.outdir, opts.mode, opts.act_mask, opts.completions,
                             buffer_kb=opts.buffer_kb * opts.buffer_count, interval=opts.interval,
                             use_splice=opts.splice, keep_raw=opts.keep_raw, lock_path=opts.lock_path,
                             owner=owner).setup()
    return backend, fallback


def run(opts, report_fd, recovered, run_id, key):  # pragma: no cover (runs in the detached child)
    """The capture process; returns its exit status."""
    stop = {"signal": None}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)

    def on_signal(signum, frame):
        stop["signal"] = signal.Signals(signum).name

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.set_wakeup_fd(wake_w)
    log(f"capture daemon pid {os.getpid()}: {' '.join(opts.devices)} -> {opts.outdir} (run {run_id}, token "
        f"{opts.token})")

    lock = rundir.DaemonLock(key)
    record = {"key": key, "run_id": run_id, "token": opts.token, "pid": os.getpid(),
              "pid_start": process_start(os.getpid()), "output_dir": opts.outdir, "backend": None}
    try:
        lock.acquire()
        lock.write(record)
        backend, fallback = _setup(opts, {"run_id": run_id, "key": key})
    except BaseException as e:
        msg = str(e) if isinstance(e, BlkfleetError) else f"{type(e).__name__}: {e}"
        _report(report_fd, {"error": msg, "code": e.code if isinstance(e, BlkfleetError) else "internal_error"})
        lock.release()
        return codes.BAD_INPUT
    record.update(backend=backend.name, mode=backend.mode, **backend.recovery())
    start_epoch = time.time()
    doc = {
        "version": state.VERSION, "state": "running", "run_id": run_id, "token": opts.token, "pid": os.getpid(),
        "pid_start": record["pid_start"], "host": socket.gethostname(), "backend": backend.name,
        "mode": backend.mode, "requested_backend": opts.backend, "fallback_reason": fallback,
        "devices": backend.info()["devices"], "block_devices": block_devices(backend.info()["devices"]),
        "device_args": opts.devices, "output_dir": opts.outdir,
        "start_time": now(), "start_epoch": start_epoch, "options": opts.to_json(), "backend_info": backend.info(),
        "log": os.path.join(opts.outdir, opts.log_name), "state_file": state.state_file(opts.outdir),
        "recovered": recovered,
    }
    reserve = os.path.join(opts.outdir, outputs.RESERVE)
    try:
        lock.write(record)
        state.save(opts.outdir, doc)
        with os.fdopen(create_new(reserve, 0o600), "wb") as f:
            f.write(b"\0" * RESERVE_BYTES)
        backend.start()
    except BaseException as e:
        try:
            backend.finish()
            outputs.remove(reserve)
        except BaseException:
            traceback.print_exc()
        save_quietly(opts.outdir, dict(doc, state="failed", stop_reason="error", stop_time=now(), collected=True,
                                       summary=finish_summary({}, f"cannot start the capture: {e}")))
        _report(report_fd, {"error": f"cannot start the capture: {e}"})
        lock.release()
        return codes.BAD_INPUT
    message = (f"capture of {', '.join(doc['devices'])} started with {backend.name}"
               + (f" ({backend.mode})" if backend.name == "ftrace" else "")
               + (f"; blktrace unavailable: {fallback}" if fallback else ""))
    _report(report_fd, dict(state.public(doc), action="start", started=True, state="running", message=message,
                            **({"recovered": recovered} if recovered else {})))

    deadline = start_epoch + opts.duration if opts.duration else None

    def should_stop():
        return stop["signal"] is not None or (deadline is not None and time.time() >= deadline)

    backend.run(should_stop, wake_r)
    reason = stop["signal"] or ("duration" if deadline and time.time() >= deadline else "error")
    log(f"stopping ({reason})")
    doc.update(state="stopping", stop_reason=reason)
    save_quietly(opts.outdir, doc)
    try:
        summary = backend.finish()
        error = backend.error
    except BaseException as e:
        traceback.print_exc()
        summary, error = {}, f"the capture failed while stopping: {e}"
    stop_epoch = time.time()
    doc.update(state="failed" if error and not summary.get("devices") else "stopped", stop_time=now(),
               stop_epoch=stop_epoch, duration=round(stop_epoch - start_epoch, 6),
               summary=finish_summary(summary, error))
    try:
        outputs.remove(reserve)
    except OSError:
        pass
    save_quietly(opts.outdir, doc)
    lock.release()
    log(f"stopped: {doc['summary']['queued']} queued IOs, {doc['summary']['drops']} drops"
        + (f", error: {error}" if error else ""))
    return 0


def block_devices(names):
    """``{name: {dev, size, logical_block_size}}`` of the traced devices (bytes; dev as ``major:minor``): what a
    bundle of the capture tells about its source (``bundle create --trace-dir``)."""
    found = {}
    for name in names:
        facts = sysfs.facts(name)
        found[name] = {"dev": facts["dev"], "size": facts["size_bytes"] or None,
                       "logical_block_size": facts["logical_block_size"]}
    return found


def finish_summary(summary, error):
    """Add totals to a backend summary: queued, records, bytes, file bytes, drops, file list, error."""
    devices = summary.get("devices", {})
    files = []
    totals = {"records": 0, "queued": 0, "bytes": 0, "file_bytes": 0}
    for entry in devices.values():
        entry["file_bytes"] = sum(f["file_bytes"] for f in entry["files"].values())
        files += sorted(entry["files"], key=lambda n: int(n.rsplit(".", 1)[1]))
        for key in totals:
            totals[key] += entry[key]
    lost = summary.get("lost", {})
    if lost:
        drops = sum(v["events"] for v in lost.values())
        reports = sum(v["reports"] for v in lost.values())
        for entry in devices.values():
            entry["drops"] = drops
    else:
        drops = sum(entry.get("drops", 0) for entry in devices.values())
        reports = sum(1 for entry in devices.values() if entry.get("drops"))
    out = dict(summary, **totals)
    out.update(files=files, drops=drops, drop_reports=reports, error=error)
    return out

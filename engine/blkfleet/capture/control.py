"""Capture as a detached background job: ``start`` / ``stop`` / ``status`` / ``restore``.

``start`` validates what it can, then double-forks a daemon (own session, no terminal, stdin from
/dev/null, stdout and stderr to ``DIR/capture.log``) that sets up the backend, writes ``DIR/capture.json``
and reports one JSON document back through a pipe before the parent returns. The daemon traces until it
receives SIGTERM or SIGINT (``stop``) or ``--duration`` elapses, then finishes the backend (tracer restored,
files written) and stores the summary in ``DIR/capture.json`` with ``state: stopped``.

A state naming a live process is verified by the process start time in ``/proc/PID/stat`` (a reused pid is
not mistaken for the capture). A state whose process is gone before it stopped is *dead*: ``start``,
``stop``, ``status`` and ``restore`` detect it, put the tracer back (``tracefs.restore()``, or SIGINT to an
orphaned blktrace) and ``stop`` salvages what was captured.
"""

import datetime
import json
import os
import select
import signal
import socket
import sys
import time
import traceback

from ..errors import BlkfleetError
from . import tracefs
from .blktrace import BlktraceCapture, BlktraceUnavailable, stop_orphan
from .ftrace import FtraceCapture, read_cpu_stats

STATE_NAME = "capture.json"
LOG_NAME = "capture.log"
RESERVE_NAME = ".capture.reserve"
RESERVE_BYTES = 64 << 10  # freed when the disk fills, so that the final state and summary can be written
STATE_VERSION = 1
BACKENDS = ("auto", "blktrace", "ftrace")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 300.0


def _now():
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="milliseconds")


def state_path(outdir):
    return os.path.join(os.path.abspath(outdir), STATE_NAME)


def load_state(outdir):
    try:
        with open(state_path(outdir)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise BlkfleetError(f"cannot read {state_path(outdir)}: {e}") from None


def save_state(outdir, state):
    path = state_path(outdir)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def process_start(pid):
    """The start time (clock ticks since boot) of a process, or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_alive(state):
    pid = state.get("pid")
    return bool(pid) and process_start(pid) == state.get("pid_start")


def classify(state):
    """running, stopped, failed, dead (process gone before it stopped) or none."""
    if state is None:
        return "none"
    if state.get("state") in ("stopped", "failed", "salvaged"):
        return state["state"]
    return "running" if is_alive(state) else "dead"


# -- start ------------------------------------------------------------------------------------------------


class StartOptions:
    def __init__(self, devices, outdir, backend="auto", act_mask="queue", buffer_kb=512, buffer_count=8,
                 duration=None, mode="auto", interval=0.05, keep_raw=False, force=False, splice=None,
                 lock_path=tracefs.LOCK_PATH):
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

    def to_json(self):
        return {"act_mask": self.act_mask, "buffer_kb": self.buffer_kb, "buffer_count": self.buffer_count,
                "duration": self.duration, "mode": self.mode, "interval": self.interval,
                "keep_raw": self.keep_raw}


def _validate(opts):
    if opts.backend not in BACKENDS:
        raise BlkfleetError(f"unknown backend {opts.backend!r} (known: {', '.join(BACKENDS)})")
    if not opts.devices:
        raise BlkfleetError("no device given (--device DEV)")
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
        tracefs.require_blk_tracer(tracefs.find_tracefs())
    try:
        os.makedirs(opts.outdir, exist_ok=True)
    except OSError as e:
        raise BlkfleetError(f"cannot create {opts.outdir}: {e.strerror}") from None
    if not os.access(opts.outdir, os.W_OK):
        raise BlkfleetError(f"{opts.outdir}: not writable")
    return names


def _recover_dead(outdir, state):
    """Put the tracer back after a capture whose process died; returns what was done (for messages)."""
    done = []
    if state.get("backend") == "ftrace":
        try:
            if tracefs.restore(lock_path=state.get("lock_path", tracefs.LOCK_PATH), timeout=2.0):
                done.append("ftrace tracer state restored")
        except tracefs.TracerBusy:
            done.append("tracer now owned by another capture: not touched")
    bt_pid = (state.get("backend_info") or {}).get("blktrace_pid")
    if bt_pid and stop_orphan(bt_pid):
        done.append(f"orphaned blktrace (pid {bt_pid}) stopped")
    return done


def start(opts, report_timeout=START_TIMEOUT):
    """Start a detached capture; returns the JSON document to print."""
    names = _validate(opts)
    state = load_state(opts.outdir)
    kind = classify(state)
    if kind == "running":
        if sorted(state.get("devices", [])) == sorted(names):
            return dict(_public(state), action="start", started=False, state="running",
                        message=f"a capture of {', '.join(state['devices'])} is already running in {opts.outdir} "
                                f"(pid {state['pid']}, since {state['start_time']}): nothing started")
        raise BlkfleetError(f"a capture of {', '.join(state['devices'])} is already running in {opts.outdir} "
                            f"(pid {state['pid']}); stop it first or use another directory")
    recovered = []
    if kind == "dead":
        recovered = _recover_dead(opts.outdir, state)
        if not opts.force:
            what = "; ".join(recovered) or "nothing to restore"
            raise BlkfleetError(f"the capture in {opts.outdir} died (pid {state.get('pid')} is gone; {what}); "
                                "run 'capture stop' to collect what it wrote, or start with --force")
    elif kind != "none" and not opts.force:
        raise BlkfleetError(f"{opts.outdir} holds a finished capture ({kind} at {state.get('stop_time')}); "
                            "use another directory or --force to overwrite it")
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
            code = _daemon(opts, w, recovered)
        except BaseException:
            try:
                os.write(w, json.dumps({"error": traceback.format_exc().strip().splitlines()[-1]}).encode())
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(w)
    os.waitpid(pid, 0)
    data = b""
    deadline = time.monotonic() + report_timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            os.close(r)
            raise BlkfleetError(f"the capture daemon did not report within {report_timeout:.0f} s "
                                f"(see {os.path.join(opts.outdir, LOG_NAME)})")
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    try:
        doc = json.loads(data.decode())
    except ValueError:
        raise BlkfleetError(f"the capture daemon failed to start (see {os.path.join(opts.outdir, LOG_NAME)})") \
            from None
    if "error" in doc:
        raise BlkfleetError(doc["error"])
    return doc


def _public(state):
    keys = ("pid", "backend", "mode", "requested_backend", "fallback_reason", "devices", "output_dir",
            "start_time", "options", "backend_info", "host", "log", "state_file")
    return {k: state.get(k) for k in keys}


def _redirect(outdir):
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    log = os.open(os.path.join(outdir, LOG_NAME), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def _daemon(opts, report_fd, recovered):  # pragma: no cover (runs in the detached child)
    """The capture process: set up, report, trace until told to stop, finish, record the summary."""
    os.chdir("/")
    _redirect(opts.outdir)
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
    print(f"{_now()} capture daemon pid {os.getpid()}: {' '.join(opts.devices)} -> {opts.outdir}", flush=True)

    fallback = None
    backend = None
    try:
        if opts.backend in ("auto", "blktrace"):
            bt = BlktraceCapture(opts.devices, opts.outdir, opts.act_mask, opts.buffer_kb, opts.buffer_count,
                                 opts.interval)
            try:
                backend = bt.setup()
            except BlktraceUnavailable as e:
                if opts.backend == "blktrace":
                    raise
                fallback = str(e)
                try:
                    os.unlink(bt.log_path)
                except OSError:
                    pass
                for name in bt.names:
                    for f in os.listdir(opts.outdir):
                        if f.startswith(f"{name}.blktrace."):
                            os.unlink(os.path.join(opts.outdir, f))
                print(f"{_now()} falling back to ftrace: {fallback}", flush=True)
        if backend is None:
            backend = FtraceCapture(opts.devices, opts.outdir, opts.act_mask, opts.buffer_kb * opts.buffer_count,
                                    mode=opts.mode, interval=opts.interval, use_splice=opts.splice,
                                    keep_raw=opts.keep_raw, lock_path=opts.lock_path).setup()
    except BaseException as e:
        msg = str(e) if isinstance(e, BlkfleetError) else f"{type(e).__name__}: {e}"
        os.write(report_fd, json.dumps({"error": msg}).encode())
        os.close(report_fd)
        return 2
    start_epoch = time.time()
    state = {
        "version": STATE_VERSION, "state": "running", "pid": os.getpid(), "pid_start": process_start(os.getpid()),
        "host": socket.gethostname(), "backend": backend.name, "mode": backend.mode,
        "requested_backend": opts.backend, "fallback_reason": fallback, "devices": backend.info()["devices"],
        "device_args": opts.devices, "output_dir": opts.outdir, "start_time": _now(), "start_epoch": start_epoch,
        "options": opts.to_json(), "backend_info": backend.info(), "lock_path": opts.lock_path,
        "log": os.path.join(opts.outdir, LOG_NAME), "state_file": state_path(opts.outdir),
        "recovered": recovered,
    }
    try:
        save_state(opts.outdir, state)
        with open(os.path.join(opts.outdir, RESERVE_NAME), "wb") as f:
            f.write(b"\0" * RESERVE_BYTES)
        backend.start()
    except BaseException as e:
        backend.finish()
        os.write(report_fd, json.dumps({"error": f"cannot start the capture: {e}"}).encode())
        os.close(report_fd)
        return 2
    doc = dict(_public(state), action="start", started=True, state="running",
               message=f"capture of {', '.join(state['devices'])} started with {backend.name}"
                       + (f" ({backend.mode})" if backend.name == "ftrace" else "")
                       + (f"; blktrace unavailable: {fallback}" if fallback else ""))
    if recovered:
        doc["recovered"] = recovered
    os.write(report_fd, json.dumps(doc, sort_keys=True).encode())
    os.close(report_fd)

    deadline = start_epoch + opts.duration if opts.duration else None

    def should_stop():
        return stop["signal"] is not None or (deadline is not None and time.time() >= deadline)

    backend.run(should_stop, wake_r)
    reason = stop["signal"] or ("duration" if deadline and time.time() >= deadline else "error")
    print(f"{_now()} stopping ({reason})", flush=True)
    state.update(state="stopping", stop_reason=reason)
    _save_quietly(opts.outdir, state)
    try:
        summary = backend.finish()
        error = backend.error
    except BaseException as e:
        traceback.print_exc()
        summary, error = {}, f"the capture failed while stopping: {e}"
    stop_epoch = time.time()
    state.update(state="failed" if error and not summary.get("devices") else "stopped", stop_time=_now(),
                 stop_epoch=stop_epoch, duration=round(stop_epoch - start_epoch, 6),
                 summary=finish_summary(summary, error))
    try:
        os.unlink(os.path.join(opts.outdir, RESERVE_NAME))
    except OSError:
        pass
    _save_quietly(opts.outdir, state)
    print(f"{_now()} stopped: {state['summary']['queued']} queued IOs, {state['summary']['drops']} drops"
          + (f", error: {error}" if error else ""), flush=True)
    return 0


def _save_quietly(outdir, state):
    """save_state for the daemon: a failure is logged, never fatal (the summary is also in the log)."""
    try:
        save_state(outdir, state)
    except OSError as e:
        try:
            os.unlink(state_path(outdir) + f".{os.getpid()}.tmp")
        except OSError:
            pass
        print(f"{_now()} cannot write {state_path(outdir)}: {e.strerror or e}", flush=True)
        print(json.dumps(state, sort_keys=True), flush=True)


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


# -- stop / status / restore ------------------------------------------------------------------------------


def _wait_gone(state, timeout):
    deadline = time.monotonic() + timeout
    while is_alive(state):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _salvage(outdir, state, recovered):
    """Summary for a capture whose process died: convert what raw pages it left, count its files."""
    error = (f"the capture process (pid {state.get('pid')}) died before it stopped; "
             + ("; ".join(recovered) if recovered else "no tracer state left to restore")
             + "; events after its death are missing and drops are unknown")
    info = state.get("backend_info") or {}
    summary = {}
    try:
        if state.get("backend") == "ftrace" and state.get("mode") in ("raw", "events"):
            from . import rawpages

            raw_dir = os.path.join(outdir, "raw")
            raw_files = {int(f[3:]): os.path.join(raw_dir, f) for f in os.listdir(raw_dir)
                         if f.startswith("cpu") and f[3:].isdigit()} if os.path.isdir(raw_dir) else {}
            layout = rawpages.PageLayout(page_size=info.get("page_size", 4096))
            names = _dev_names(state)
            decoder = None
            if state["mode"] == "events":
                from .bioevents import BioQueueDecoder

                fields = {k: tuple(v) for k, v in info["event_fields"].items()}
                decoder = BioQueueDecoder(info["event_id"], fields, layout.byteorder)
            summary = rawpages.convert(raw_files, outdir, layout, info.get("blk_entry_type"),
                                       ncpus=info.get("ncpus"), names=names, devices=list(names), decoder=decoder)
        else:
            from .blktrace import summarize_files

            summary = summarize_files(outdir, state.get("devices", []))
    except (OSError, BlkfleetError) as e:
        error += f"; salvage failed: {e}"
    return finish_summary(summary, error)


def _dev_names(state):
    names = {}
    for name in state.get("devices", []):
        try:
            with open(f"/sys/class/block/{name}/dev") as f:
                major, minor = (int(x) for x in f.read().split(":"))
            names[major << 20 | minor] = name
        except (OSError, ValueError):
            pass
    return names


def stop(outdir, timeout=STOP_TIMEOUT):
    """Stop the capture in ``outdir``; returns the JSON document (summary) to print."""
    outdir = os.path.abspath(outdir)
    state = load_state(outdir)
    kind = classify(state)
    if kind == "none":
        raise BlkfleetError(f"no capture in {outdir} (no {STATE_NAME})")
    if kind in ("stopped", "failed", "salvaged"):
        return _stop_doc(state, False, f"the capture in {outdir} had already stopped "
                                       f"(at {state.get('stop_time')}, {state.get('stop_reason', 'stop')}): "
                                       "nothing to do")
    if kind == "running":
        try:
            os.kill(state["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not _wait_gone(state, timeout):
            raise BlkfleetError(f"the capture (pid {state['pid']}) did not stop within {timeout:.0f} s; "
                                f"it is still writing (see {state.get('log')}); run stop again later")
        state = load_state(outdir)
        if classify(state) in ("stopped", "failed"):
            return _stop_doc(state, True, f"capture of {', '.join(state['devices'])} stopped")
    recovered = _recover_dead(outdir, state)
    try:
        os.unlink(os.path.join(outdir, RESERVE_NAME))
    except OSError:
        pass
    now = time.time()
    state.update(state="salvaged", stop_time=_now(), stop_epoch=now, stop_reason="dead",
                 duration=round(now - state.get("start_epoch", now), 6),
                 summary=_salvage(outdir, state, recovered))
    try:
        save_state(outdir, state)
    except OSError as e:
        state["summary"]["error"] += f"; cannot write {state_path(outdir)}: {e.strerror or e}"
    return _stop_doc(state, True, f"the capture (pid {state.get('pid')}) had died; "
                                  + ("; ".join(recovered) or "nothing to restore") + "; its files were salvaged")


def _stop_doc(state, stopped, message):
    summary = dict(state.get("summary") or {})
    doc = dict(_public(state), **summary)
    doc.update(action="stop", stopped=stopped, state=state.get("state"), message=message,
               stop_time=state.get("stop_time"), duration=state.get("duration"),
               stop_reason=state.get("stop_reason"))
    return doc


def status(outdir):
    outdir = os.path.abspath(outdir)
    state = load_state(outdir)
    kind = classify(state)
    if kind == "none":
        return {"action": "status", "state": "none", "output_dir": outdir,
                "message": f"no capture in {outdir}"}
    doc = dict(_public(state), action="status", state=kind)
    if kind == "running":
        doc["elapsed"] = round(time.time() - state["start_epoch"], 3)
        doc["message"] = f"capture of {', '.join(state['devices'])} running for {doc['elapsed']:.1f} s"
        doc["bytes_written"] = _dir_bytes(outdir)
        if state.get("backend") == "ftrace":
            stats = read_cpu_stats(tracefs.find_tracefs(mount=False), (state.get("backend_info") or {}).get("ncpus", 1))
            doc["kernel"] = {str(c): s for c, s in sorted(stats.items())}
    elif kind == "dead":
        recovered = _recover_dead(outdir, state)
        doc["recovered"] = recovered
        doc["message"] = (f"the capture process (pid {state.get('pid')}) died before it stopped; "
                          + ("; ".join(recovered) or "nothing to restore") + "; run 'capture stop' to salvage it")
    else:
        doc.update({k: state.get(k) for k in ("stop_time", "duration", "stop_reason")})
        summary = state.get("summary") or {}
        doc.update({k: summary.get(k) for k in ("queued", "records", "drops", "error", "files")})
        doc["message"] = f"the capture in {outdir} is {kind} (at {state.get('stop_time')})"
    return doc


def _dir_bytes(outdir):
    total = 0
    for root, _, files in os.walk(outdir):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def restore(outdir=None, lock_path=tracefs.LOCK_PATH):
    """Restore the ftrace tracer after a crashed capture (refused while a live capture owns it)."""
    done = []
    if outdir:
        state = load_state(outdir)
        if classify(state) == "running":
            raise BlkfleetError(f"the capture in {os.path.abspath(outdir)} is running (pid {state['pid']}); "
                                "stop it instead")
        if classify(state) == "dead":
            done += _recover_dead(outdir, state)
    restored = tracefs.restore(lock_path=lock_path, timeout=2.0)
    if restored:
        done.append("ftrace tracer state restored")
    return {"action": "restore", "restored": bool(done), "done": done,
            "message": "; ".join(done) if done else "nothing to restore"}

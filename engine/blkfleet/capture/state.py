"""``DIR/capture.json``: the capture's state and summary, read only from a directory only root can change.

The state is what users and the collection read (pid, backend, devices, then the summary). blkfleet itself
takes no path, lock or pid to signal from it (those come from ``rundir``), and reads it defensively all the
same: the directory must be trusted (``files.untrusted_reason``), the file a regular file that only root can
write, and every field it uses has the expected type, with strings free of control characters (a message
that quotes them stays one line). Anything else is one ``BlkfleetError`` naming the file.
"""

import math
import os
import re
import stat

from ..errors import BlkfleetError
from ..files import read_json, untrusted_reason, write_json_file
from ..names import name_problem

STATE_NAME = "capture.json"
VERSION = 2
STATE_MAX_BYTES = 16 << 20
STATES = ("starting", "running", "stopping", "stopped", "failed", "salvaged")
FINISHED = ("stopped", "failed", "salvaged")
BACKEND_NAMES = ("blktrace", "ftrace")
MAX_DEPTH = 8
MAX_TEXT = 65536
TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")
CAPTURE_FILE_RE = re.compile(r"(?P<dev>.+)\.blktrace\.(?P<cpu>[0-9]{1,5})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUMBER_DEV = re.compile(r"[0-9]{1,4},[0-9]{1,7}")

# Top-level fields and their types (None allowed for all but these four).
_TYPES = {
    "version": int, "state": str, "run_id": str, "token": str, "pid": int, "pid_start": int, "host": str,
    "backend": str, "mode": str, "requested_backend": str, "fallback_reason": str, "devices": list,
    "device_args": list, "output_dir": str, "start_time": str, "start_epoch": (int, float), "options": dict,
    "backend_info": dict, "log": str, "state_file": str, "recovered": list, "stop_reason": str,
    "stop_time": str, "stop_epoch": (int, float), "duration": (int, float), "summary": dict,
    "recovery": list, "salvaged": dict, "collected": bool, "block_devices": dict,
}
_REQUIRED = ("version", "state")


def state_file(outdir):
    """The path of ``capture.json`` in ``outdir`` (the state's ``state_file``)."""
    return os.path.join(os.path.abspath(outdir), STATE_NAME)


def token_problem(token):
    """Why ``token`` is not a valid run token, or None."""
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        return "1 to 128 letters, digits and '.', '_', ':', '@', '+', '-', not starting with a sign"
    return None


def check_token(token):
    problem = token_problem(token)
    if problem:
        raise BlkfleetError(f"invalid run token {token!r}: {problem}")
    return token


def capture_file_problem(name):
    """Why ``name`` is not a plain ``DEV.blktrace.CPU`` file name, or None (DEV: a safe device name, or
    ``MAJOR,MINOR`` for a device that had gone when its events were written)."""
    if not isinstance(name, str):
        return "not a string"
    m = CAPTURE_FILE_RE.fullmatch(name)
    if not m:
        return "not DEV.blktrace.CPU"
    if name_problem(m.group("dev")) and not _NUMBER_DEV.fullmatch(m.group("dev")):
        return f"bad device name: {name_problem(m.group('dev'))}"
    return None


def _walk(value, where, depth=0):
    """Refuse nesting deeper than MAX_DEPTH, non-finite numbers, huge integers and control characters."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: nested too deeply")
    if isinstance(value, str):
        if len(value) > MAX_TEXT or _CONTROL.search(value):
            raise ValueError(f"{where}: a string with control characters or too long")
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if abs(value) >= 1 << 63:
            raise ValueError(f"{where}: integer out of range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: not a finite number")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, dict):
        for k, item in value.items():
            if len(k) > MAX_TEXT or _CONTROL.search(k):
                raise ValueError(f"{where}: a key with control characters or too long")
            _walk(item, f"{where}.{k}"[:80], depth + 1)
    else:
        raise ValueError(f"{where}: unexpected value")


def _is(value, kind):
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, kind)


def problem(doc):
    """Why ``doc`` is not a capture state blkfleet can use, or None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    try:
        _walk(doc, "state")
    except ValueError as e:
        return str(e)
    for name, kind in _TYPES.items():
        value = doc.get(name)
        if value is None and name not in _REQUIRED:
            continue
        if not _is(value, kind):
            return f"field {name!r} has the wrong type"
    if doc["state"] not in STATES:
        return f"unknown state {doc['state']!r}"
    if doc.get("backend") is not None and doc["backend"] not in BACKEND_NAMES:
        return f"unknown backend {doc['backend']!r}"
    if doc.get("token") is not None and token_problem(doc["token"]):
        return "invalid token"
    for name in doc.get("devices") or ():
        if name_problem(name):
            return f"invalid device name {name!r}"
    for name in ("device_args", "recovered", "recovery"):
        if not all(isinstance(v, str) for v in doc.get(name) or ()):
            return f"field {name!r} holds a non-string"
    summary = doc.get("summary")
    if summary is not None:
        files = summary.get("files")
        if files is not None and not isinstance(files, list):
            return "summary.files is not a list"
        for name in files or ():
            if capture_file_problem(name):
                return f"summary.files: {name!r} is not a plain DEV.blktrace.CPU name"
        if summary.get("error") is not None and not isinstance(summary["error"], str):
            return "summary.error is not a string"
        for name in ("queued", "records", "bytes", "file_bytes", "drops", "drop_reports"):
            if summary.get(name) is not None and not _is(summary[name], int):
                return f"summary.{name} is not an integer"
        devices = summary.get("devices")
        if devices is not None and not (isinstance(devices, dict)
                                        and all(isinstance(v, dict) for v in devices.values())):
            return "summary.devices is not an object of objects"
    return None


def public(doc):
    """The fields of a state that ``start``, ``stop`` and ``status`` answer with."""
    keys = ("pid", "backend", "mode", "requested_backend", "fallback_reason", "devices", "block_devices",
            "output_dir", "start_time", "options", "backend_info", "host", "log", "state_file", "token", "run_id")
    return {k: doc.get(k) for k in keys}


def refuse_untrusted(outdir):
    """BlkfleetError unless the existing ``outdir`` is a directory only root can change."""
    reason = untrusted_reason(outdir)
    if reason:
        raise BlkfleetError(f"{outdir}: refusing this capture directory: {reason} "
                            "(use a directory only root can write to, such as /var/lib/blkfleet/capture)")


def load(outdir):
    """The validated state in ``outdir``, or None when there is no state (or no directory)."""
    outdir = os.path.abspath(outdir)
    if not os.path.lexists(outdir):
        return None
    refuse_untrusted(outdir)
    path = state_file(outdir)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise BlkfleetError(f"{path}: refusing the capture state: not a regular file")
    if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        raise BlkfleetError(f"{path}: refusing the capture state: owned by uid {st.st_uid} or writable by others")
    doc = read_json(path, "capture state", max_bytes=STATE_MAX_BYTES, nofollow=True)
    why = problem(doc)
    if why:
        raise BlkfleetError(f"{path}: not a usable capture state: {why}")
    return doc


def save(outdir, doc):
    """Write the state atomically (a new file beside it, renamed over it: a link there is replaced)."""
    write_json_file(state_file(outdir), doc, mode=0o644)

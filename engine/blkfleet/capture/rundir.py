"""The proof that a capture daemon runs: its lock and record under ``/run/blkfleet/capture`` (root only).

The output directory belongs to whoever named it, so nothing that decides what root signals, restores or
unmounts is read from it. For the output directory with device and inode numbers D and I (the *key* ``D-I``
in hex), the daemon

* holds an exclusive ``flock`` on ``RUN_DIR/KEY.lock`` from before it touches the tracer until it has
  written its final state: the lock is held exactly while the daemon lives (the kernel drops it when the
  process dies, SIGKILL included);
* keeps ``RUN_DIR/KEY.json`` (mode 0600): its pid and start time, the run id and token it also writes to
  ``capture.json``, the output directory, and what a recovery must undo (the blktrace pid and start time,
  whether it mounted debugfs), plus what a salvage of its ring buffers recovered.

A pid is signalled only when ``/proc/locks`` names it as the holder of that lock *and* it is the recorded
pid with the recorded start time: a reused pid holds no lock, and a pid named in a file a user wrote is never
looked at. The record of a daemon that died stays until a ``stop``, ``start --force`` or ``restore -D``
recovers it.
"""

import errno
import fcntl
import os
import re
import stat
import time

from ..errors import BlkfleetError
from ..files import private_dir, read_json, trusted_dir, untrusted_reason, write_json_file
from ..process import process_start
from .tracefs import RUN_ROOT

RUN_DIR = os.path.join(RUN_ROOT, "capture")
KEY_RE = re.compile(r"[0-9a-f]{1,16}-[0-9a-f]{1,16}")
RUN_ID_RE = re.compile(r"[0-9a-f]{32}")
LOCK_WAIT = 2.0
RECORD_MAX = 1 << 16


def key_of(outdir):
    """The key of an existing output directory: its device and inode numbers."""
    st = os.stat(outdir)
    return f"{st.st_dev:x}-{st.st_ino:x}"


def lock_path(key):
    return os.path.join(RUN_DIR, f"{key}.lock")


def record_path(key):
    return os.path.join(RUN_DIR, f"{key}.json")


def _run_dir_ok():
    """Whether RUN_DIR exists; BlkfleetError if it does but others could change it."""
    if not os.path.lexists(RUN_DIR):
        return False
    reason = untrusted_reason(RUN_DIR)
    if reason:
        raise BlkfleetError(f"{RUN_DIR}: refusing the capture run directory: {reason}")
    return True


class DaemonLock:
    """The daemon's side: take the lock (refused while another daemon holds it), keep the record."""

    def __init__(self, key):
        self.key = key
        self.fd = None

    def acquire(self):
        trusted_dir(RUN_ROOT, "blkfleet run directory", mode=0o700)
        private_dir(RUN_DIR, "capture run directory")
        path = lock_path(self.key)
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise BlkfleetError("another capture daemon runs for this directory") from None
                time.sleep(0.05)
                continue
            # The path may have been unlinked (a daemon finishing) between open and flock: retry on the new one.
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return self
            os.close(fd)

    def write(self, record):
        write_json_file(record_path(self.key), record, mode=0o600)

    def release(self):
        """Remove the record and the lock file, then drop the lock (the daemon has written its final state);
        nothing when the lock was never taken (they are another daemon's)."""
        if self.fd is None:
            return
        for path in (record_path(self.key), lock_path(self.key)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = None


def _lock_holders(st):
    """Pids that /proc/locks names as holding a FLOCK WRITE lock on the file with this stat."""
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    pids = []
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return pids
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] == "->" or parts[1] != "FLOCK" or parts[3] != "WRITE":
            continue
        try:
            major, minor, ino = parts[5].split(":")
            if (int(major, 16), int(minor, 16), int(ino)) == want:
                pids.append(int(parts[4]))
        except ValueError:
            continue
    return pids


def _check_record(doc, key):
    if not isinstance(doc, dict):
        return "not an object"
    for name, kind in (("pid", int), ("pid_start", int), ("run_id", str), ("output_dir", str)):
        if not isinstance(doc.get(name), kind) or isinstance(doc.get(name), bool):
            return f"no valid {name}"
    if doc.get("key") != key or not RUN_ID_RE.fullmatch(doc["run_id"]):
        return "not the record of this directory"
    return None


def read_record(key):
    """The record of ``key`` (validated), or None if there is none."""
    if not KEY_RE.fullmatch(key) or not _run_dir_ok():
        return None
    path = record_path(key)
    if not os.path.lexists(path):
        return None
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        raise BlkfleetError(f"{path}: refusing the capture record: not a regular file only root can write")
    doc = read_json(path, "capture record", max_bytes=RECORD_MAX, nofollow=True)
    problem = _check_record(doc, key)
    if problem:
        raise BlkfleetError(f"{path}: refusing the capture record: {problem}")
    return doc


def daemon(key):
    """``(alive, pid, record)`` for ``key``: ``alive`` when a process holds the lock; ``pid`` the daemon's pid
    only when proven (the lock's holder in /proc/locks is the recorded pid with the recorded start time)."""
    if not KEY_RE.fullmatch(key) or not _run_dir_ok():
        return False, None, None
    for _ in range(3):
        try:
            fd = os.open(lock_path(key), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False, None, read_record(key)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise BlkfleetError(f"{lock_path(key)}: refusing a symbolic link") from None
            raise
        try:
            st = os.fstat(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                try:
                    unchanged = os.stat(lock_path(key), follow_symlinks=False).st_ino == st.st_ino
                except FileNotFoundError:
                    unchanged = False
                if unchanged:
                    return False, None, read_record(key)
                continue  # a new daemon replaced the lock file meanwhile: look again
            record = read_record(key)
            holders = _lock_holders(st)
            pid = None
            if record and holders == [record["pid"]] and process_start(record["pid"]) == record["pid_start"]:
                pid = record["pid"]
            return True, pid, record
        finally:
            os.close(fd)
    return True, None, read_record(key)


def update(key, run_id, **fields):
    """Add ``fields`` to the record of ``key`` when it is the record of ``run_id`` (a dead daemon's, under the
    tracer lock); False if there is no such record."""
    try:
        record = read_record(key)
    except BlkfleetError:
        return False
    if not record or record["run_id"] != run_id:
        return False
    record.update(fields)
    write_json_file(record_path(key), record, mode=0o600)
    return True


def forget(key):
    """Remove the record and lock file of a daemon that is gone (after its recovery)."""
    alive, _, _ = daemon(key)
    if alive:
        return False
    for path in (record_path(key), lock_path(key)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return True

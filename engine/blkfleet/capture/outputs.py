"""The files of a capture in its output directory: where they are made, published and discarded.

Trace files are written into a private staging directory ``DIR/.capture.tmp`` (mode 0700, made fresh) and
renamed into ``DIR`` once complete: a link placed at a final name is replaced, never followed, and a capture
that died leaves its partial files where ``stop`` finds them. Every other file blkfleet makes in ``DIR`` is
created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (``files.create_new``) after removing what an earlier capture
left under that name; removal unlinks links themselves and never descends through them.
"""

import os
import stat

from .state import STATE_NAME, capture_file_problem

STAGING = ".capture.tmp"
RAW = "raw"
RESERVE = ".capture.reserve"
BLKTRACE_LOG = "blktrace.log"
SCRATCH = (STAGING, RAW, RESERVE, BLKTRACE_LOG)


def make_staging(outdir):
    """A fresh private staging directory in ``outdir`` (FileExistsError if one is left: discard it first)."""
    path = os.path.join(outdir, STAGING)
    os.mkdir(path, 0o700)
    return path


def make_raw(outdir):
    """A fresh ``DIR/raw`` for ring-buffer pages (FileExistsError if one is left)."""
    path = os.path.join(outdir, RAW)
    os.mkdir(path, 0o700)
    return path


def remove(path):
    """Remove a file, a link or a directory tree of ours (links are unlinked, never followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        for name in os.listdir(path):
            remove(os.path.join(path, name))
        os.rmdir(path)
    else:
        os.unlink(path)


def publish(staging, outdir):
    """Move the complete ``DEV.blktrace.CPU`` files of ``staging`` into ``outdir`` (replacing whatever is at
    those names) and remove the staging directory; returns the names moved."""
    moved = []
    if not os.path.isdir(staging) or os.path.islink(staging):
        return moved
    for name in sorted(os.listdir(staging)):
        src = os.path.join(staging, name)
        if capture_file_problem(name) is None and stat.S_ISREG(os.lstat(src).st_mode):
            os.replace(src, os.path.join(outdir, name))
            moved.append(name)
    remove(staging)
    return moved


def capture_files(outdir):
    """The names of the ``DEV.blktrace.CPU`` files in ``outdir``."""
    return sorted(n for n in os.listdir(outdir) if capture_file_problem(n) is None)


def discard(outdir, data=True):
    """Remove what a capture left in ``outdir``: its scratch files and, with ``data``, its trace files and state
    (``capture.log`` stays: it is appended to)."""
    for name in SCRATCH:
        remove(os.path.join(outdir, name))
    if data:
        for name in capture_files(outdir):
            remove(os.path.join(outdir, name))
        remove(os.path.join(outdir, STATE_NAME))

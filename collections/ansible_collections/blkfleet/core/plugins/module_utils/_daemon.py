# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Start, find and stop a long-lived process that outlives the module. Private to blkfleet.core.

The process gets its own session (setsid), stdin from /dev/null, stdout and stderr to a log file, no inherited
descriptors and ``cwd=/``, so the Ansible connection never stays open through it and it survives the end of
the SSH session. Its pidfile is written atomically. "Running" means the pidfile names a live, non-zombie
process whose command line contains ``match`` (guards against PID reuse).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time


def _write_atomic(path, text):
    tmp = '%s.tmp.%d' % (path, os.getpid())
    with open(tmp, 'w') as f:
        f.write(text)
    os.rename(tmp, path)


def _alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ('Z', 'X')


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().replace(b'\0', b' ').decode('utf-8', 'replace')
    except OSError:
        return ''


def read_pid(pidfile):
    try:
        with open(pidfile) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def running_pid(pidfile, match):
    """PID from ``pidfile`` if that process is alive and its command line contains ``match``, else None."""
    pid = read_pid(pidfile)
    if pid is None or pid <= 1 or not _alive(pid):
        return None
    if match and match not in _cmdline(pid):
        return None
    return pid


def spawn(argv, pidfile, logfile, env=None, cwd='/'):
    """Start ``argv`` detached; write its PID to ``pidfile``; return the PID."""
    for path in (pidfile, logfile):
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
    with open(os.devnull, 'rb') as devnull, open(logfile, 'ab') as log:
        proc = subprocess.Popen(argv, stdin=devnull, stdout=log, stderr=subprocess.STDOUT, close_fds=True,
                                cwd=cwd, env=env, start_new_session=True)
    _write_atomic(pidfile, '%d\n' % proc.pid)
    # The module exits soon; the child is then reparented. Drop the Popen handle without waiting.
    proc.returncode = 0
    return proc.pid


def stop(pidfile, match, sig=signal.SIGINT, timeout=30.0, kill_after=True):
    """Stop the process named by ``pidfile``: ``sig``, wait ``timeout`` s, then SIGKILL if ``kill_after``.

    Returns ``(was_running, stopped)``. The pidfile is removed once the process is gone (or was not running).
    """
    pid = running_pid(pidfile, match)
    if pid is None:
        _remove(pidfile)
        return False, True
    signals = [sig] + ([signal.SIGKILL] if kill_after else [])
    for current in signals:
        try:
            os.kill(pid, current)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + (timeout if current == sig else 5.0)
        while time.monotonic() < deadline and _alive(pid):
            _reap(pid)
            time.sleep(0.02)
        if not _alive(pid):
            break
    stopped = not _alive(pid)
    if stopped:
        _remove(pidfile)
    return True, stopped


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import signal
import sys
import time

from ansible_collections.blkfleet.core.plugins.module_utils import _daemon

SCRIPT = '''
import os, signal, sys, time
def bye(signum, frame):
    print("stopping on", signum, flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, bye)
print("started", os.getsid(0) == os.getpid(), flush=True)
while True:
    time.sleep(0.05)
'''

STUBBORN = 'import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint("up", flush=True)\n' \
           'while True:\n    time.sleep(0.05)\n'


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_spawn_running_stop(tmp_path):
    pidfile, log = str(tmp_path / 'run' / 'd.pid'), str(tmp_path / 'd.log')
    marker = 'blkfleet-daemon-test-%d' % os.getpid()
    pid = _daemon.spawn([sys.executable, '-c', SCRIPT, marker], pidfile, log)
    try:
        assert _daemon.read_pid(pidfile) == pid
        assert wait_for(lambda: 'started True' in open(log).read())  # own session
        assert _daemon.running_pid(pidfile, marker) == pid
        assert _daemon.running_pid(pidfile, 'some-other-command') is None  # PID reuse guard
        was_running, stopped = _daemon.stop(pidfile, marker, sig=signal.SIGINT, timeout=10)
        assert (was_running, stopped) == (True, True)
        assert 'stopping on %d' % signal.SIGINT in open(log).read()
        assert not os.path.exists(pidfile)
        assert _daemon.stop(pidfile, marker) == (False, True)  # second stop: nothing to do
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_stop_escalates_to_sigkill(tmp_path):
    pidfile, log = str(tmp_path / 'd.pid'), str(tmp_path / 'd.log')
    marker = 'blkfleet-stubborn-%d' % os.getpid()
    pid = _daemon.spawn([sys.executable, '-c', STUBBORN, marker], pidfile, log)
    assert wait_for(lambda: 'up' in open(log).read())
    assert _daemon.stop(pidfile, marker, timeout=0.3) == (True, True)
    assert _daemon.running_pid(pidfile, '') is None
    assert not wait_for(lambda: _daemon._alive(pid), timeout=0.2)


def test_stale_pidfile(tmp_path):
    pidfile = tmp_path / 'stale.pid'
    pidfile.write_text('999999999\n')
    assert _daemon.running_pid(str(pidfile), 'x') is None
    assert _daemon.stop(str(pidfile), 'x') == (False, True)
    assert not pidfile.exists()
    pidfile.write_text('garbage')
    assert _daemon.read_pid(str(pidfile)) is None

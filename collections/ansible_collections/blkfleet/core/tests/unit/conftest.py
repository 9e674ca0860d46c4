# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures of the collection's unit tests: the real engine of the blkfleet checkout this collection lives in, built
as engine.pyz, real bundles it makes, and the checks of every protocol document against the engine's schemas."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from ansible_collections.blkfleet.core.tests.unit.engine_checkout import RANDMIX, blkfleet, check_document


@pytest.fixture(scope='session')
def engine_pyz(tmp_path_factory):
    """The real engine, built from the checkout (``blkfleet bundle engine``)."""
    path = str(tmp_path_factory.mktemp('engine') / 'engine.pyz')
    built = blkfleet('bundle', 'engine', '-o', path)
    assert built.returncode == 0, built.stderr
    return path


@pytest.fixture(scope='session')
def randmix_bundle(tmp_path_factory):
    """A real bundle (tests/data/randmix: loop1, 2,000 IOs, recorded with their timing) and its manifest."""
    work = tmp_path_factory.mktemp('bundle')
    replay = work / 'replay'
    replay.mkdir()
    assert blkfleet('record', '-q', '--timing', '-d', RANDMIX, '-D', replay, '-F').returncode == 0
    path = str(work / 'randmix.bundle')
    made = blkfleet('bundle', 'create', '-d', replay, '-o', path, '-F', '--trace-dir', RANDMIX, '--json', '-')
    assert made.returncode == 0, made.stderr
    return path, check_document(json.loads(made.stdout))['result']


@pytest.fixture
def bundle_copy(randmix_bundle, tmp_path):
    """A copy of the randmix bundle the test may move or damage."""
    path = str(tmp_path / 'b.tar')
    shutil.copyfile(randmix_bundle[0], path)
    return path, randmix_bundle[1]


@pytest.fixture
def loop_device():
    """A 64 MiB loop device over a sparse file on tmpfs (root only); detached afterwards."""
    if os.geteuid() != 0 or not shutil.which('losetup'):
        pytest.skip('needs root and losetup (a block device to replay onto)')
    work = tempfile.mkdtemp(prefix='blkfleet-unit-', dir='/dev/shm')
    backing = os.path.join(work, 'disk.img')
    with open(backing, 'wb') as f:
        f.truncate(64 << 20)
    dev = subprocess.run(['losetup', '--show', '-f', backing], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(['losetup', '-d', dev], check=False)
        shutil.rmtree(work, ignore_errors=True)


# A stand-in engine for the capture module's tests only: its faults (a tracer another capture holds, dropped
# events) need the machine's one ftrace tracer (tests/ansible/test_capture_adhoc.py runs the real capture). It answers
# in the engine's protocol, and every document it prints is checked against the engine's schemas (check_fakes).
FAKE_CAPTURE_ENGINE = r'''
import json, os, sys
args = sys.argv[1:]
assert args[-2:] == ["--json", "-"] or "--json" in args, args

def opt(name, default=None):
    return args[args.index(name) + 1] if name in args else default

def answer(command, result, code=None, message=None, exit_code=0):
    doc = {"protocol": 1, "command": command, "engine_version": "0.1.0", "exit_code": exit_code, "result": result,
           "error": {"code": code, "message": message} if code else None}
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps(doc) + "\n")
    print(json.dumps(doc))
    if code:
        print("blkfleet: " + message, file=sys.stderr)
    sys.exit(exit_code)

out = os.path.abspath(opt("-D"))
state_file = os.path.join(out, "fake-state.json")
state = json.load(open(state_file)) if os.path.exists(state_file) else None
token = opt("--token")
check = "--check" in args
command = "capture " + args[1]
if args[1] == "status":
    answer(command, {"action": "status", "state": state["state"] if state else "none", "output_dir": out,
                     "backend": state and state["backend"], "token": state and state.get("token")})
elif args[1] == "start":
    busy = os.path.join(out, "busy")
    if os.path.exists(busy) and not check:
        left = int(open(busy).read())
        if left > 0:
            open(busy, "w").write(str(left - 1))
            answer(command, None, "tracer_busy", "the ftrace blk tracer is in use by another capture (pid 1 holds "
                   "/run/blkfleet-ftrace.lock)", 2)
    devices = [d for i, d in enumerate(args) if i and args[i - 1] == "-d"]
    if state and state.get("token") == token and (token or state["state"] == "running"):
        if state["state"] != "running" or state["devices"] == devices:
            answer(command, dict(state, action="start", started=False))
        answer(command, None, "already_running", "a capture of %s is already running in %s" % (
            ",".join(state["devices"]), out), 2)
    if state and state["state"] == "running" and "--force" not in args:
        answer(command, None, "already_running", "a capture of another run (token %s) is running in %s; use --force"
               % (state.get("token"), out), 2)
    if state and "--force" not in args:
        answer(command, None, "invalid_input", "%s holds a finished capture (stopped); use --force" % out, 2)
    if check:
        answer(command, {"action": "start", "check": True, "started": True,
                         "state": state["state"] if state else "none"})
    os.makedirs(out, exist_ok=True)
    state = {"state": "running", "devices": devices, "backend": "ftrace", "mode": "events", "pid": 4242,
             "argv": args, "token": token}
    json.dump(state, open(state_file, "w"))
    answer(command, dict(state, action="start", started=True))
elif args[1] == "stop":
    if state is None:
        answer(command, None, "not_found", "no capture in %s (no capture.json)" % out, 2)
    if token and state.get("token") != token:
        answer(command, None, "already_running", "the capture in %s belongs to another run (token %s, not %s): not "
               "stopped" % (out, state.get("token"), token), 2)
    stopped = state["state"] == "running"
    if check:
        answer(command, dict(state, action="stop", check=True, stopped=stopped))
    drops = int(open(os.path.join(out, "drops")).read()) if os.path.exists(os.path.join(out, "drops")) else 0
    state.update(state="stopped")
    json.dump(state, open(state_file, "w"))
    files = ["%s.blktrace.%d" % (d, c) for d in state["devices"] for c in (0, 1)]
    for name in files:
        open(os.path.join(out, name), "wb").write(b"trace of " + name.encode())
    open(os.path.join(out, "capture.json"), "w").write(json.dumps(state))
    summary = dict(state, action="stop", stopped=stopped, files=files, queued=100, drops=drops,
                   drop_reports=1 if drops else 0)
    if os.path.exists(os.path.join(out, "fail")):
        answer(command, dict(summary, error="the capture failed while stopping"), "capture_failed",
               "the capture failed while stopping", 2)
    answer(command, summary)
elif args[1] == "files":
    import hashlib
    files = []
    for name in ["%s.blktrace.%d" % (d, c) for d in state["devices"] for c in (0, 1)] + ["capture.json"]:
        path = os.path.join(out, name)
        data = open(path, "rb").read()
        files.append({"name": name, "path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    answer(command, {"action": "files", "output_dir": out, "token": state.get("token"), "state": "stopped",
                     "files": files})
'''


@pytest.fixture
def fake_capture_engine(tmp_path, monkeypatch):
    """Path of the stand-in capture engine (FAKE_CAPTURE_ENGINE); its documents are checked at the end."""
    import zipapp
    src = tmp_path / 'fake-src'
    src.mkdir()
    (src / '__main__.py').write_text(FAKE_CAPTURE_ENGINE)
    target = str(tmp_path / 'fake-engine.pyz')
    zipapp.create_archive(str(src), target)
    log = tmp_path / 'fake-documents.jsonl'
    monkeypatch.setenv('FAKE_LOG', str(log))
    yield target
    if log.exists():
        for line in log.read_text().splitlines():
            check_document(json.loads(line))


def run_module(module_main, capsys, args, check_mode=False):
    """Run a module's main() with ``args``; returns (exit code, result dict). The module's temporary directory is
    this call's own and is removed after it (the module's own clean-up runs only when the test process exits)."""
    from ansible.module_utils.testing import patch_module_args
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    scratch = tempfile.mkdtemp(prefix='blkfleet-unit-module-')
    try:
        with patch_module_args(dict(args, _ansible_tmpdir=scratch)), pytest.raises(SystemExit) as exc:
            module_main()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return exc.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture
def run(capsys):
    def runner(module_main, args, check_mode=False):
        return run_module(module_main, capsys, args, check_mode)
    return runner

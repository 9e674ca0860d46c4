# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A fake /sys, /proc and /dev tree for blkdev_info's unit tests."""

from __future__ import annotations

import os
import struct

import pytest


def _write(root, path, text):
    full = os.path.join(root, path.lstrip('/'))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, 'w') as f:
        f.write(text)


def _link(root, path, target):
    full = os.path.join(root, path.lstrip('/'))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    os.symlink(target, full)


def ext4_image(size=70000):
    data = bytearray(size)
    data[1024 + 56:1024 + 58] = b'\x53\xef'
    struct.pack_into('<II', data, 1024 + 92, 0x4, 0x40 | 0x200)
    return bytes(data)


def gpt_image(size=70000):
    data = bytearray(size)
    data[510:512] = b'\x55\xaa'
    data[446 + 4] = 0xee  # protective MBR entry
    data[512:520] = b'EFI PART'
    return bytes(data)


class FakeTree:
    """Builds whole disks and partitions the way sysfs lays them out (class/block links into devices/)."""

    def __init__(self, root):
        self.root = str(root)
        self.mountinfo = []
        self.swaps = []
        _write(self.root, '/proc/filesystems', 'nodev\tsysfs\nnodev\ttracefs\nnodev\tdebugfs\n\text4\n')
        _write(self.root, '/sys/devices/system/cpu/online', '0-2,5\n')
        _write(self.root, '/sys/devices/system/cpu/present', '0-7\n')
        _write(self.root, '/sys/devices/system/cpu/possible', '0-7\n')
        _write(self.root, '/proc/sys/fs/aio-max-nr', '65536\n')
        _write(self.root, '/proc/sys/fs/aio-nr', '1024\n')
        _write(self.root, '/proc/sys/kernel/io_uring_disabled', '2\n')
        _write(self.root, '/proc/sys/kernel/io_uring_group', '-1\n')
        self.flush()

    def disk(self, name, dev, sectors, lbs=512, pbs=4096, rotational=0, ro=0, scheduler='[none] mq-deadline',
             content=b'', loop_backing=None, trace=True):
        base = '/sys/devices/virtual/block/' + name
        _write(self.root, base + '/dev', dev + '\n')
        _write(self.root, base + '/size', '%d\n' % sectors)
        _write(self.root, base + '/ro', '%d\n' % ro)
        _write(self.root, base + '/removable', '0\n')
        q = base + '/queue/'
        for key, value in (('logical_block_size', lbs), ('physical_block_size', pbs), ('minimum_io_size', pbs),
                           ('optimal_io_size', 0), ('max_sectors_kb', 1280), ('nr_requests', 128),
                           ('rotational', rotational), ('scheduler', scheduler), ('discard_max_bytes', 4096),
                           ('zoned', 'none')):
            _write(self.root, q + key, '%s\n' % value)
        os.makedirs(os.path.join(self.root, (base + '/holders').lstrip('/')))
        os.makedirs(os.path.join(self.root, (base + '/slaves').lstrip('/')))
        if trace:
            _write(self.root, base + '/trace/enable', '0\n')
        if loop_backing:
            _write(self.root, base + '/loop/backing_file', loop_backing + '\n')
            _write(self.root, base + '/loop/offset', '0\n')
            _write(self.root, base + '/loop/sizelimit', '0\n')
            _write(self.root, base + '/loop/autoclear', '1\n')
            _write(self.root, base + '/loop/dio', '1\n')
        _link(self.root, '/sys/class/block/' + name, '../../devices/virtual/block/' + name)
        _link(self.root, '/sys/block/' + name, '../devices/virtual/block/' + name)
        self.dev_node(name, content)
        return base

    def partition(self, disk, name, dev, sectors, content=b''):
        base = '/sys/devices/virtual/block/%s/%s' % (disk, name)
        _write(self.root, base + '/dev', dev + '\n')
        _write(self.root, base + '/size', '%d\n' % sectors)
        _write(self.root, base + '/ro', '0\n')
        _write(self.root, base + '/partition', '1\n')
        os.makedirs(os.path.join(self.root, (base + '/holders').lstrip('/')))
        _link(self.root, '/sys/class/block/' + name, '../../devices/virtual/block/%s/%s' % (disk, name))
        self.dev_node(name, content)

    def holder(self, name, holder):
        os.makedirs(os.path.join(self.root, ('/sys/class/block/%s/holders/%s' % (name, holder)).lstrip('/')))

    def dev_node(self, name, content):
        full = os.path.join(self.root, 'dev', name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'wb') as f:
            f.write(content)

    def mount(self, dev, mountpoint, fstype, source):
        self.mountinfo.append('%d 1 %s / %s rw,relatime shared:1 - %s %s rw' % (
            30 + len(self.mountinfo), dev, mountpoint.replace(' ', '\\040'), fstype, source))
        self.flush()

    def swap(self, path):
        self.swaps.append(path)
        self.flush()

    def tracing(self, tracers='blk function nop', current='nop', lockdown='none [integrity] confidentiality'):
        _write(self.root, '/sys/kernel/tracing/available_tracers', tracers + '\n')
        _write(self.root, '/sys/kernel/tracing/current_tracer', current + '\n')
        if lockdown is not None:
            _write(self.root, '/sys/kernel/security/lockdown', lockdown + '\n')
        self.mount('0:12', '/sys/kernel/tracing', 'tracefs', 'nodev')
        self.mount('0:7', '/sys/kernel/debug', 'debugfs', 'debugfs')

    def flush(self):
        _write(self.root, '/proc/self/mountinfo', ''.join(line + '\n' for line in self.mountinfo))
        _write(self.root, '/proc/swaps', 'Filename\tType\tSize\tUsed\tPriority\n'
               + ''.join('%s\tpartition\t1024\t0\t-2\n' % s for s in self.swaps))


@pytest.fixture
def fake_tree(tmp_path):
    """An empty fake host tree; tests add disks, partitions, mounts and tracing to it."""
    return FakeTree(tmp_path / 'root')


@pytest.fixture
def standard_tree(fake_tree):
    """sda (GPT, sda1 ext4 mounted on /data with a space, sda2 swap), loop0 (empty), loop1 (unattached), md0."""
    t = fake_tree
    t.disk('sda', '8:0', 2097152, rotational=1, scheduler='mq-deadline kyber [bfq] none', content=gpt_image(),
           trace=True)
    t.partition('sda', 'sda1', '8:1', 1048576, content=ext4_image())
    t.partition('sda', 'sda2', '8:2', 1046528)
    t.disk('loop0', '7:0', 131072, pbs=512, loop_backing='/dev/shm/img 0')
    t.disk('loop1', '7:1', 0, pbs=512)
    t.disk('vdb', '254:16', 204800, content=ext4_image())
    t.holder('vdb', 'md0')
    t.disk('md0', '9:0', 204800, scheduler='')
    t.mount('8:1', '/data dir', 'ext4', '/dev/sda1')
    t.mount('8:1', '/srv', 'ext4', '/dev/sda1')
    t.swap('/dev/sda2')
    t.tracing()
    return t


# A fake blkfleet engine (a zipapp) for the module tests: 'capture start|stop|status' keep their state in
# DIR/fake-state.json, 'replay' writes a results document, 'bundle info|verify' print a manifest.
FAKE_ENGINE = r'''
import json, os, sys
args = sys.argv[1:]

def opt(name, default=None):
    return args[args.index(name) + 1] if name in args else default

def fail(msg, code=2):
    print("blkfleet: " + msg, file=sys.stderr)
    sys.exit(code)

if args[:1] == ["capture"]:
    out = os.path.abspath(opt("-D"))
    state_file = os.path.join(out, "fake-state.json")
    state = json.load(open(state_file)) if os.path.exists(state_file) else None
    busy = os.path.join(out, "busy")
    token = opt("--token")
    check = "--check" in args
    if args[1] == "status":
        print(json.dumps({"action": "status", "state": state["state"] if state else "none", "output_dir": out,
                          "backend": state and state["backend"], "token": state and state.get("token")}))
    elif args[1] == "start":
        if os.path.exists(busy) and not check:
            left = int(open(busy).read())
            if left > 0:
                open(busy, "w").write(str(left - 1))
                fail("the ftrace blk tracer is in use by another capture (pid 1 holds /run/blkfleet-ftrace.lock)")
        devices = [d for i, d in enumerate(args) if i and args[i - 1] == "-d"]
        if state and state.get("token") == token and (token or state["state"] == "running"):
            if state["state"] != "running" or state["devices"] == devices:
                print(json.dumps(dict(state, action="start", started=False)))
                sys.exit(0)
            fail("a capture of %s is already running in %s" % (",".join(state["devices"]), out))
        if state and state["state"] == "running" and "--force" not in args:
            fail("a capture of another run (token %s) is running in %s; use --force" % (state.get("token"), out))
        if state and "--force" not in args:
            fail("%s holds a finished capture (stopped); use --force" % out)
        if check:
            print(json.dumps({"action": "start", "check": True, "started": True,
                              "state": state["state"] if state else "none"}))
            sys.exit(0)
        os.makedirs(out, exist_ok=True)
        state = {"state": "running", "devices": devices, "backend": "ftrace", "mode": "events", "pid": 4242,
                 "argv": args, "token": token}
        json.dump(state, open(state_file, "w"))
        print(json.dumps(dict(state, action="start", started=True)))
    elif args[1] == "stop":
        if state is None:
            fail("no capture in %s (no capture.json)" % out)
        if token and state.get("token") != token:
            fail("the capture in %s belongs to another run (token %s, not %s): not stopped"
                 % (out, state.get("token"), token))
        stopped = state["state"] == "running"
        if check:
            print(json.dumps(dict(state, action="stop", check=True, stopped=stopped)))
            sys.exit(0)
        drops = int(open(os.path.join(out, "drops")).read()) if os.path.exists(os.path.join(out, "drops")) else 0
        state.update(state="stopped")
        json.dump(state, open(state_file, "w"))
        files = ["%s.blktrace.%d" % (d, c) for d in state["devices"] for c in (0, 1)]
        for name in files:
            open(os.path.join(out, name), "wb").write(b"trace of " + name.encode())
        open(os.path.join(out, "capture.json"), "w").write(json.dumps(state))
        if os.path.exists(os.path.join(out, "files")):
            files = json.load(open(os.path.join(out, "files")))
        print(json.dumps(dict(state, action="stop", stopped=stopped, files=files, queued=100, drops=drops,
                              drop_reports=1 if drops else 0)))
        if drops and "--fail-on-drops" in args:
            sys.exit(1)
elif args[:1] == ["replay"]:
    code = int(os.environ.get("FAKE_REPLAY_EXIT", "0"))
    write = "-W" in args
    doc = {"schema": "blkfleet-results/1", "argv": args, "started": "2026-11-26T06:00:00.000+00:00",
           "devices": {"loop1": {"by_op": {"write" if write else "read": {"ios": 10, "bytes": 40960}}}},
           "total": {"ios": 10, "errors": {"count": 1 if code == 3 else 0, "first": None}}}
    with open(opt("--json"), "w") as f:
        json.dump(doc, f)
    if opt("--start-at") == "1":
        print("blkfleet: start time is 12.500 s in the past: starting now", file=sys.stderr)
    print("blkfleet replay: 10 IOs", file=sys.stderr)
    if code == 3:
        fail("1 IO errors (first: loop1: Input/output error)", 3)
    if code:
        fail("replay: bad input", code)
elif args[:1] == ["job"]:
    state = os.environ.get("FAKE_JOB_STATE", "running")
    doc = {"run_id": args[-1], "state": state, "argv": args}
    if args[1] == "renew":
        doc["renewed"] = state == "running"
    if args[1] == "stop":
        doc.update(stopped=state == "running", state="finished" if state == "running" else state)
    print(json.dumps(doc))
elif args[:2] in (["bundle", "verify"], ["bundle", "info"]):
    if os.environ.get("FAKE_VERIFY_FAIL"):
        fail(args[2] + ": member 'replay/loop1.replay.0': sha256 mismatch")
    print(json.dumps({"ok": True}))
else:
    fail("unknown command " + " ".join(args))
'''


def _sha(data):
    import hashlib
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def pyz_factory(tmp_path):
    """make(main_source): the path of a zipapp whose __main__.py is ``main_source``."""
    import zipapp

    def make(main_source, name='engine'):
        src = tmp_path / ('%s-src' % name)
        src.mkdir()
        (src / '__main__.py').write_text(main_source)
        target = tmp_path / ('%s.pyz' % name)
        zipapp.create_archive(str(src), str(target))
        return str(target)
    return make


@pytest.fixture
def fake_engine(pyz_factory):
    """Path of a fake engine.pyz (see FAKE_ENGINE)."""
    return pyz_factory(FAKE_ENGINE)


def make_bundle(path, engine_path, devices=('loop1',)):
    """A bundle-shaped tar (manifest.json first, engine.pyz, one replay file); returns its manifest."""
    import io
    import json
    import tarfile
    with open(engine_path, 'rb') as f:
        engine = f.read()
    replay = b'replay-data'
    manifest = {'format': 'blkfleet-bundle', 'format_version': 1,
                'engine': {'path': 'engine.pyz', 'sha256': _sha(engine), 'size': len(engine)},
                'replay': {'directory': 'replay', 'base': 'replay', 'devices': list(devices)},
                'totals': {'files': 1, 'ios': 10}, 'files': [{'path': 'replay/loop1.replay.0', 'sha256': _sha(replay)}]}
    manifest['bundle_id'] = _sha(json.dumps(manifest, sort_keys=True).encode())
    head = json.dumps(manifest).encode()
    with tarfile.open(path, 'w', format=tarfile.PAX_FORMAT) as tar:
        for name, data in (('manifest.json', head), ('engine.pyz', engine), ('replay/loop1.replay.0', replay)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return manifest


@pytest.fixture
def bundle_factory(tmp_path, fake_engine):
    def make(name='b.tar'):
        path = str(tmp_path / name)
        return path, make_bundle(path, fake_engine)
    return make


def run_module(module_main, capsys, args, check_mode=False):
    """Run a module's main() with ``args``; returns (exit code, result dict)."""
    import json
    from ansible.module_utils.testing import patch_module_args
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            module_main()
    return exc.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture
def run(capsys):
    def runner(module_main, args, check_mode=False):
        return run_module(module_main, capsys, args, check_mode)
    return runner

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import sys

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.blkfleet.core.plugins.module_utils import _engine

FAKE_MAIN = '''
import json, sys
args = sys.argv[1:]
if args[:1] == ["fail"]:
    print("some progress", file=sys.stderr)
    print("blkfleet: replay: /dev/loop9: No such file or directory", file=sys.stderr)
    sys.exit(2)
if args[:1] == ["garbage"]:
    print("not json")
    sys.exit(0)
json.dump({"args": args, "ok": True}, sys.stdout)
'''


@pytest.fixture
def fake_pyz(pyz_factory):
    return pyz_factory(FAKE_MAIN)


class Failed(Exception):
    pass


@pytest.fixture
def module(monkeypatch):
    with patch_module_args({}):
        mod = AnsibleModule(argument_spec={})

    def fail_json(**kwargs):
        raise Failed(kwargs)

    monkeypatch.setattr(mod, 'fail_json', fail_json)
    return mod


def test_engine_error_line():
    assert _engine.engine_error('x\nblkfleet: bad device\n', 2) == 'bad device'
    assert _engine.engine_error('Traceback...\nValueError: boom\n', 1) == 'ValueError: boom'
    assert _engine.engine_error('', 3) == 'blkfleet engine failed with exit code 3'


def test_installed_engine_path():
    sha = 'a' * 64
    assert _engine.installed_engine_path(sha) == '/var/lib/blkfleet/engine/%s/engine.pyz' % sha
    with pytest.raises(ValueError):
        _engine.installed_engine_path('../../etc')


def test_engine_command_order(tmp_path, fake_pyz):
    root = str(tmp_path / 'installed')
    # explicit file, explicit directory
    assert _engine.engine_command(engine=fake_pyz, root=root, python='py') == ['py', fake_pyz]
    assert _engine.engine_command(engine=os.path.dirname(fake_pyz), root=root, python='py') == ['py', fake_pyz]
    with pytest.raises(_engine.EngineNotFound):
        _engine.engine_command(engine='/nonexistent/engine.pyz', root=root)
    # nothing installed: console script, then python -m
    assert _engine.engine_command(root=root, which=lambda name: '/usr/bin/' + name) == ['/usr/bin/blkfleet']
    assert _engine.engine_command(root=root, python='py', which=lambda name: None,
                                  importable=True) == ['py', '-m', 'blkfleet']
    with pytest.raises(_engine.EngineNotFound, match='blkfleet engine not found'):
        _engine.engine_command(root=root, python='py', which=lambda name: None, importable=False)
    # installed zipapps win over the console script; newest first; by SHA-256 when given
    old, new = 'b' * 64, 'c' * 64
    for sha, mtime in ((old, 1000), (new, 2000)):
        path = _engine.installed_engine_path(sha, root)
        os.makedirs(os.path.dirname(path))
        with open(path, 'wb') as f:
            f.write(b'x')
        os.utime(path, (mtime, mtime))
    assert _engine.engine_command(root=root, python='py', which=lambda name: '/usr/bin/blkfleet') == [
        'py', _engine.installed_engine_path(new, root)]
    assert _engine.engine_command(sha256=old, root=root, python='py') == ['py', _engine.installed_engine_path(old, root)]
    with pytest.raises(_engine.EngineNotFound, match='not installed'):
        _engine.engine_command(sha256='d' * 64, root=root)
    assert [e[1] for e in _engine.installed_engines(root)] == [new, old]


def test_sha256_file(tmp_path):
    path = tmp_path / 'f'
    path.write_bytes(b'abc')
    assert _engine.sha256_file(str(path)) == 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'


def test_run_engine_json(module, fake_pyz):
    rc, result, out, err = _engine.run_engine(module, [sys.executable, fake_pyz], ['replay', '--json', '-', 3])
    assert rc == 0
    assert result == {'args': ['replay', '--json', '-', '3'], 'ok': True}
    assert json.loads(out) == result


def test_run_engine_error_becomes_fail_json(module, fake_pyz):
    with pytest.raises(Failed) as exc:
        _engine.run_engine(module, [sys.executable, fake_pyz], ['fail'])
    failure = exc.value.args[0]
    assert failure['msg'] == 'replay: /dev/loop9: No such file or directory'
    assert failure['rc'] == 2
    assert failure['cmd'][-1] == 'fail'
    rc, result, out, err = _engine.run_engine(module, [sys.executable, fake_pyz], ['fail'], check_rc=False)
    assert rc == 2 and result is None and 'blkfleet: replay' in err


def test_run_engine_bad_json(module, fake_pyz):
    with pytest.raises(Failed) as exc:
        _engine.run_engine(module, [sys.executable, fake_pyz], ['garbage'])
    assert 'no valid JSON' in exc.value.args[0]['msg']


def test_find_engine_fails_module(module, tmp_path):
    with pytest.raises(Failed) as exc:
        _engine.find_engine(module, engine=str(tmp_path / 'missing.pyz'))
    assert 'not found' in exc.value.args[0]['msg']

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The target-side runner: where it finds the engine, and what it returns or fails with, on the real engine."""

from __future__ import annotations

import os
import sys

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.blkfleet.core.plugins.module_utils import _engine
from ansible_collections.blkfleet.core.plugins.module_utils._protocol import EngineError
from ansible_collections.blkfleet.core.tests.unit.engine_checkout import check_document


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


def installed(root, sha):
    return os.path.join(root, sha, 'engine.pyz')


def test_engine_command_order(tmp_path, engine_pyz):
    root = str(tmp_path / 'installed')
    # explicit file, explicit directory
    assert _engine.engine_command(engine=engine_pyz, root=root, python='py') == ['py', engine_pyz]
    assert _engine.engine_command(engine=os.path.dirname(engine_pyz), root=root, python='py') == ['py', engine_pyz]
    with pytest.raises(_engine.EngineNotFound):
        _engine.engine_command(engine='/nonexistent/engine.pyz', root=root)
    # nothing installed: console script, then python -m
    assert _engine.engine_command(root=root, which=lambda name: '/usr/bin/' + name) == ['/usr/bin/blkfleet']
    assert _engine.engine_command(root=root, python='py', which=lambda name: None,
                                  importable=True) == ['py', '-c', _engine.RUN_PACKAGE]
    with pytest.raises(_engine.EngineNotFound, match='install it with blkfleet.core.engine'):
        _engine.engine_command(root=root, python='py', which=lambda name: None, importable=False)
    # installed zipapps win over the console script; newest first; by SHA-256 when given
    old, new = 'b' * 64, 'c' * 64
    for sha, mtime in ((old, 1000), (new, 2000)):
        os.makedirs(os.path.dirname(installed(root, sha)))
        with open(installed(root, sha), 'wb') as f:
            f.write(b'x')
        os.utime(installed(root, sha), (mtime, mtime))
    assert _engine.engine_command(root=root, python='py', which=lambda name: '/usr/bin/blkfleet') == [
        'py', installed(root, new)]
    assert _engine.engine_command(sha256=old, root=root, python='py') == ['py', installed(root, old)]
    with pytest.raises(_engine.EngineNotFound, match='not installed'):
        _engine.engine_command(sha256='d' * 64, root=root)
    with pytest.raises(_engine.EngineNotFound, match='not a SHA-256'):
        _engine.engine_command(sha256='../x', root=root)
    assert [e[1] for e in _engine.installed_engines(root)] == [new, old]


@pytest.mark.skipif(os.geteuid() != 0, reason='handing a file to another user needs root')
def test_an_engine_others_could_change_is_never_run(tmp_path):
    nobody = 65534
    shared = tmp_path / 'shared'
    (shared / 'e').mkdir(parents=True)
    engine = shared / 'e' / 'engine.pyz'
    engine.write_bytes(b'x')
    os.chmod(shared, 0o1777)  # sticky above the engine (like /tmp): accepted
    assert _engine.engine_command(engine=str(engine), python='py') == ['py', str(engine)]
    link = shared / 'link.pyz'  # a link is run by the path it resolves to
    link.symlink_to(engine)
    assert _engine.engine_command(engine=str(link), python='py') == ['py', str(engine)]
    os.chmod(shared / 'e', 0o777)
    with pytest.raises(_engine.EngineNotFound, match='others can write to .*/e \\(mode 0777\\)'):
        _engine.engine_command(engine=str(engine), python='py')
    os.chmod(shared / 'e', 0o755)
    os.chown(engine, nobody, nobody)
    with pytest.raises(_engine.EngineNotFound, match='refusing to run .* owned by uid 65534'):
        _engine.engine_command(engine=str(engine), python='py')
    os.chown(engine, 0, 0)
    os.chown(shared / 'e', nobody, nobody)  # its owner could swap the file: refused too, installed or by SHA-256
    sha = 'e' * 64
    os.rename(shared / 'e', shared / sha)
    with pytest.raises(_engine.EngineNotFound, match='owned by uid 65534'):
        _engine.engine_command(sha256=sha, root=str(shared), python='py')
    with pytest.raises(_engine.EngineNotFound, match='owned by uid 65534'):
        _engine.engine_command(root=str(shared), python='py', which=lambda name: None)


def test_call_returns_the_document(module, engine_pyz):
    doc = _engine.call(module, [sys.executable, engine_pyz], ['job', 'status', '--', 'unit-no-such-run'])
    assert check_document(doc)['command'] == 'job status' and doc['result']['state'] == 'none'
    lines = []
    doc = _engine.call(module, [sys.executable, engine_pyz], ['device', 'info', '--probe', 'none'], stderr=lines)
    assert check_document(doc)['result']['cpus']['online_count'] >= 1 and lines == []


def test_an_engine_error_fails_the_module_with_its_code(module, engine_pyz):
    with pytest.raises(EngineError) as exc:
        _engine.call(module, [sys.executable, engine_pyz], ['device', 'info', '--', '/dev/unit-no-such-device'])
    assert exc.value.code == 'not_found' and exc.value.rc == 2 and check_document(exc.value.document)
    with pytest.raises(Failed) as failed:
        _engine.run(module, [sys.executable, engine_pyz], ['device', 'info', '--', '/dev/unit-no-such-device'],
                    extra='kept')
    result = failed.value.args[0]
    assert result['msg'] == 'no such block device: /dev/unit-no-such-device' and result['extra'] == 'kept'
    assert result['error'] == {'code': 'not_found', 'message': result['msg'], 'device': '/dev/unit-no-such-device'}
    assert result['rc'] == 2 and result['cmd'][-3:] == ['-', '--', '/dev/unit-no-such-device']
    assert result['stderr'] == 'blkfleet: no such block device: /dev/unit-no-such-device\n'


def test_find_engine_fails_module(module, tmp_path):
    with pytest.raises(Failed) as exc:
        _engine.find_engine(module, engine=str(tmp_path / 'missing.pyz'))
    assert 'not found' in exc.value.args[0]['msg']

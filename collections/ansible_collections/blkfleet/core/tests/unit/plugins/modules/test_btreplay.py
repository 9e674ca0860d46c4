# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os

import pytest

from ansible_collections.blkfleet.core.plugins.modules import btreplay


@pytest.fixture
def block_dev():
    for name in ('null', 'loop0', 'ram0'):
        path = '/dev/' + name
        if os.path.exists(path) and os.path.isfile(path) is False and os.stat(path).st_mode & 0o060000 == 0o060000:
            return path
    pytest.skip('no block device node to map onto')


def base(bundle, tmp_path, **extra):
    args = {'bundle': bundle, 'results_path': str(tmp_path / 'out' / 'results.json'),
            'engine_root': str(tmp_path / 'engines')}
    args.update(extra)
    return args


def test_replay_read_only_is_not_a_change(run, bundle_factory, fake_engine, tmp_path):
    bundle, manifest = bundle_factory()
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine=fake_engine, acc_factor=2, iterations=3,
                                      no_stall=True, cpus=2, backend='sync', realtime='off', devices=['loop1']))
    assert rc == 0, res
    assert res['changed'] is False
    assert res['bundle_id'] == manifest['bundle_id'] and res['engine'] == fake_engine
    argv = res['replay_results']['argv']
    assert argv[:3] == ['replay', '--bundle', bundle]
    for flag, value in (('-x', '2.0'), ('-I', '3'), ('--backend', 'sync'), ('--realtime', 'off'), ('-c', '2')):
        assert argv[argv.index(flag) + 1] == value
    assert '-N' in argv and '-W' not in argv and argv[-2:] == ['--', 'loop1']
    assert res['results_path'] == str(tmp_path / 'out' / 'results.json') and os.path.isfile(res['results_path'])
    assert res['summary'] == ['blkfleet replay: 10 IOs'] and 'late_start_s' not in res


def test_write_replay_is_a_change_and_start_at(run, bundle_factory, fake_engine, tmp_path):
    bundle, manifest = bundle_factory()
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine=fake_engine, write_enable=True, force=True,
                                      start_at='1'))
    assert rc == 0, res
    assert res['changed'] is True and res['late_start_s'] == 12.5
    argv = res['replay_results']['argv']
    assert '-W' in argv and '--force' in argv and argv[argv.index('--start-at') + 1] == '1'
    assert '--realtime' not in argv  # auto is the engine's default: no flag, so older engines still run


def test_device_map_file_and_check(run, bundle_factory, fake_engine, tmp_path, block_dev):
    bundle, manifest = bundle_factory()
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine=fake_engine, device_map={'loop1': block_dev}))
    assert rc == 0, res
    argv = res['replay_results']['argv']
    assert '-M' in argv
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine=fake_engine, device_map={'loop1': '/nonexistent'}))
    assert rc == 1 and res['msg'] == 'device_map loop1: /nonexistent: No such file or directory'
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine=fake_engine, device_map={'loop1': str(tmp_path)}))
    assert rc == 1 and 'is not a block device' in res['msg']


@pytest.mark.parametrize('devices, device_map, problem', [
    (['loop1', '-W', '--force'], {}, "invalid device name '-W'"),
    (['loop1\n-W'], {}, "invalid device name 'loop1\\n-W'"),
    (['../sda'], {}, "invalid device name '../sda'"),
    (['sda_.._x'], {}, "'.' and '..' are not allowed between '_'"),
    ([], {'-W': 'loop2'}, "device_map: invalid recorded device name '-W'"),
    ([], {'loop1': '-W'}, "device_map loop1: invalid target '-W'"),
    ([], {'loop1': 'loop2 -W'}, "device_map loop1: invalid target 'loop2 -W'"),
    ([], {'loop1': '/dev/loop2\nloop3 /dev/sda'}, 'an absolute path without whitespace'),
    ([], {'loop1': '/dev/loop2#x'}, 'an absolute path without whitespace'),
    ([], {'loop1': '/dev/../etc/passwd'}, "'.' and '..' are not allowed in the path"),
])
def test_bad_device_names_are_refused_before_the_engine_runs(run, bundle_factory, fake_engine, tmp_path, devices,
                                                             device_map, problem):
    bundle, manifest = bundle_factory()
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine=fake_engine, devices=devices, device_map=device_map))
    assert rc == 1 and problem in res['msg'], res
    assert not (tmp_path / 'out' / 'results.json').exists()  # the engine never ran


def test_failure_after_writes_is_a_change(run, bundle_factory, fake_engine, tmp_path, monkeypatch):
    bundle, manifest = bundle_factory()
    monkeypatch.setenv('FAKE_REPLAY_EXIT', '3')
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine=fake_engine, write_enable=True))
    assert rc == 1 and res['rc'] == 3 and res['changed'] is True
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine=fake_engine))
    assert rc == 1 and res['rc'] == 3 and res['changed'] is False  # read-only: the device did not change


def test_engine_errors_fail_with_one_line(run, bundle_factory, fake_engine, tmp_path, monkeypatch):
    bundle, manifest = bundle_factory()
    monkeypatch.setenv('FAKE_REPLAY_EXIT', '3')
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine=fake_engine))
    assert rc == 1 and res['rc'] == 3
    assert res['msg'] == '1 IO errors (first: loop1: Input/output error)'
    assert res['replay_results']['total']['errors']['count'] == 1
    monkeypatch.setenv('FAKE_REPLAY_EXIT', '2')
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine=fake_engine))
    assert rc == 1 and res['msg'] == 'replay: bad input'


def test_bundle_id_and_own_engine(run, bundle_factory, tmp_path):
    bundle, manifest = bundle_factory()
    bundle_dir = tmp_path / 'bundles'
    bundle_dir.mkdir()
    os.rename(bundle, str(bundle_dir / (manifest['bundle_id'] + '.tar')))
    engine_root = tmp_path / 'engines'
    from ansible_collections.blkfleet.core.plugins.module_utils import _install
    path = str(bundle_dir / (manifest['bundle_id'] + '.tar'))
    _install.install_engine_from_bundle(path, _install.read_manifest(path), str(engine_root))
    args = base(None, tmp_path, bundle_id=manifest['bundle_id'], bundle_dir=str(bundle_dir))
    del args['bundle']
    rc, res = run(btreplay.main, args)
    assert rc == 0, res
    assert res['engine'] == os.path.join(str(engine_root), manifest['engine']['sha256'], 'engine.pyz')


def test_check_mode_runs_nothing(run, bundle_factory, fake_engine, tmp_path):
    bundle, manifest = bundle_factory()
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine=fake_engine, write_enable=True), check_mode=True)
    assert rc == 0 and res['changed'] is True and 'replay_results' not in res
    assert not (tmp_path / 'out' / 'results.json').exists()
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine=fake_engine), check_mode=True)
    assert rc == 0 and res['changed'] is False


def test_not_a_bundle(run, fake_engine, tmp_path):
    path = tmp_path / 'x.tar'
    path.write_bytes(b'not a tar')
    rc, res = run(btreplay.main, base(str(path), tmp_path, engine=fake_engine))
    assert rc == 1 and 'not a blkfleet bundle' in res['msg']
    rc, res = run(btreplay.main, {'bundle': str(path), 'bundle_id': 'a' * 64})
    assert rc == 1 and 'mutually exclusive' in res['msg']

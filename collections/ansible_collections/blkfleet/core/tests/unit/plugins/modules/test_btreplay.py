# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""btreplay with the real engine and a real bundle, onto a real loop device: the results, what changed, and the
engine's error codes for what it refuses."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from ansible_collections.blkfleet.core.plugins.module_utils import _install
from ansible_collections.blkfleet.core.plugins.modules import btreplay
from ansible_collections.blkfleet.core.tests.unit.engine_checkout import schema


def base(bundle, tmp_path, engine, **extra):
    args = {'bundle': bundle, 'results_path': str(tmp_path / 'out' / 'results.json'), 'engine': engine,
            'engine_root': str(tmp_path / 'engines')}
    args.update(extra)
    return args


def test_replay_read_only_is_not_a_change(run, randmix_bundle, engine_pyz, loop_device, tmp_path):
    bundle, manifest = randmix_bundle
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine_pyz, device_map={'loop1': loop_device}, acc_factor=2,
                                      iterations=2, cpus=1, backend='sync', realtime='off', devices=['loop1']))
    assert rc == 0, res
    assert res['changed'] is False and res['bundle_id'] == manifest['bundle_id'] and res['engine'] == engine_pyz
    schema('results.schema.json').validate(res['replay_results'])
    doc = res['replay_results']
    assert doc['total']['ios'] == 2 * 2000 and doc['acc_factor'] == 2.0 and doc['ioengine'] == 'sync'
    assert doc['writes_replayed_as_reads'] is True and doc['device_map'] == {'loop1': loop_device}
    assert res['results_path'] == str(tmp_path / 'out' / 'results.json') and os.path.isfile(res['results_path'])
    assert res['summary'][0].startswith('blkfleet replay: 4000 IOs') and 'late_start_s' not in res
    argv = res['cmd']
    for flag, value in (('-x', '2.0'), ('-I', '2'), ('--backend', 'sync'), ('--realtime', 'off'), ('-c', '1')):
        assert argv[argv.index(flag) + 1] == value
    assert '-W' not in argv and argv[-2:] == ['--', 'loop1']


def test_writes_are_a_change_and_a_start_in_the_past_is_late(run, randmix_bundle, engine_pyz, loop_device, tmp_path):
    bundle, manifest = randmix_bundle
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine_pyz, device_map={'loop1': loop_device},
                                      write_enable=True, start_at=repr(time.time() - 3)))
    assert rc == 0, res
    assert res['changed'] is True and res['late_start_s'] > 2.9
    assert '-W' in res['cmd'] and res['replay_results']['write_enable'] is True


def test_modes_reach_the_engine_and_its_results(run, randmix_bundle, engine_pyz, loop_device, tmp_path):
    """The bundle's files were recorded with --timing from a capture with completions: the modes replay it."""
    bundle, manifest = randmix_bundle
    for mode in ('dependency', 'load'):
        rc, res = run(btreplay.main, base(bundle, tmp_path, engine_pyz, device_map={'loop1': loop_device}, mode=mode,
                                          devices=['loop1'], results_path=str(tmp_path / mode / 'r.json')))
        assert rc == 0, res
        argv = res['cmd']
        assert argv[argv.index('--mode') + 1] == mode
        doc = res['replay_results']
        schema('results.schema.json').validate(doc)
        assert doc['mode'] == mode and doc['total']['ios'] == 2000 and set(doc['inflight']) == {'loop1'}
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine_pyz, device_map={'loop1': loop_device}, mode='load',
                                      no_stall=True))
    assert rc == 1 and 'no_stall and cpus > 1 are for the timed mode' in res['msg'], res


def test_refusals_are_the_engines(run, randmix_bundle, engine_pyz, loop_device, tmp_path):
    bundle, manifest = randmix_bundle
    subprocess.run(['mkfs.ext4', '-q', '-F', loop_device], check=True)
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine_pyz, device_map={'loop1': loop_device},
                                      write_enable=True))
    assert rc == 1 and res['error']['code'] == 'target_refused' and 'refusing to write' in res['msg'], res
    assert res['changed'] is False and 'replay_results' not in res
    assert not os.path.exists(str(tmp_path / 'out' / 'results.json'))
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine_pyz, device_map={'loop1': '/nonexistent'}))
    assert rc == 1 and res['error']['code'] == 'not_found' and res['msg'] == 'no such block device: /nonexistent'
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine_pyz, device_map={'loop1': str(tmp_path)}))
    assert rc == 1 and res['error']['code'] == 'not_found'  # a directory is no block device
    rc, res = run(btreplay.main, base(bundle, tmp_path, engine_pyz, device_map={'loop1': loop_device},
                                      devices=['-W', '--force']))
    assert rc == 1 and res['error']['code'] == 'invalid_input' and "invalid recorded device name '-W'" in res['msg']


@pytest.mark.parametrize('device_map', [{'loop1': 'loop2 -W'}, {'loop1': '/dev/loop2\nloop3 /dev/sda'},
                                        {'loop1': '/dev/loop2#x'}, {'a b': 'loop2'}])
def test_device_map_entries_are_one_word(run, randmix_bundle, engine_pyz, tmp_path, device_map):
    rc, res = run(btreplay.main, base(randmix_bundle[0], tmp_path, engine_pyz, device_map=device_map))
    assert rc == 1 and 'one word each' in res['msg']


def test_io_errors_after_writes_are_a_change(run, randmix_bundle, engine_pyz, loop_device, tmp_path):
    subprocess.run(['blockdev', '--setro', loop_device], check=True)
    try:
        rc, res = run(btreplay.main, base(randmix_bundle[0], tmp_path, engine_pyz,
                                          device_map={'loop1': loop_device}, write_enable=True))
    finally:
        subprocess.run(['blockdev', '--setrw', loop_device], check=True)
    assert rc == 1 and res['rc'] == 3 and res['error']['code'] == 'io_errors' and res['changed'] is True, res
    assert res['replay_results']['total']['errors']['count'] > 0 and os.path.isfile(res['results_path'])


def test_bundle_id_and_its_own_engine(run, bundle_copy, engine_pyz, loop_device, tmp_path):
    bundle, manifest = bundle_copy
    bundle_dir = tmp_path / 'bundles'
    bundle_dir.mkdir()
    path = str(bundle_dir / (manifest['bundle_id'] + '.tar'))
    shutil.move(bundle, path)
    engine_root = str(tmp_path / 'engines')
    engine = manifest['engine']
    _install.install_engine_from_bundle(path, engine['path'], engine['size'], engine['sha256'], engine_root)
    args = base(None, tmp_path, None, bundle_id=manifest['bundle_id'], bundle_dir=str(bundle_dir),
                engine_root=engine_root, device_map={'loop1': loop_device})
    del args['bundle'], args['engine']
    rc, res = run(btreplay.main, args)
    assert rc == 0, res
    assert res['engine'] == os.path.join(engine_root, engine['sha256'], 'engine.pyz')
    rc, res = run(btreplay.main, dict(args, bundle_id='f' * 64))
    assert rc == 1 and 'No such file' in res['msg'] and res['error']['code'] == 'not_found'


def test_check_mode_runs_nothing(run, randmix_bundle, engine_pyz, loop_device, tmp_path):
    bundle = randmix_bundle[0]
    args = base(bundle, tmp_path, engine_pyz, device_map={'loop1': loop_device}, write_enable=True)
    rc, res = run(btreplay.main, args, check_mode=True)
    assert rc == 0 and res['changed'] is True and 'replay_results' not in res
    assert not os.path.exists(str(tmp_path / 'out' / 'results.json'))
    rc, res = run(btreplay.main, dict(args, write_enable=False), check_mode=True)
    assert rc == 0 and res['changed'] is False
    rc, res = run(btreplay.main, dict(args, device_map={'loop1': '/nonexistent'}), check_mode=True)
    assert rc == 1 and res['error']['code'] == 'not_found'  # check mode predicts the failure


def test_not_a_bundle(run, engine_pyz, tmp_path):
    path = tmp_path / 'x.tar'
    path.write_bytes(b'not a tar' * 100)
    rc, res = run(btreplay.main, base(str(path), tmp_path, engine_pyz))
    assert rc == 1 and 'not a blkfleet bundle' in res['msg'] and res['error']['code'] == 'invalid_input'
    rc, res = run(btreplay.main, {'bundle': str(path), 'bundle_id': 'a' * 64})
    assert rc == 1 and 'mutually exclusive' in res['msg']
    rc, res = run(btreplay.main, {'bundle': str(path), 'arm': 5})
    assert rc == 1 and 'run_id' in res['msg']

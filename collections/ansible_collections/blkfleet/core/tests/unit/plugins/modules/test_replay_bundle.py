# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""replay_bundle on the target with a real bundle: the engine member it installs, and the engine that verifies and
describes the bundle."""

from __future__ import annotations

import os
import tarfile

from ansible_collections.blkfleet.core.plugins.module_utils import _install
from ansible_collections.blkfleet.core.plugins.modules import replay_bundle


def ids(bundle, manifest, tmp_path):
    engine = manifest['engine']
    return {'bundle_id': manifest['bundle_id'], 'checksum': _install.describe(bundle)[1],
            'dest': str(tmp_path / 'bundles'), 'engine_root': str(tmp_path / 'engines'),
            'engine_member': engine['path'], 'engine_size': engine['size'], 'engine_sha256': engine['sha256']}


def test_push_probe_install_and_again(run, bundle_copy, tmp_path):
    bundle, manifest = bundle_copy
    args = ids(bundle, manifest, tmp_path)
    # the action plugin's first pass: no src, only "is it there?"
    rc, res = run(replay_bundle.main, args)
    assert rc == 0 and res['installed'] is False and res['changed'] is False
    rc, res = run(replay_bundle.main, dict(args, src=bundle), check_mode=True)
    assert rc == 0 and res['installed'] is False and res['changed'] is True and not os.path.exists(args['dest'])
    rc, res = run(replay_bundle.main, dict(args, src=bundle))
    assert rc == 0, res
    assert res['changed'] is True and res['installed'] is True
    assert res['path'] == os.path.join(args['dest'], manifest['bundle_id'] + '.tar')
    assert _install.describe(res['path']) == _install.describe(bundle)
    assert res['engine'] == os.path.join(args['engine_root'], manifest['engine']['sha256'], 'engine.pyz')
    assert os.access(res['engine'], os.X_OK) and res['devices'] == ['loop1'] and res['totals']['ios'] == 2000
    assert res['capture_window'] == manifest['capture_window']
    rc, res = run(replay_bundle.main, args)
    assert rc == 0 and res['installed'] is True and res['changed'] is False and res['totals']['ios'] == 2000
    # a lost engine comes back from the installed bundle
    os.unlink(res['engine'])
    rc, res = run(replay_bundle.main, args, check_mode=True)
    assert rc == 0 and res['changed'] is True and not os.path.exists(res['engine'])
    rc, res = run(replay_bundle.main, args)
    assert rc == 0 and res['changed'] is True and os.path.exists(res['engine'])


def test_a_damaged_bundle_installs_nothing(run, bundle_copy, tmp_path):
    bundle, manifest = bundle_copy
    with tarfile.open(bundle) as tar:  # damage a replay file, not the manifest or the engine: the engine finds it
        offset = next(m.offset_data for m in tar if m.name.startswith('replay/'))
    with open(bundle, 'r+b') as f:
        f.seek(offset + 100)
        f.write(b'\xff' * 16)
    args = dict(ids(bundle, manifest, tmp_path), src=bundle)
    rc, res = run(replay_bundle.main, args)
    assert rc == 1 and res['error']['code'] == 'invalid_input' and 'sha256' in res['msg'], res
    assert not os.path.exists(os.path.join(args['dest'], manifest['bundle_id'] + '.tar'))


def test_mismatches(run, bundle_copy, tmp_path):
    bundle, manifest = bundle_copy
    args = dict(ids(bundle, manifest, tmp_path), src=bundle)
    rc, res = run(replay_bundle.main, dict(args, bundle_id='b' * 64, checksum=_install.describe(bundle)[1]))
    assert rc == 1 and 'not bundle ' + 'b' * 64 in res['msg']
    rc, res = run(replay_bundle.main, dict(args, checksum='c' * 64))
    assert rc == 1 and 'differs from checksum' in res['msg']
    rc, res = run(replay_bundle.main, {})
    assert rc == 1 and 'action plugin' in res['msg']
    rc, res = run(replay_bundle.main, {'replay_dir': str(tmp_path)})
    assert rc == 1 and 'controller' in res['msg']

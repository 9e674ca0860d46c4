# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import os

from ansible_collections.blkfleet.core.plugins.modules import replay_bundle


def sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_push_probe_install_and_again(run, bundle_factory, tmp_path):
    bundle, manifest = bundle_factory()
    dest, engines = str(tmp_path / 'bundles'), str(tmp_path / 'engines')
    ids = {'bundle_id': manifest['bundle_id'], 'checksum': sha(bundle), 'dest': dest, 'engine_root': engines}
    # the action plugin's first pass: no src, only "is it there?"
    rc, res = run(replay_bundle.main, ids)
    assert rc == 0 and res['installed'] is False and res['changed'] is False
    rc, res = run(replay_bundle.main, dict(ids, src=bundle), check_mode=True)
    assert rc == 0 and res['installed'] is False and res['changed'] is True and not os.path.exists(dest)
    rc, res = run(replay_bundle.main, dict(ids, src=bundle))
    assert rc == 0, res
    assert res['changed'] is True and res['installed'] is True
    assert res['path'] == os.path.join(dest, manifest['bundle_id'] + '.tar') and sha(res['path']) == sha(bundle)
    assert res['engine'] == os.path.join(engines, manifest['engine']['sha256'], 'engine.pyz')
    assert os.access(res['engine'], os.X_OK) and res['devices'] == ['loop1'] and res['totals']['ios'] == 10
    rc, res = run(replay_bundle.main, ids)
    assert rc == 0 and res['installed'] is True and res['changed'] is False
    # a lost engine comes back from the installed bundle
    os.unlink(res['engine'])
    rc, res = run(replay_bundle.main, ids, check_mode=True)
    assert rc == 0 and res['changed'] is True and not os.path.exists(res['engine'])
    rc, res = run(replay_bundle.main, ids)
    assert rc == 0 and res['changed'] is True and os.path.exists(res['engine'])


def test_verify_failure_installs_nothing(run, bundle_factory, tmp_path, monkeypatch):
    bundle, manifest = bundle_factory()
    monkeypatch.setenv('FAKE_VERIFY_FAIL', '1')
    dest = str(tmp_path / 'bundles')
    rc, res = run(replay_bundle.main, {'src': bundle, 'dest': dest, 'engine_root': str(tmp_path / 'e')})
    assert rc == 1 and res['msg'].endswith("member 'replay/loop1.replay.0': sha256 mismatch")
    assert not os.path.exists(os.path.join(dest, manifest['bundle_id'] + '.tar'))


def test_mismatches(run, bundle_factory, tmp_path):
    bundle, manifest = bundle_factory()
    rc, res = run(replay_bundle.main, {'src': bundle, 'bundle_id': 'b' * 64, 'dest': str(tmp_path / 'd')})
    assert rc == 1 and 'not ' + 'b' * 64 in res['msg']
    rc, res = run(replay_bundle.main, {'src': bundle, 'checksum': 'c' * 64, 'dest': str(tmp_path / 'd'),
                                       'engine_root': str(tmp_path / 'e')})
    assert rc == 1 and 'differs from checksum' in res['msg']
    rc, res = run(replay_bundle.main, {})
    assert rc == 1 and 'action plugin' in res['msg']
    rc, res = run(replay_bundle.main, {'replay_dir': str(tmp_path)})
    assert rc == 1 and 'controller' in res['msg']

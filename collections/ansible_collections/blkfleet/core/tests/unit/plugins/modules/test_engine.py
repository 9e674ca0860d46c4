# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import os

from ansible_collections.blkfleet.core.plugins.modules import engine


def test_install_once(run, engine_pyz, tmp_path):
    with open(engine_pyz, 'rb') as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    root = str(tmp_path / 'root')
    dest = os.path.join(root, sha, 'engine.pyz')
    rc, res = run(engine.main, {'sha256': sha, 'root': root})
    assert rc == 0 and res['installed'] is False and res['changed'] is False and res['path'] == dest
    rc, res = run(engine.main, {'src': engine_pyz, 'sha256': sha, 'root': root}, check_mode=True)
    assert rc == 0 and res['changed'] is True and not os.path.exists(dest)
    rc, res = run(engine.main, {'src': engine_pyz, 'root': root})
    assert rc == 0 and res['changed'] is True and res['installed'] is True and res['sha256'] == sha
    assert os.access(dest, os.X_OK) and res['size'] == os.path.getsize(engine_pyz)
    rc, res = run(engine.main, {'src': engine_pyz, 'sha256': sha, 'root': root})
    assert rc == 0 and res['changed'] is False
    assert not [n for n in os.listdir(os.path.dirname(dest)) if n != 'engine.pyz']  # no temporary files left


def test_wrong_sha_installs_nothing(run, engine_pyz, tmp_path):
    root = str(tmp_path / 'root')
    rc, res = run(engine.main, {'src': engine_pyz, 'sha256': 'a' * 64, 'root': root})
    assert rc == 1 and 'expected ' + 'a' * 64 in res['msg']
    assert os.listdir(os.path.join(root, 'a' * 64)) == []
    rc, res = run(engine.main, {'sha256': '../x', 'root': root})
    assert rc == 1 and 'not a SHA-256' in res['msg']
    rc, res = run(engine.main, {})
    assert rc == 1 and 'action plugin' in res['msg']

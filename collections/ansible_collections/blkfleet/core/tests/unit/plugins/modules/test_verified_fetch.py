# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import os

from ansible_collections.blkfleet.core.plugins.modules import verified_fetch


def test_reports_size_and_sha256(run, tmp_path):
    path = tmp_path / 'r.json'
    path.write_bytes(b'{"a": 1}\n' * 1000)
    rc, res = run(verified_fetch.main, {'src': str(path), 'dest': '/x'})
    assert rc == 0 and res['changed'] is False
    assert res['size'] == 9000 and res['sha256'] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_refuses_links_and_other_files(run, tmp_path):
    (tmp_path / 'r.json').write_text('{}')
    os.symlink('r.json', str(tmp_path / 'link'))
    rc, res = run(verified_fetch.main, {'src': str(tmp_path / 'link'), 'dest': '/x'})
    assert rc == 1 and 'link' in res['msg']
    rc, res = run(verified_fetch.main, {'src': str(tmp_path), 'dest': '/x'})
    assert rc == 1 and 'Is a directory' in res['msg']
    rc, res = run(verified_fetch.main, {'src': str(tmp_path / 'missing'), 'dest': '/x'})
    assert rc == 1 and 'No such file' in res['msg']

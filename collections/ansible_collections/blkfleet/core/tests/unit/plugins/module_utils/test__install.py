# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import io
import os
import tarfile

import pytest

from ansible_collections.blkfleet.core.plugins.module_utils import _install


def test_paths_are_checked():
    assert _install.bundle_path('a' * 64, '/b') == '/b/%s.tar' % ('a' * 64)
    assert _install.engine_path('b' * 64, '/e') == '/e/%s/engine.pyz' % ('b' * 64)
    for bad in ('../x', 'A' * 64, '', None):
        with pytest.raises(_install.InstallError):
            _install.bundle_path(bad)


def test_describe_reads_a_regular_file_once(tmp_path):
    path = tmp_path / 'f'
    path.write_bytes(b'abc' * 1000)
    assert _install.describe(str(path)) == (3000, hashlib.sha256(b'abc' * 1000).hexdigest())
    os.symlink('f', str(tmp_path / 'link'))
    for bad in ('link', '.', 'missing'):
        with pytest.raises(OSError):
            _install.describe(str(tmp_path / bad))
    assert not _install.has_content(str(tmp_path / 'link'), _install.describe(str(path))[1])


def test_install_stream_checks_and_leaves_nothing(tmp_path):
    dest = str(tmp_path / 'd' / 'f')
    good = hashlib.sha256(b'abc').hexdigest()
    with pytest.raises(_install.InstallError, match='expected'):
        _install.install_stream(io.BytesIO(b'abd'), dest, good)
    assert os.listdir(str(tmp_path / 'd')) == []
    with pytest.raises(_install.InstallError, match='larger than 2 bytes'):
        _install.install_stream(io.BytesIO(b'abc'), dest, good, limit=2)
    assert os.listdir(str(tmp_path / 'd')) == []
    _install.install_stream(io.BytesIO(b'abc'), dest, good, mode=0o755)
    assert _install.has_content(dest, good) and os.stat(dest).st_mode & 0o777 == 0o755


def test_install_engine_from_a_real_bundle(randmix_bundle, tmp_path):
    path, manifest = randmix_bundle
    engine = manifest['engine']
    root = str(tmp_path / 'engines')
    dest, changed = _install.install_engine_from_bundle(path, engine['path'], engine['size'], engine['sha256'], root)
    assert changed is True and _install.has_content(dest, engine['sha256']) and os.access(dest, os.X_OK)
    assert _install.install_engine_from_bundle(path, engine['path'], engine['size'], engine['sha256'], root) == (
        dest, False)
    with pytest.raises(_install.InstallError, match='no member x.pyz'):
        _install.install_engine_from_bundle(path, 'x.pyz', engine['size'], 'd' * 64, root)
    with pytest.raises(_install.InstallError, match='expected ' + 'e' * 64):
        _install.install_engine_from_bundle(path, engine['path'], engine['size'], 'e' * 64, root)


def test_install_engine_refuses_a_sparse_or_oversized_engine_member(tmp_path):
    body = b'\0' * 4096
    sha = hashlib.sha256(body).hexdigest()
    for headers, problem in (({'GNU.sparse.size': '67108864', 'GNU.sparse.map': '0,4096'}, 'not a plain regular'),
                             ({'GNU.sparse.major': '1', 'GNU.sparse.minor': '0'}, 'not a readable bundle')):
        sparse = str(tmp_path / 'sparse.tar')
        with tarfile.open(sparse, 'w', format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo('engine.pyz')
            info.size = len(body)
            info.pax_headers = headers
            tar.addfile(info, io.BytesIO(body))
        with pytest.raises(_install.InstallError, match=problem):
            _install.install_engine_from_bundle(sparse, 'engine.pyz', len(body), sha, str(tmp_path / 'e'))
    big = str(tmp_path / 'big.tar')
    with tarfile.open(big, 'w') as tar:
        info = tarfile.TarInfo('engine.pyz')
        info.size = len(body) * 2
        tar.addfile(info, io.BytesIO(body * 2))
    with pytest.raises(_install.InstallError, match='the manifest says 4096'):
        _install.install_engine_from_bundle(big, 'engine.pyz', len(body), sha, str(tmp_path / 'e'))
    assert not os.path.exists(str(tmp_path / 'e' / sha))

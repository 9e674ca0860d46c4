# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""replay_bundle's pull mode with a real bundle from a real HTTP server on the loopback (Python's http.server in a
thread; tests/ansible/test_bundle_pull.py pulls from nginx over namespace links): checked against its id before
anything of it runs, installed only then, nothing kept of a failure, retried as configured, idempotent."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import tarfile
import threading

import pytest

from ansible_collections.blkfleet.core.plugins.module_utils import _install, _pull
from ansible_collections.blkfleet.core.plugins.modules import replay_bundle


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        cut = self.server.cut and self.path.endswith('.tar')
        self.server.log.append(self.path + (' (cut)' if cut else ''))
        if cut:
            self.server.cut -= 1
            size = os.path.getsize(os.path.join(self.server.root, self.path.lstrip('/')))
            self.send_response(200)
            self.send_header('Content-Length', str(size))
            self.end_headers()
            with open(os.path.join(self.server.root, self.path.lstrip('/')), 'rb') as f:
                self.wfile.write(f.read(size // 2))
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def web(tmp_path):
    """A directory served over HTTP on 127.0.0.1: ``(root, base URL, server)``; ``server.cut`` = how many bundle
    GETs to cut in the middle."""
    root = tmp_path / 'www'
    root.mkdir()
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Handler, directory=str(root)))
    server.root, server.cut, server.log = str(root), 0, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, 'http://127.0.0.1:%d/' % server.server_address[1], server
    finally:
        server.shutdown()
        server.server_close()


def publish(bundle, root, name=None):
    shutil.copyfile(bundle, str(root / (name or os.path.basename(bundle))))


def pull_args(tmp_path, url, **extra):
    return dict({'url': url, 'dest': str(tmp_path / 'bundles'), 'engine_root': str(tmp_path / 'engines'),
                 'retry_delay': 0}, **extra)


def left_in(tmp_path):
    """Everything under the bundle and engine directories."""
    found = []
    for top in ('bundles', 'engines'):
        for dirpath, dirnames, filenames in os.walk(str(tmp_path / top)):
            found += [os.path.relpath(os.path.join(dirpath, n), str(tmp_path)) for n in dirnames + filenames]
    return sorted(found)


def test_pull_install_and_again(run, bundle_copy, tmp_path, web):
    bundle, manifest = bundle_copy
    root, base, server = web
    name = manifest['bundle_id'] + '.tar'
    publish(bundle, root, name)
    args = pull_args(tmp_path, base + name + '?X-Amz-Signature=s3cr3t')
    rc, res = run(replay_bundle.main, args, check_mode=True)
    assert rc == 0 and res['changed'] is True and res['installed'] is False and left_in(tmp_path) == []
    assert server.log == []
    rc, res = run(replay_bundle.main, args)
    assert rc == 0, res
    assert res['changed'] and res['fetched'] and res['installed'] and res['attempts'] == 1
    assert res['url'] == base + name and 's3cr3t' not in repr(dict(res, invocation=None))
    assert res['path'] == str(tmp_path / 'bundles' / name)
    assert _install.describe(res['path']) == _install.describe(bundle)
    assert res['checksum'] == _install.describe(bundle)[1] and res['size'] == os.path.getsize(bundle)
    assert res['engine'] == str(tmp_path / 'engines' / manifest['engine']['sha256'] / 'engine.pyz')
    assert os.access(res['engine'], os.X_OK) and res['devices'] == ['loop1'] and res['totals']['ios'] == 2000
    assert res['capture_window'] == manifest['capture_window']
    assert left_in(tmp_path) == sorted(['bundles/' + name, 'engines/' + manifest['engine']['sha256'],
                                        'engines/%s/engine.pyz' % manifest['engine']['sha256']])
    # again: there under its id, nothing downloaded, in check mode too
    for check in (True, False):
        rc, res = run(replay_bundle.main, args, check_mode=check)
        assert rc == 0 and res['changed'] is False and res['fetched'] is False and res['attempts'] == 0
    assert len(server.log) == 1
    # the controller's checksum: checked on the installed file too
    rc, res = run(replay_bundle.main, dict(args, checksum=_install.describe(bundle)[1]))
    assert rc == 0 and res['changed'] is False and len(server.log) == 1


def test_the_id_comes_from_the_url_or_bundle_id(run, bundle_copy, tmp_path, web):
    bundle, manifest = bundle_copy
    root, base, server = web
    publish(bundle, root, 'latest.tar')
    rc, res = run(replay_bundle.main, pull_args(tmp_path, base + 'latest.tar'))
    assert rc == 1 and 'which bundle is it? Give bundle_id' in res['msg'] and server.log == []
    rc, res = run(replay_bundle.main, pull_args(tmp_path, base + 'latest.tar', bundle_id=manifest['bundle_id']))
    assert rc == 0 and res['fetched'], res
    rc, res = run(replay_bundle.main, pull_args(tmp_path, base + 'a' * 64 + '.tar', bundle_id='b' * 64))
    assert rc == 1 and 'names bundle ' + 'a' * 64 + ', not bundle_id ' + 'b' * 64 in res['msg']
    rc, res = run(replay_bundle.main, pull_args(tmp_path, 'ftp://127.0.0.1/x.tar', bundle_id='b' * 64))
    assert rc == 1 and 'not an http:// or https:// URL' in res['msg']


def test_another_bundle_under_the_id_is_refused_before_it_runs(run, bundle_copy, tmp_path, web):
    bundle, manifest = bundle_copy
    root, base, server = web
    other = 'c' * 64
    publish(bundle, root, other + '.tar')
    rc, res = run(replay_bundle.main, pull_args(tmp_path, base + other + '.tar'))
    assert rc == 1 and res['msg'] == '%s%s.tar: refused, nothing kept: the download holds bundle %s, not %s' % (
        base, other, manifest['bundle_id'], other)
    assert left_in(tmp_path) == []  # not even the engine: it never ran


def test_a_damaged_member_is_refused_by_the_engine_it_names(run, bundle_copy, tmp_path, web):
    bundle, manifest = bundle_copy
    root, base, server = web
    with tarfile.open(bundle) as tar:
        offset = next(m.offset_data for m in tar if m.name.startswith('replay/'))
    with open(bundle, 'r+b') as f:
        f.seek(offset + 100)
        f.write(b'\xff' * 16)
    name = manifest['bundle_id'] + '.tar'
    publish(bundle, root, name)
    rc, res = run(replay_bundle.main, pull_args(tmp_path, base + name))
    assert rc == 1 and res['msg'].startswith(base + name + ': refused, nothing kept: the download: member ')
    assert 'sha256 mismatch' in res['msg'] and '\n' not in res['msg']
    assert left_in(tmp_path) == []
    # the controller knew the file's SHA-256: refused before the file is read at all
    rc, res = run(replay_bundle.main, pull_args(tmp_path, base + name, checksum='d' * 64))
    assert rc == 1 and 'the download has sha256 ' in res['msg'] and ', not ' + 'd' * 64 in res['msg']
    assert left_in(tmp_path) == []


def test_not_found_fails_at_once(run, tmp_path, web):
    root, base, server = web
    rc, res = run(replay_bundle.main, pull_args(tmp_path, base + 'e' * 64 + '.tar', retries=5))
    assert rc == 1 and res['msg'] == '%s%s.tar: HTTP 404 File not found' % (base, 'e' * 64)
    assert res['status'] == 404 and res['attempts'] == 1 and len(server.log) == 1 and left_in(tmp_path) == []


def test_a_cut_download_is_retried_from_the_start(run, bundle_copy, tmp_path, web):
    bundle, manifest = bundle_copy
    root, base, server = web
    name = manifest['bundle_id'] + '.tar'
    publish(bundle, root, name)
    server.cut = 1
    rc, res = run(replay_bundle.main, pull_args(tmp_path, base + name, retries=1))
    assert rc == 0 and res['fetched'] and res['attempts'] == 2, res
    assert server.log == ['/' + name + ' (cut)', '/' + name]
    assert _install.describe(res['path']) == _install.describe(bundle)
    # cut every time: the last failure, how many attempts, and the first one's failure
    server.cut = 3
    os.unlink(res['path'])
    rc, res = run(replay_bundle.main, pull_args(tmp_path, base + name, retries=2))
    size = os.path.getsize(bundle)
    assert rc == 1 and res['attempts'] == 3 and 'download failed after 3 attempts: cut off after ' in res['msg']
    assert ' of %d bytes' % size in res['msg'] and left_in(tmp_path) == sorted(
        ['engines/' + manifest['engine']['sha256'], 'engines/%s/engine.pyz' % manifest['engine']['sha256']])


def test_no_server(run, tmp_path, web):
    root, base, server = web
    server.shutdown()
    server.server_close()
    rc, res = run(replay_bundle.main, pull_args(tmp_path, base + 'f' * 64 + '.tar', retries=2))
    assert rc == 1 and res['attempts'] == 3 and 'download failed after 3 attempts: ' in res['msg']
    assert 'refused' in res['msg'].lower()


def test_stale_pulls_are_removed(tmp_path):
    dest = tmp_path / 'bundles'
    old = dest / '.pull-old'
    old.mkdir(parents=True)
    (old / 'bundle.tar').write_bytes(b'x')
    os.utime(str(old / 'bundle.tar'), (1, 1))
    os.utime(str(old), (1, 1))
    fresh = dest / '.pull-fresh'
    fresh.mkdir()
    _pull.remove_stale(str(dest))
    assert sorted(os.listdir(str(dest))) == ['.pull-fresh']


def test_url_helpers():
    assert _pull.redact('https://u:p@h:8/a/b.tar?X-Amz-Signature=1#f') == 'https://h:8/a/b.tar'
    assert _pull.bundle_id_of('http://h/x/' + 'a' * 64 + '.tar?sig=1') == 'a' * 64
    assert _pull.bundle_id_of('http://h/x/' + 'a' * 64 + '.tar/') is None
    assert _pull.bundle_id_of('http://h/' + 'A' * 64 + '.tar') is None

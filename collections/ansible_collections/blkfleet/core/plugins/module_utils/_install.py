# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Content-addressed installs on a target: engine zipapps and replay bundles. Private to blkfleet.core.

Standard library only (targets run Python >= 3.9 without the blkfleet package). Every install writes a
temporary file next to its destination and renames it into place, so a reader never sees a partial file and
two hosts sharing one filesystem (network-namespace test hosts) can install the same content concurrently.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile

from ansible_collections.blkfleet.core.plugins.module_utils._engine import (
    ENGINE_NAME,
    ENGINE_ROOT,
    SHA256_RE,
    sha256_file,
)

BUNDLE_DIR = '/var/lib/blkfleet/bundles'
MANIFEST_NAME = 'manifest.json'
MANIFEST_MAX = 16 << 20
ENGINE_MAX = 64 << 20  # the engine's own bound on engine.pyz in a bundle


class InstallError(Exception):
    pass


def check_sha256(value, what):
    if not SHA256_RE.match(value or ''):
        raise InstallError('%s is not a SHA-256 hex digest: %r' % (what, value))
    return value


def engine_path(sha256, root=ENGINE_ROOT):
    return os.path.join(root, check_sha256(sha256, 'engine sha256'), ENGINE_NAME)


def bundle_path(bundle_id, directory=BUNDLE_DIR):
    return os.path.join(directory, check_sha256(bundle_id, 'bundle id') + '.tar')


def has_content(path, sha256):
    """Whether ``path`` is a regular file whose SHA-256 is ``sha256``."""
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    return sha256_file(path) == sha256


def install_stream(reader, dest, sha256, mode=0o644, limit=None):
    """Copy ``reader`` to ``dest`` through a temporary file, checking its SHA-256 before the rename; more than
    ``limit`` bytes is an error."""
    directory = os.path.dirname(dest)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(dest), suffix='.partial', dir=directory)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, 'wb') as out:
            while True:
                block = reader.read(1 << 20)
                if not block:
                    break
                digest.update(block)
                out.write(block)
                if limit is not None and out.tell() > limit:
                    raise InstallError('%s: content larger than %d bytes' % (dest, limit))
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise InstallError('%s: content has sha256 %s, expected %s' % (dest, digest.hexdigest(), sha256))
        os.chmod(tmp, mode)
        os.rename(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def install_file(src, dest, sha256, mode=0o644):
    with open(src, 'rb') as reader:
        install_stream(reader, dest, sha256, mode)


def read_manifest(path):
    """The manifest of a bundle (its first tar member), without reading the rest. Checked by the engine later."""
    try:
        with tarfile.open(path, mode='r:') as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST_NAME or not first.isfile():
                raise InstallError('%s: not a blkfleet bundle (its first member is not %s)' % (path, MANIFEST_NAME))
            if first.size > MANIFEST_MAX:
                raise InstallError('%s: manifest too large (%d bytes)' % (path, first.size))
            doc = json.loads(tar.extractfile(first).read().decode('utf-8'))
    except (tarfile.TarError, ValueError, UnicodeDecodeError) as e:
        raise InstallError('%s: not a blkfleet bundle (%s)' % (path, e))
    except OSError as e:
        raise InstallError('%s: %s' % (path, e.strerror or e))
    if not isinstance(doc, dict) or doc.get('format') != 'blkfleet-bundle':
        raise InstallError('%s: not a blkfleet bundle (manifest format is not blkfleet-bundle)' % path)
    engine = doc.get('engine')
    if not isinstance(engine, dict):
        raise InstallError('%s: manifest has no engine entry' % path)
    check_sha256(doc.get('bundle_id'), '%s: bundle_id' % path)
    check_sha256(engine.get('sha256'), '%s: engine sha256' % path)
    return doc


def install_engine_from_bundle(path, manifest, root=ENGINE_ROOT):
    """Install the bundle's engine.pyz under ``root/<sha256>/engine.pyz`` unless it is there; returns (path, changed)."""
    sha = manifest['engine']['sha256']
    dest = engine_path(sha, root)
    if has_content(dest, sha):
        return dest, False
    name = manifest['engine'].get('path') or ENGINE_NAME
    try:
        with tarfile.open(path, mode='r:') as tar:
            for member in tar:
                if member.name == name:
                    if not member.isfile() or member.issparse() or any(
                            key.startswith('GNU.sparse') for key in member.pax_headers):
                        raise InstallError('%s: member %s is not a plain regular file' % (path, name))
                    size = manifest['engine'].get('size')
                    if member.size != size or member.size > ENGINE_MAX:
                        raise InstallError('%s: member %s holds %d bytes, the manifest says %r (at most %d)'
                                           % (path, name, member.size, size, ENGINE_MAX))
                    install_stream(tar.extractfile(member), dest, sha, mode=0o755, limit=member.size)
                    return dest, True
    except (tarfile.TarError, ValueError, EOFError) as e:
        raise InstallError('%s: not a readable bundle (%s)' % (path, e))
    raise InstallError('%s: no member %s' % (path, name))

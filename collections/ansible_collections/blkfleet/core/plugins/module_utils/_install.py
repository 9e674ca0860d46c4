# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Content-addressed installs on a target: engine zipapps and replay bundles. Private to blkfleet.core.

This runs before the engine is on the host (it is what puts it there), so it cannot ask the engine: it holds the
collection's one file hash (also used by verified_fetch, which fetches any file, and by the controller) and its one
read of a bundle's tar, which takes out the engine member the controller names (path, size, SHA-256 from the
manifest it read with the engine). Everything else about a bundle, its manifest included, comes from the engine.

Standard library only (targets run Python >= 3.9). Every install writes a temporary file next to its destination and
renames it into place, so a reader never sees a partial file and two hosts sharing one filesystem (network-namespace
test hosts) can install the same content concurrently.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import tempfile

from ansible_collections.blkfleet.core.plugins.module_utils._engine import ENGINE_NAME, ENGINE_ROOT, SHA256_RE

BUNDLE_DIR = '/var/lib/blkfleet/bundles'
ENGINE_MAX = 64 << 20  # the engine's own bound on engine.pyz in a bundle
CHUNK = 1 << 20


class InstallError(Exception):
    pass


# Installs run before the engine is on the host, so this hash is the collection's own: its one copy (see above).
def describe(path):
    """``(size, sha256)`` of the regular file ``path``, opened without following a link and read once."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0))
    with os.fdopen(fd, 'rb') as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError('not a regular file')
        digest = hashlib.sha256()
        size = 0
        for block in iter(lambda: f.read(CHUNK), b''):
            size += len(block)
            digest.update(block)
    return size, digest.hexdigest()


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
    try:
        return describe(path)[1] == sha256
    except OSError:
        return False


def install_stream(reader, dest, sha256, mode=0o644, limit=None):
    """Copy ``reader`` to ``dest`` through a temporary file, checking its SHA-256 before the rename; more than
    ``limit`` bytes is an error."""
    directory = os.path.dirname(dest)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(dest), suffix='.partial', dir=directory)
    done = False
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, 'wb') as out:
            for block in iter(lambda: reader.read(CHUNK), b''):
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
        done = True
    finally:
        if not done and os.path.lexists(tmp):
            os.unlink(tmp)


def install_file(src, dest, sha256, mode=0o644):
    with open(src, 'rb') as reader:
        install_stream(reader, dest, sha256, mode)


# The engine is still in the bundle: taking it out is the one read of a bundle that is not the engine's.
def install_engine_from_bundle(bundle, member, size, sha256, root=ENGINE_ROOT):
    """Install the bundle's engine (its tar member ``member`` of ``size`` bytes, as the manifest says) under
    ``root/<sha256>/engine.pyz`` unless it is there; returns (path, changed)."""
    dest = engine_path(sha256, root)
    if has_content(dest, sha256):
        return dest, False
    try:
        with tarfile.open(bundle, mode='r:') as tar:
            for entry in tar:
                if entry.name != member:
                    continue
                if not entry.isfile() or entry.issparse() or any(k.startswith('GNU.sparse') for k in entry.pax_headers):
                    raise InstallError('%s: member %s is not a plain regular file' % (bundle, member))
                if entry.size != size or entry.size > ENGINE_MAX:
                    raise InstallError('%s: member %s holds %d bytes, the manifest says %r (at most %d)'
                                       % (bundle, member, entry.size, size, ENGINE_MAX))
                install_stream(tar.extractfile(entry), dest, sha256, mode=0o755, limit=entry.size)
                return dest, True
    except (tarfile.TarError, ValueError, EOFError) as e:
        raise InstallError('%s: not a readable bundle (%s)' % (bundle, e))
    raise InstallError('%s: no member %s' % (bundle, member))

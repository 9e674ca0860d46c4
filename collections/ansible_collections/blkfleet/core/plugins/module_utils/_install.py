# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Content-addressed installs on a target: engine zipapps and replay bundles. Private to blkfleet.core.

This runs before the engine is on the host (it is what puts it there), so it cannot ask the engine: it holds the
collection's one file hash (also used by verified_fetch, which fetches any file, and by the controller) and its reads
of a bundle's tar: the engine member the controller names (path, size, SHA-256 from the manifest it read with the
engine), and, for a bundle a host pulled itself, the manifest, checked against the bundle id before its engine is
taken out. Everything else about a bundle comes from the engine, which verifies every member.

Standard library only (targets run Python >= 3.9). Every install writes a temporary file next to its destination and
renames it into place, so a reader never sees a partial file and two hosts sharing one filesystem (network-namespace
test hosts) can install the same content concurrently.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
import tempfile

from ansible_collections.blkfleet.core.plugins.module_utils._engine import (
    ENGINE_NAME,
    ENGINE_ROOT,
    SHA256_RE,
    untrusted,
)

BUNDLE_DIR = '/var/lib/blkfleet/bundles'
MANIFEST = 'manifest.json'
MANIFEST_MAX = 16 << 20  # the engine's own bound on manifest.json
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


def _foreign_link(path):
    """The first symbolic link on the way to the absolute ``path`` that is neither root's nor ours, as
    ``(link, uid)``, or None; links are followed as the kernel would (the engine's blkfleet.files does the same)."""
    names = path.split('/')
    current, hops = '/', 0
    while names:
        name = names.pop(0)
        if name in ('', '.'):
            continue
        if name == '..':
            current = os.path.dirname(current)
            continue
        here = os.path.join(current, name)
        try:
            st = os.lstat(here)
        except OSError:
            return None
        if not stat.S_ISLNK(st.st_mode):
            current = here
            continue
        hops += 1
        if st.st_uid not in (0, os.geteuid()):
            return here, st.st_uid
        if hops > 40:
            return None
        target = os.readlink(here)
        names = target.split('/') + names
        current = '/' if target.startswith('/') else current
    return None


def trusted_file(path):
    """The real path of the existing file ``path`` once nobody but root can change it, a directory above it (a
    sticky one may hold it) or a link on the way to it: root replays what it holds. InstallError otherwise."""
    link = _foreign_link(os.path.join(os.getcwd(), path))
    real = os.path.realpath(path)
    why = 'the link %s on the way to it is owned by uid %d' % link if link else untrusted(real)
    if why:
        raise InstallError('refusing %s: %s (keep it where only root can write to, such as under %s)'
                           % (path, why, BUNDLE_DIR))
    return real


def trusted_dir(path, create=True):
    """The real path of the directory ``path`` (links resolved), made with its missing parents when ``create``, once
    nobody but root can change it or a directory above it (``untrusted``), nor a link on the way to it (nothing is
    made under a directory that fails this). What is installed there, root trusts later. InstallError otherwise."""
    link = _foreign_link(os.path.join(os.getcwd(), path))
    real = os.path.realpath(path)
    here = real
    while not os.path.lexists(here):
        here = os.path.dirname(here)
    why = 'the link %s on the way to it is owned by uid %d' % link if link else untrusted(here, sticky_ok=here != real)
    if not why and here != real and create:
        try:
            os.makedirs(real, mode=0o755, exist_ok=True)
        except OSError as e:
            raise InstallError('cannot make the directory %s: %s' % (path, e.strerror)) from None
        why = untrusted(real)
    if not why and os.path.lexists(real) and not os.path.isdir(real):
        why = '%s is not a directory' % real
    if why:
        raise InstallError('refusing the directory %s: %s (use a directory only root can write to, such as one '
                           'under /var/lib/blkfleet)' % (path, why))
    return real


def install_stream(reader, dest, sha256, mode=0o644, limit=None):
    """Copy ``reader`` to ``dest`` through a temporary file, checking its SHA-256 before the rename; more than
    ``limit`` bytes is an error. Only into a directory nobody else can change (``trusted_dir``): an engine runs as
    root, and a bundle another user could replace after the install would be replayed."""
    directory = trusted_dir(os.path.dirname(dest))
    dest = os.path.join(directory, os.path.basename(dest))
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
            os.fchmod(out.fileno(), mode)  # not by its name: in a directory others can write it may be a link by now
        if digest.hexdigest() != sha256:
            raise InstallError('%s: content has sha256 %s, expected %s' % (dest, digest.hexdigest(), sha256))
        os.rename(tmp, dest)
        done = True
    finally:
        if not done and os.path.lexists(tmp):
            os.unlink(tmp)


def install_file(src, dest, sha256, mode=0o644):
    with open(src, 'rb') as reader:
        install_stream(reader, dest, sha256, mode)


# The engine is still in the bundle: taking it out is the one read of a bundle's members that is not the engine's.
def extract_engine(bundle, member, size, sha256, dest):
    """Copy the bundle's engine (its tar member ``member`` of ``size`` bytes, as the manifest says) to ``dest``,
    checking its SHA-256 before the rename."""
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
                return
    except (tarfile.TarError, ValueError, EOFError) as e:
        raise InstallError('%s: not a readable bundle (%s)' % (bundle, e)) from None
    raise InstallError('%s: no member %s' % (bundle, member))


def install_engine_from_bundle(bundle, member, size, sha256, root=ENGINE_ROOT):
    """Install the bundle's engine under ``root/<sha256>/engine.pyz`` unless it is there; returns (path, changed)."""
    dest = engine_path(sha256, root)
    if has_content(dest, sha256):
        return dest, False
    extract_engine(bundle, member, size, sha256, dest)
    return dest, True


# The engine computes bundle ids too (blkfleet.bundle.manifest.bundle_id): a pulled bundle is checked against its id
# before any engine of it runs, so this one step exists here as well.
def manifest_id(manifest):
    """SHA-256 of the canonical JSON of the manifest without its ``bundle_id``: the bundle id it must carry."""
    body = dict((k, v) for k, v in manifest.items() if k != 'bundle_id')
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(',', ':'), ensure_ascii=True)
                          .encode('ascii')).hexdigest()


def checked_manifest(bundle, bundle_id):
    """The manifest of ``bundle`` (its first member) once its content is known to hash to ``bundle_id``; its engine
    entry is then what the id names. InstallError otherwise."""
    try:
        with tarfile.open(bundle, mode='r:') as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile() or first.size > MANIFEST_MAX:
                raise InstallError('%s: not a blkfleet bundle (no manifest.json first)' % bundle)
            data = tar.extractfile(first).read(first.size)
    except (tarfile.TarError, ValueError, EOFError, OSError) as e:
        raise InstallError('%s: not a readable bundle (%s)' % (bundle, e)) from None
    try:
        manifest = json.loads(data.decode('utf-8'))
        found = manifest_id(manifest) if isinstance(manifest, dict) else None
    except (ValueError, RecursionError):
        found = None
    if found is None:
        raise InstallError('%s: not a blkfleet bundle (manifest.json is not a JSON object)' % bundle)
    if found != bundle_id or manifest.get('bundle_id') != bundle_id:
        raise InstallError('%s holds bundle %s, not %s' % (bundle, found, bundle_id))
    engine = manifest.get('engine')
    if not (isinstance(engine, dict) and isinstance(engine.get('path'), str) and isinstance(engine.get('size'), int)
            and SHA256_RE.match(str(engine.get('sha256')))):
        raise InstallError('%s: its manifest names no engine (path, size, sha256)' % bundle)
    return manifest

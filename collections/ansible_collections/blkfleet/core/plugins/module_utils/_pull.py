# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A host downloads a bundle itself: Ansible's URL client, a private temporary directory, retries. Private to
blkfleet.core.

Why Ansible's client (``module_utils.urls``, the one get_url uses) rather than the engine's: the engine travels inside
the bundle, so a host that pulls one has no engine it could trust before the bundle is there and checked. Ansible's
client comes with every module and brings what a fleet's network needs: the host's proxies (``https_proxy``,
``no_proxy``, or none with ``use_proxy: false``), certificate checks (``validate_certs``, ``ca_path``), redirects
and a timeout for the connection and each read. get_url's other two pieces are here too: the file's SHA-256 is
checked before anything else reads it (when the controller knows it), and failures that may pass (no connection, a
cut, a timeout, HTTP 408, 429, 5xx) are retried ``retries`` times, ``retry_delay`` seconds apart, each attempt from
the first byte: a partial download is never used, nor kept.

Messages give URLs without user, query and fragment (a presigned URL's signature is a credential).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tempfile
import time
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit, urlunsplit

from ansible.module_utils.urls import ConnectionError as UrlConnectionError
from ansible.module_utils.urls import SSLValidationError, open_url

CHUNK = 1 << 20
# The engine's bounds of what a bundle holds: 64 GiB of replay files, a 64 MiB engine, a 16 MiB manifest; plus room
# for the tar headers of up to 16384 files.
MAX_BUNDLE = (64 << 30) + (64 << 20) + (16 << 20) + (64 << 20)
RETRYABLE_STATUS = frozenset((408, 429, 500, 502, 503, 504))
BUNDLE_NAME_RE = re.compile(r'^([0-9a-f]{64})\.tar$')
STALE_AFTER = 3600  # seconds without a write after which a pull's work directory is a killed pull's


class PullError(Exception):
    """A download that failed: one line for the task's message, and how far it got."""

    def __init__(self, message, attempts=0, status=None):
        super().__init__(message)
        self.attempts = attempts
        self.status = status


class _Retry(Exception):
    """A failure of one attempt that the next one may not meet."""


# The engine's ``bundle publish`` redacts URLs the same way; this copy runs where no engine is yet.
def redact(url):
    """``url`` without user information, query and fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition('@')[2], parts.path, '', ''))


def check_url(url):
    parts = urlsplit(url)
    if parts.scheme.lower() not in ('http', 'https') or not parts.netloc.rpartition('@')[2]:
        raise PullError('%s: not an http:// or https:// URL with a host' % redact(url))
    return url


def bundle_id_of(url):
    """The bundle id a published bundle's URL names (``.../<bundle_id>.tar``), or None."""
    match = BUNDLE_NAME_RE.match(urlsplit(url).path.rpartition('/')[2])
    return match.group(1) if match else None


def is_base(url):
    """Whether ``url`` is a base (its path ends in ``/``) under which bundles are ``<bundle_id>.tar``."""
    return urlsplit(url).path.endswith('/')


def under(base, bundle_id):
    """The URL of bundle ``bundle_id`` under the base URL ``base`` (its query kept)."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path + bundle_id + '.tar'))


def download(url, directory, checksum=None, timeout=30, retries=3, retry_delay=2.0, validate_certs=True,
             use_proxy=True, ca_path=None, headers=None):
    """Download ``url`` into a new file in ``directory`` (a private temporary directory); returns
    ``(path, size, sha256, attempts)``. ``checksum``: the SHA-256 the file must have. Raises PullError (nothing left
    in ``directory`` of this download)."""
    shown = redact(url)
    first = None
    attempt = 0
    while True:
        attempt += 1
        path = os.path.join(directory, 'bundle.tar')
        try:
            size, sha256 = _once(url, shown, path, timeout, validate_certs, use_proxy, ca_path, headers)
            break
        except _Retry as e:
            _remove(path)
            first = first or str(e)
            if attempt > retries:
                earlier = '; attempt 1: %s' % first if attempt > 1 and first != str(e) else ''
                raise PullError('%s: download failed after %d attempt%s: %s%s' % (
                    shown, attempt, 's' if attempt > 1 else '', e, earlier), attempts=attempt) from None
            time.sleep(retry_delay)
        except PullError as e:
            _remove(path)
            e.attempts = attempt
            raise
    if checksum and sha256 != checksum:
        _remove(path)
        raise PullError('%s: the download has sha256 %s, not %s (the published file differs): refused' % (
            shown, sha256, checksum), attempts=attempt)
    return path, size, sha256, attempt


def _once(url, shown, path, timeout, validate_certs, use_proxy, ca_path, headers):
    try:
        response = open_url(url, headers=headers or None, timeout=timeout, validate_certs=validate_certs,
                            use_proxy=use_proxy, ca_path=ca_path, follow_redirects='safe', decompress=False)
    except HTTPError as e:
        e.close()
        problem = 'HTTP %s %s' % (e.code, e.reason)
        if e.code in RETRYABLE_STATUS:
            raise _Retry(problem) from None
        raise PullError('%s: %s' % (shown, problem), status=e.code) from None
    except SSLValidationError as e:
        raise PullError('%s: %s' % (shown, _one_line(e))) from None
    except (URLError, UrlConnectionError, OSError, http.client.HTTPException) as e:
        raise _Retry(_reason(e)) from None
    try:
        length = response.headers.get('Content-Length')
        length = int(length) if length and length.isdigit() else None
        if length is not None:
            _check_room(shown, path, length)
        digest = hashlib.sha256()
        got = 0
        read = getattr(response, 'read1', response.read)  # what has arrived, up to CHUNK: the file grows as it comes
        with open(path, 'xb') as out:
            while True:
                try:
                    block = read(CHUNK)
                except (OSError, http.client.HTTPException) as e:  # a timeout, a reset, a chunk cut short
                    raise _Retry('cut off after %d%s bytes (%s)' % (got, _of(length), _reason(e))) from None
                if not block:
                    break
                got += len(block)
                if got > MAX_BUNDLE:
                    raise PullError('%s: more than %d bytes: not a bundle' % (shown, MAX_BUNDLE))
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if length is not None and got != length:
            raise _Retry('cut off after %d%s bytes' % (got, _of(length)))
        return got, digest.hexdigest()
    finally:
        response.close()


def _of(length):
    return '' if length is None else ' of %d' % length


def _reason(e):
    reason = getattr(e, 'reason', None) or e
    text = getattr(reason, 'strerror', None) or str(reason) or type(reason).__name__
    return _one_line(text)


def _one_line(e):
    return ' '.join(str(e).split())


def _check_room(shown, path, length):
    if length > MAX_BUNDLE:
        raise PullError('%s: %d bytes announced, more than a bundle may hold (%d)' % (shown, length, MAX_BUNDLE))
    st = os.statvfs(os.path.dirname(path))
    free = st.f_bavail * st.f_frsize
    if length > free:
        raise PullError('%s: %d bytes to download, %s has %d free' % (shown, length, os.path.dirname(path), free))


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def workdir(dest, bundle_id):
    """A new private directory in ``dest`` for one pull (``.pull-<id>-<random>``), made with ``dest`` if needed."""
    os.makedirs(dest, mode=0o755, exist_ok=True)
    return tempfile.mkdtemp(prefix='.pull-%s-' % bundle_id[:16], dir=dest)


def remove_workdir(path):
    shutil.rmtree(path, ignore_errors=True)


def remove_stale(dest, idle=STALE_AFTER):
    """Remove the work directories of pulls that were killed (nothing written in them for ``idle`` seconds); a
    pull that fails on its own removes its directory itself."""
    try:
        entries = [e for e in os.listdir(dest) if e.startswith('.pull-')]
    except OSError:
        return
    now = time.time()
    for entry in entries:
        path = os.path.join(dest, entry)
        try:
            inside = [os.path.join(path, f) for f in os.listdir(path)]
            newest = max([os.lstat(path).st_mtime] + [os.lstat(f).st_mtime for f in inside])
        except OSError:
            continue
        if now - newest > idle:
            remove_workdir(path)

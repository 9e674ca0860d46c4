# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Locate and run the blkfleet engine on a target. Private to blkfleet.core: may change without notice.

The engine is never shipped inside the module payload (Ansiballz's temporary directory disappears when the
module exits). Modules run it from a stable place, in this order:

1. an explicit path: an ``engine.pyz`` zipapp, or a directory that holds one;
2. a zipapp installed under ``ENGINE_ROOT/<sha256>/engine.pyz`` (by the replay_bundle module or a role), chosen
   by its SHA-256 when given, else the most recently installed one;
3. an installed ``blkfleet`` console script;
4. ``python -m blkfleet`` with the module's interpreter, when the package is importable.

The engine prints its JSON on stdout (``--json -``) and, on failure, one line ``blkfleet: <message>`` on stderr
with exit code 2; :func:`run_engine` turns that line into ``fail_json(msg=...)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys

ENGINE_ROOT = '/var/lib/blkfleet/engine'
ENGINE_NAME = 'engine.pyz'
SHA256_RE = re.compile(r'^[0-9a-f]{64}$')


class EngineNotFound(Exception):
    pass


def sha256_file(path, chunk=1 << 20):
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def installed_engine_path(sha256, root=ENGINE_ROOT):
    """Stable install path of an engine zipapp with this SHA-256."""
    if not SHA256_RE.match(sha256 or ''):
        raise ValueError('not a SHA-256 hex digest: %r' % (sha256,))
    return os.path.join(root, sha256, ENGINE_NAME)


def installed_engines(root=ENGINE_ROOT):
    """Installed engine zipapps as ``(mtime, sha256, path)``, newest first."""
    found = []
    try:
        entries = os.listdir(root)
    except OSError:
        return found
    for entry in entries:
        path = os.path.join(root, entry, ENGINE_NAME)
        if SHA256_RE.match(entry) and os.path.isfile(path):
            found.append((os.stat(path).st_mtime, entry, path))
    found.sort(reverse=True)
    return found


def engine_command(engine=None, sha256=None, root=ENGINE_ROOT, python=None, which=None, importable=None):
    """The argv prefix that runs the engine (see the module docstring for the search order).

    ``which`` finds a program on PATH (a module passes ``module.get_bin_path``); ``importable`` tells whether
    ``python -m blkfleet`` would work. Raises :class:`EngineNotFound` with a message naming what was tried.
    """
    python = python or sys.executable
    if engine:
        path = os.path.join(engine, ENGINE_NAME) if os.path.isdir(engine) else engine
        if not os.path.isfile(path):
            raise EngineNotFound('blkfleet engine not found at %s' % path)
        return [python, path]
    if sha256:
        path = installed_engine_path(sha256, root)
        if not os.path.isfile(path):
            raise EngineNotFound('blkfleet engine %s is not installed (no %s)' % (sha256, path))
        return [python, path]
    installed = installed_engines(root)
    if installed:
        return [python, installed[0][2]]
    script = which('blkfleet') if which else None
    if script:
        return [script]
    if importable is None:
        importable = _importable(python)
    if importable:
        return [python, '-m', 'blkfleet']
    raise EngineNotFound('blkfleet engine not found: no %s/<sha256>/%s, no blkfleet program on PATH and no '
                         'blkfleet package for %s' % (root, ENGINE_NAME, python))


def _importable(python):
    if python == sys.executable:
        try:
            import importlib.util
            return importlib.util.find_spec('blkfleet') is not None
        except (ImportError, ValueError):
            return False
    return False


def engine_error(stderr, rc):
    """The engine's one-line error (``blkfleet: msg`` -> ``msg``), else the last line of stderr."""
    lines = [line.strip() for line in (stderr or '').splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith('blkfleet: '):
            return line[len('blkfleet: '):]
    if lines:
        return lines[-1]
    return 'blkfleet engine failed with exit code %d' % rc


def run_engine(module, command, args, parse_json=True, check_rc=True, environ_update=None, cwd=None):
    """Run ``command + args`` and return ``(rc, result, stdout, stderr)``.

    ``result`` is the parsed JSON of stdout when ``parse_json``, else None. A non-zero exit fails the module
    with the engine's one-line message when ``check_rc``; unparsable JSON always fails it.
    """
    argv = list(command) + [str(a) for a in args]
    rc, out, err = module.run_command(argv, environ_update=environ_update, cwd=cwd)
    if rc != 0 and check_rc:
        module.fail_json(msg=engine_error(err, rc), rc=rc, cmd=argv, stdout=out, stderr=err)
    result = None
    if parse_json and rc == 0:
        try:
            result = json.loads(out)
        except ValueError as e:
            module.fail_json(msg='blkfleet engine printed no valid JSON: %s' % e, rc=rc, cmd=argv, stdout=out,
                             stderr=err)
    return rc, result, out, err


def find_engine(module, engine=None, sha256=None, root=ENGINE_ROOT):
    """:func:`engine_command` for a module: fails the module when no engine is found."""
    try:
        return engine_command(engine=engine, sha256=sha256, root=root, which=module.get_bin_path)
    except (EngineNotFound, ValueError) as e:
        module.fail_json(msg=str(e))

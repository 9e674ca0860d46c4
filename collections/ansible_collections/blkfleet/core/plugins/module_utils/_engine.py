# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The target-side runner: find the blkfleet engine on a host and run it through its protocol. Private to
blkfleet.core: may change without notice.

Every module that needs the engine calls it here, and only here. The engine is never shipped inside the module
payload (Ansiballz's temporary directory disappears when the module exits). Modules run it from a stable place,
in this order:

1. an explicit path: an ``engine.pyz`` zipapp, or a directory that holds one;
2. a zipapp installed under ``ENGINE_ROOT/<sha256>/engine.pyz`` (by the engine or replay_bundle module), chosen
   by its SHA-256 when given, else the most recently installed one;
3. an installed ``blkfleet`` console script;
4. the package run as ``python -m blkfleet`` would (without the current directory on ``sys.path``) with the
   module's interpreter, when it is importable.

An engine zipapp runs as root, so it is run only from a place nobody else can change: the file and every directory
above it (links followed) owned by root or the module's user and not writable by others (a sticky directory such
as /tmp counts above it). This check runs before any engine does, so it is the collection's own, the same rule as
the engine's trusted directories (blkfleet.files).

Each command gets ``--json -`` and answers with one protocol document (module_utils/_protocol.py); a failure
fails the module with the engine's one-line message and its error object (``error.code``), unless the caller
handles that error itself (:func:`call`).
"""

from __future__ import annotations

import os
import re
import stat
import sys

from ansible_collections.blkfleet.core.plugins.module_utils._protocol import EngineError, document, with_json

ENGINE_ROOT = '/var/lib/blkfleet/engine'
ENGINE_NAME = 'engine.pyz'
SHA256_RE = re.compile(r'^[0-9a-f]{64}$')
# ``python -m blkfleet`` would import from the current directory first: a blkfleet/ another user put there would run
# as root. This runs the package as -m does, without that directory on sys.path.
RUN_PACKAGE = ("import runpy, sys; sys.path[:1] == [''] and sys.path.pop(0); "
               "runpy.run_module('blkfleet', run_name='__main__', alter_sys=True)")


class EngineNotFound(Exception):
    pass


def untrusted(path, sticky_ok=False):
    """Why the engine file ``path`` must not run as root (another user could change it or a directory above it),
    or None. ``sticky_ok``: ``path`` may itself be a sticky directory such as /tmp (to make a directory in)."""
    here = path
    while True:
        try:
            st = os.lstat(here)
        except OSError as e:
            return 'cannot inspect %s: %s' % (here, e.strerror)
        if st.st_uid not in (0, os.geteuid()):
            return '%s is owned by uid %d' % (here, st.st_uid)
        sticky = (here != path or sticky_ok) and st.st_mode & stat.S_ISVTX
        if (st.st_mode & stat.S_IWOTH or st.st_mode & stat.S_IWGRP and st.st_gid not in (0, os.getegid())) \
                and not sticky:
            return 'others can write to %s (mode %04o)' % (here, stat.S_IMODE(st.st_mode))
        if here == '/':
            return None
        here = os.path.dirname(here)


def _runnable(python, path):
    """``[python, path]`` with ``path`` resolved, once nobody else can change it."""
    path = os.path.realpath(path)
    why = untrusted(path)
    if why:
        raise EngineNotFound('refusing to run the blkfleet engine %s as root: %s (install it under a directory only '
                             'root can write to, such as %s)' % (path, why, ENGINE_ROOT))
    return [python, path]


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
        return _runnable(python, path)
    if sha256:
        if not SHA256_RE.match(sha256):
            raise EngineNotFound('not a SHA-256 hex digest: %r' % (sha256,))
        path = os.path.join(root, sha256, ENGINE_NAME)
        if not os.path.isfile(path):
            raise EngineNotFound('blkfleet engine %s is not installed (no %s)' % (sha256, path))
        return _runnable(python, path)
    installed = installed_engines(root)
    if installed:
        return _runnable(python, installed[0][2])
    script = which('blkfleet') if which else None
    if script:
        return [script]
    if importable is None:
        importable = _importable(python)
    if importable:
        return [python, '-c', RUN_PACKAGE]
    raise EngineNotFound('blkfleet engine not found: no %s/<sha256>/%s, no blkfleet program on PATH and no '
                         'blkfleet package for %s (install it with blkfleet.core.engine)' % (root, ENGINE_NAME, python))


def _importable(python):
    if python == sys.executable:
        try:
            import importlib.util
            return importlib.util.find_spec('blkfleet') is not None
        except (ImportError, ValueError):
            return False
    return False


def find_engine(module, engine=None, sha256=None, root=ENGINE_ROOT):
    """:func:`engine_command` for a module: fails the module when no engine is found."""
    try:
        return engine_command(engine=engine, sha256=sha256, root=root, which=module.get_bin_path)
    except EngineNotFound as e:
        module.fail_json(msg=str(e))


def call(module, command, args, cwd=None, stderr=None):
    """Run ``command + args`` with ``--json -``; its protocol document. Raises EngineError when it failed.
    ``stderr``: a list that gets the engine's stderr lines (its human summary)."""
    argv = list(command) + with_json(args)
    rc, out, err = module.run_command(argv, cwd=cwd)
    if stderr is not None:
        stderr.extend(line for line in (err or '').splitlines() if line.strip())
    return document(rc, out, err, argv)


def run(module, command, args, cwd=None, **extra):
    """:func:`call`, failing the module with the engine's message (and ``extra``) when the command failed."""
    try:
        return call(module, command, args, cwd=cwd)
    except EngineError as e:
        fail(module, e, **extra)


def fail(module, error, **extra):
    """Fail the module with an EngineError: its message, its error object, rc, command and stderr."""
    result = error.details()
    result.update(extra)
    module.fail_json(msg=error.message, **result)

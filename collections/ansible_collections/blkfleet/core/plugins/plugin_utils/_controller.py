# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run the blkfleet engine CLI on the controller, for the collection's action plugins. Private to blkfleet.core.

The collection never copies the engine: action plugins run ``blkfleet`` commands (record, bundle create,
bundle info, bundle engine) in a child process, found in this order:

1. ``BLKFLEET_ENGINE_PYTHON`` (environment): a Python that can import ``blkfleet``;
2. the controller's own Python (``ansible-playbook``'s), when it can import ``blkfleet`` (the project's venv);
3. a checkout: ``<repository>/engine/blkfleet`` next to this collection (``collections/ansible_collections/...``),
   run with the controller's Python and ``PYTHONPATH`` set to it;
4. a ``blkfleet`` program on ``PATH``.

Only the standard library is imported here, so ansible-test's import test passes without the engine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

from ansible.errors import AnsibleError
from ansible_collections.blkfleet.core.plugins.module_utils._engine import sha256_file

# plugin_utils/_controller.py -> core -> blkfleet -> ansible_collections -> collections -> repository
_CHECKOUT_ENGINE = os.path.abspath(os.path.join(os.path.dirname(__file__), *(['..'] * 6), 'engine'))


class EngineFailed(AnsibleError):
    """An engine command exited non-zero; ``message`` is its one-line error."""

    def __init__(self, message, argv, rc, stdout, stderr):
        super().__init__(message)
        self.short = message
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr


def engine_command(environ=None):
    """``(argv prefix, extra environment)`` that runs the blkfleet CLI on the controller."""
    environ = os.environ if environ is None else environ
    python = environ.get('BLKFLEET_ENGINE_PYTHON')
    if python:
        return [python, '-m', 'blkfleet'], {}
    if importlib.util.find_spec('blkfleet') is not None:
        return [sys.executable, '-m', 'blkfleet'], {}
    if os.path.isfile(os.path.join(_CHECKOUT_ENGINE, 'blkfleet', 'cli.py')):
        path = environ.get('PYTHONPATH')
        return [sys.executable, '-m', 'blkfleet'], {
            'PYTHONPATH': _CHECKOUT_ENGINE + (os.pathsep + path if path else '')}
    program = shutil.which('blkfleet')
    if program:
        return [program], {}
    raise AnsibleError('the blkfleet engine is not available on the controller: install the blkfleet package '
                       "(pip install -e . from the repository) into ansible's Python, put a blkfleet program on "
                       'PATH, or set BLKFLEET_ENGINE_PYTHON to a Python that can import blkfleet')


def one_line_error(stderr, rc):
    lines = [line.strip() for line in (stderr or '').splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith('blkfleet: '):
            return line[len('blkfleet: '):]
    return lines[-1] if lines else 'blkfleet engine failed with exit code %d' % rc


def run_engine(args, timeout=None):
    """Run ``blkfleet ARGS`` on the controller; returns stdout. Raises :class:`EngineFailed` on a non-zero exit."""
    prefix, extra = engine_command()
    argv = prefix + [str(a) for a in args]
    env = dict(os.environ)
    env.update(extra)
    try:
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, check=False)
    except OSError as e:
        raise AnsibleError('cannot run the blkfleet engine (%s): %s' % (' '.join(argv), e))
    out = proc.stdout.decode('utf-8', 'replace')
    err = proc.stderr.decode('utf-8', 'replace')
    if proc.returncode != 0:
        raise EngineFailed(one_line_error(err, proc.returncode), argv, proc.returncode, out, err)
    return out


def run_engine_json(args, timeout=None):
    out = run_engine(args, timeout=timeout)
    try:
        return json.loads(out)
    except ValueError as e:
        raise AnsibleError('the blkfleet engine printed no valid JSON for %s: %s' % (' '.join(args), e))


def same_content(a, b):
    """Whether files ``a`` and ``b`` both exist and hold the same bytes."""
    try:
        if os.path.getsize(a) != os.path.getsize(b):
            return False
    except OSError:
        return False
    return sha256_file(a) == sha256_file(b)


def failure_result(exc):
    """A task result for an :class:`EngineFailed` (the one-line message, plus the command's details)."""
    return {'failed': True, 'msg': exc.short, 'rc': exc.rc, 'cmd': exc.argv, 'stdout': exc.stdout,
            'stderr': exc.stderr}

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The controller-side runner: run the blkfleet engine on the controller through its protocol, for the collection's
action plugins. Private to blkfleet.core.

The collection never copies the engine: action plugins run ``blkfleet`` commands (record, bundle, results,
regress, report) in a child process, each with ``--json -`` (module_utils/_protocol.py), the engine found in this
order:

1. ``BLKFLEET_ENGINE_PYTHON`` (environment): a Python that can import ``blkfleet``;
2. the controller's own Python (``ansible-playbook``'s), when it can import ``blkfleet`` (the project's venv);
3. a checkout: ``<repository>/engine/blkfleet`` next to this collection (``collections/ansible_collections/...``),
   run with the controller's Python and ``PYTHONPATH`` set to it;
4. a ``blkfleet`` program on ``PATH``.

Only the standard library is imported here, so ansible-test's import test passes without the engine.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

from ansible.errors import AnsibleError

from ansible_collections.blkfleet.core.plugins.module_utils._engine import RUN_PACKAGE
from ansible_collections.blkfleet.core.plugins.module_utils._install import describe
from ansible_collections.blkfleet.core.plugins.module_utils._protocol import EngineError, document, with_json

# plugin_utils/_controller.py -> core -> blkfleet -> ansible_collections -> collections -> repository
_CHECKOUT_ENGINE = os.path.abspath(os.path.join(os.path.dirname(__file__), *(['..'] * 6), 'engine'))


class EngineFailed(AnsibleError):
    """An engine command failed; ``error`` is the protocol's EngineError (code, message, result, rc, ...)."""

    def __init__(self, error):
        super().__init__(error.message)
        self.error = error
        self.code = error.code
        self.short = error.message


def engine_command(environ=None):
    """``(argv prefix, extra environment)`` that runs the blkfleet CLI on the controller."""
    environ = os.environ if environ is None else environ
    python = environ.get('BLKFLEET_ENGINE_PYTHON')
    if python:
        return [python, '-c', RUN_PACKAGE], {}
    if importlib.util.find_spec('blkfleet') is not None:
        return [sys.executable, '-c', RUN_PACKAGE], {}
    if os.path.isfile(os.path.join(_CHECKOUT_ENGINE, 'blkfleet', 'cli.py')):
        path = environ.get('PYTHONPATH')
        return [sys.executable, '-c', RUN_PACKAGE], {
            'PYTHONPATH': _CHECKOUT_ENGINE + (os.pathsep + path if path else '')}
    program = shutil.which('blkfleet')
    if program:
        return [program], {}
    raise AnsibleError('the Python package blkfleet is missing on the controller (%s cannot import it, and there is '
                       'no blkfleet program on PATH): pip install blkfleet into the Python that runs Ansible, or '
                       'set BLKFLEET_ENGINE_PYTHON to a Python that can import blkfleet' % sys.executable)


def run(args, timeout=None):
    """Run ``blkfleet ARGS --json -`` on the controller; its protocol document. Raises :class:`EngineFailed` when
    the command failed (its error code in ``code``)."""
    prefix, extra = engine_command()
    argv = prefix + with_json(args)
    env = dict(os.environ)
    env.update(extra)
    try:
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AnsibleError('cannot run the blkfleet engine (%s): %s' % (' '.join(argv), e)) from None
    try:
        return document(proc.returncode, proc.stdout.decode('utf-8', 'replace'),
                        proc.stderr.decode('utf-8', 'replace'), argv)
    except EngineError as e:
        raise EngineFailed(e) from None


def work_dir(path, check=False):
    """``blkfleet workdir``: make the controller directory ``path`` (or, with ``check``, only judge it); its
    document ``{path, real_path, created, exists}``. Raises :class:`EngineFailed` when others could change it."""
    return run(['workdir'] + (['--check'] if check else []) + ['--', path])['result']


def store_option(db):
    """``--db DB`` for the results commands, or nothing: then the engine takes ``$BLKFLEET_DB`` of the controller,
    else ``results/blkfleet.sqlite`` under the current directory."""
    return ['--db', db] if db else []


def same_content(a, b):
    """Whether files ``a`` and ``b`` both exist and hold the same bytes."""
    try:
        return os.path.getsize(a) == os.path.getsize(b) and describe(a) == describe(b)
    except OSError:
        return False


def failure_result(exc):
    """A task result for an :class:`EngineFailed` (the one-line message, plus the command's details)."""
    return dict(exc.error.details(), failed=True, msg=exc.short)

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The blkfleet engine's machine protocol, read. Private to blkfleet.core: may change without notice.

Every engine command the collection runs gets ``--json -`` and prints exactly one document on stdout (docs/protocol.md
of blkfleet): ``{"protocol": 1, "command", "engine_version", "exit_code", "result", "error"}``, ``error`` being
``{"code", "message", ...}`` with a code of a documented, stable set (``tracer_busy``, ``not_found``, ...). Both
runners, the target's (module_utils/_engine.py) and the controller's (plugin_utils/_controller.py), read it here;
nothing in the collection reads the engine's human text. Standard library only.
"""

from __future__ import annotations

import json

VERSION = 1
KEYS = ('protocol', 'command', 'engine_version', 'exit_code', 'result', 'error')


class EngineError(Exception):
    """An engine command that failed: ``code`` (the protocol's error code, or ``protocol_error`` when the engine
    printed no protocol document), ``message`` (one line), ``document`` (the whole document, or None), ``result``
    (what the command still reported, e.g. partial results), ``rc``, ``argv``, ``stdout``, ``stderr``."""

    def __init__(self, code, message, document=None, rc=None, argv=None, stdout='', stderr=''):
        super().__init__(message)
        self.code = code
        self.message = message
        self.document = document
        self.result = (document or {}).get('result')
        self.rc = rc
        self.argv = argv
        self.stdout = stdout
        self.stderr = stderr

    def details(self):
        """What a failed task returns beside ``msg``."""
        return {'error': (self.document or {}).get('error') or {'code': self.code, 'message': self.message},
                'rc': self.rc, 'cmd': self.argv, 'stderr': self.stderr}


def with_json(args):
    """``args`` with ``--json -`` before a ``--`` (after it, it would be a positional argument)."""
    args = [str(a) for a in args]
    at = args.index('--') if '--' in args else len(args)
    return args[:at] + ['--json', '-'] + args[at:]


def _last_line(text):
    lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
    return lines[-1] if lines else ''


def document(rc, stdout, stderr='', argv=None):
    """The protocol document of an engine run; EngineError when it failed (its error) or printed none."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not all(key in doc for key in KEYS):
        why = _last_line(stderr) or 'exit code %s' % rc
        raise EngineError('protocol_error', 'the blkfleet engine printed no protocol document (an engine older than '
                          'this collection?): %s' % why, rc=rc, argv=argv, stdout=stdout, stderr=stderr)
    if doc['protocol'] != VERSION:
        raise EngineError('protocol_error', 'the blkfleet engine speaks protocol %r; this collection reads version %d'
                          % (doc['protocol'], VERSION), doc, rc, argv, stdout, stderr)
    error = doc['error']
    if doc['exit_code'] != rc or (rc == 0) != (error is None):
        raise EngineError('protocol_error', 'the blkfleet engine exited %s with a document saying exit code %r, '
                          'error %r' % (rc, doc['exit_code'], error), doc, rc, argv, stdout, stderr)
    if error is not None:
        if not isinstance(error, dict) or not isinstance(error.get('code'), str):
            raise EngineError('protocol_error', 'the blkfleet engine reported an error without a code: %r' % (error,),
                              doc, rc, argv, stdout, stderr)
        raise EngineError(error['code'], str(error.get('message') or error['code']), doc, rc, argv, stdout, stderr)
    return doc

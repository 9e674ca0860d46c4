# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How the runners read the engine's protocol: real documents of the checkout's engine, and the ways an engine can
fail to speak it (an engine older than the protocol, another version, a document that contradicts its exit code)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.blkfleet.core.plugins.module_utils import _protocol
from ansible_collections.blkfleet.core.tests.unit.engine_checkout import blkfleet, check_document


def engine_document(*args):
    proc = blkfleet(*_protocol.with_json(args))
    return proc, check_document(json.loads(proc.stdout))


def test_with_json_goes_before_the_positional_arguments():
    assert _protocol.with_json(['job', 'status', '--', '-x']) == ['job', 'status', '--json', '-', '--', '-x']
    assert _protocol.with_json(['bundle', 'info', 3]) == ['bundle', 'info', '3', '--json', '-']


def test_a_real_answer_and_a_real_error():
    proc, doc = engine_document('job', 'status', '--', 'unit-no-such-run')
    assert _protocol.document(proc.returncode, proc.stdout, proc.stderr)['result']['state'] == 'none'
    proc, doc = engine_document('bundle', 'info', '--', '/nonexistent/b.tar')
    with pytest.raises(_protocol.EngineError) as exc:
        _protocol.document(proc.returncode, proc.stdout, proc.stderr, ['argv'])
    error = exc.value
    assert error.code == 'not_found' and error.rc == 2 and error.argv == ['argv']
    assert error.message == '/nonexistent/b.tar: cannot open bundle: No such file or directory'
    assert error.details()['error'] == doc['error'] and error.details()['error']['errno'] == 'ENOENT'


def test_what_is_not_the_protocol():
    with pytest.raises(_protocol.EngineError, match='no protocol document.*unrecognized arguments') as exc:
        _protocol.document(2, '', 'blkfleet: blkfleet job status: error: unrecognized arguments: --json -\n')
    assert exc.value.code == 'protocol_error'
    with pytest.raises(_protocol.EngineError, match='no protocol document'):
        _protocol.document(0, json.dumps({'state': 'none'}), '')  # an engine older than the protocol: the bare job
    doc = {'protocol': 2, 'command': 'x', 'engine_version': '9', 'exit_code': 0, 'result': {}, 'error': None}
    with pytest.raises(_protocol.EngineError, match='speaks protocol 2'):
        _protocol.document(0, json.dumps(doc), '')
    doc.update(protocol=1, exit_code=3)
    with pytest.raises(_protocol.EngineError, match='exited 0 with a document saying exit code 3'):
        _protocol.document(0, json.dumps(doc), '')
    doc.update(exit_code=2, error='bad')
    with pytest.raises(_protocol.EngineError, match='without a code'):
        _protocol.document(2, json.dumps(doc), '')

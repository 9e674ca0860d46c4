# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The blkfleet checkout this collection lives in: its engine, run as ``python -m blkfleet``, and its schemas, against
which the unit tests check every protocol document the runners read."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# tests/unit -> core -> blkfleet -> ansible_collections -> collections -> repository
REPO = os.path.abspath(os.path.join(HERE, *(['..'] * 6)))
ENGINE = os.path.join(REPO, 'engine')
SCHEMAS = os.path.join(ENGINE, 'blkfleet', 'schemas')
RANDMIX = os.path.join(REPO, 'tests', 'data', 'randmix')


def checkout():
    if not os.path.isfile(os.path.join(ENGINE, 'blkfleet', 'cli.py')):
        pytest.skip('needs the blkfleet checkout around this collection (engine/blkfleet)')


def blkfleet(*args):
    """``python -m blkfleet ARGS`` of the checkout; the CompletedProcess."""
    checkout()
    return subprocess.run([sys.executable, '-m', 'blkfleet'] + [str(a) for a in args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ENGINE), check=False, timeout=300)


def schema(name):
    import jsonschema
    with open(os.path.join(SCHEMAS, name)) as f:
        doc = json.load(f)
    jsonschema.Draft202012Validator.check_schema(doc)
    return jsonschema.Draft202012Validator(doc)


def check_document(doc):
    """A protocol document against protocol.schema.json, its result against its command's schema; returns it."""
    checkout()
    schema('protocol.schema.json').validate(doc)
    with open(os.path.join(SCHEMAS, 'commands.json')) as f:
        commands = json.load(f)
    if doc['result'] is not None and doc['command'] in commands:
        schema(commands[doc['command']]).validate(doc['result'])
    return doc

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Device names and device-map targets that become engine arguments. Private to blkfleet.core.

A recorded device name is a kernel name as blktrace writes it (``sda``, ``nvme0n1``, ``dm-0``, ``cciss_c0d0``):
it never starts with ``-`` (the engine would read it as an option), holds no ``/``, whitespace or control
character, and no part between ``_`` is ``.`` or ``..``. A device-map target is such a name (under ``/dev``) or
an absolute path written as one word of the engine's map file (no whitespace, no ``#``).
"""

from __future__ import annotations

import re

# The engine's rule (engine/blkfleet/names.py), repeated: modules run on hosts without the blkfleet package.
NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9._+@-]*')
MAX_NAME = 100
PATH_RE = re.compile(r'/[^\s#\x00-\x1f\x7f]*')
MAX_PATH = 4096


def name_problem(name):
    """Why ``name`` is not a safe device name, or None."""
    if not isinstance(name, str):
        return 'not a string'
    if not name or len(name) > MAX_NAME:
        return 'must be 1 to %d characters' % MAX_NAME
    if not NAME_RE.fullmatch(name):
        return "only letters, digits and '.', '_', '+', '@', '-' are allowed, not first"
    if any(part in ('.', '..') for part in name.split('_')):
        return "'.' and '..' are not allowed between '_'"
    return None


def target_problem(target):
    """Why ``target`` is not a device-map target (a safe name, or an absolute path of one word), or None."""
    if isinstance(target, str) and target.startswith('/'):
        if len(target) > MAX_PATH or not PATH_RE.fullmatch(target):
            return "an absolute path without whitespace, control characters or '#' is expected"
        if any(part in ('.', '..') for part in target.split('/')):
            return "'.' and '..' are not allowed in the path"
        return None
    return name_problem(target)


def device_problems(devices=(), device_map=None):
    """One message per bad recorded device name (in ``devices`` and the map's keys) and bad map target."""
    problems = []
    for name in devices or ():
        problem = name_problem(name)
        if problem:
            problems.append('invalid device name %r: %s' % (name, problem))
    for recorded, target in sorted((device_map or {}).items(), key=lambda item: str(item[0])):
        problem = name_problem(recorded)
        if problem:
            problems.append('device_map: invalid recorded device name %r: %s' % (recorded, problem))
        problem = target_problem(target)
        if problem:
            problems.append('device_map %s: invalid target %r: %s' % (recorded, target, problem))
    return problems

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.blkfleet.core.plugins.module_utils import _names


@pytest.mark.parametrize('name', ['sda', 'nvme0n1', 'dm-0', 'cciss_c0d0', 'loop1', 'md127', 'a' * 100])
def test_good_names(name):
    assert _names.name_problem(name) is None


@pytest.mark.parametrize('name', ['', '-W', '--force', 'a/b', '../sda', 'sda\n', 'sd a', 'x_.._y', '._x', 'a' * 101,
                                  'sda\x00', 5, None])
def test_bad_names(name):
    assert _names.name_problem(name)


@pytest.mark.parametrize('target, ok', [
    ('loop2', True), ('/dev/loop2', True), ('/dev/disk/by-id/nvme-x_1', True), ('-W', False), ('/dev/a b', False),
    ('/dev/a\nb', False), ('/dev/x#y', False), ('/dev/../etc/shadow', False), ('/dev/./x', False), ('', False)])
def test_targets(target, ok):
    assert (_names.target_problem(target) is None) is ok


def test_device_problems_lists_every_one():
    problems = _names.device_problems(['sda', '-W'], {'-x': '/dev/loop1', 'sdb': 'a b'})
    assert problems == ["invalid device name '-W': only letters, digits and '.', '_', '+', '@', '-' are allowed, "
                        "not first",
                        "device_map: invalid recorded device name '-x': only letters, digits and '.', '_', '+', "
                        "'@', '-' are allowed, not first",
                        "device_map sdb: invalid target 'a b': only letters, digits and '.', '_', '+', '@', '-' "
                        "are allowed, not first"]

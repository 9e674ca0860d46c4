# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest
import yaml

from ansible_collections.blkfleet.core.plugins.action import verified_fetch as action
from ansible_collections.blkfleet.core.plugins.modules import verified_fetch


def test_check_content(tmp_path):
    good, bad, deep = tmp_path / 'good', tmp_path / 'bad', tmp_path / 'deep'
    good.write_text('{"x": [1, 2]}')
    bad.write_bytes(b'{"x": [1, 2')
    deep.write_text('[' * 100000 + ']' * 100000)
    action.check_content(str(bad), 'none')
    action.check_content(str(good), 'json')
    for path in (bad, deep):
        with pytest.raises(action.AnsibleActionFail, match='not valid JSON'):
            action.check_content(str(path), 'json')


def test_action_spec_matches_documentation():
    options = yaml.safe_load(verified_fetch.DOCUMENTATION)['options']
    spec = action.ActionModule.ARGUMENT_SPEC
    assert sorted(spec) == sorted(options)
    for name, entry in spec.items():
        assert entry.get('type', 'str') == options[name].get('type', 'str'), name
        assert entry.get('default') == options[name].get('default'), name

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""replay_job with the real engine on jobs that do not exist (tests/protocol and tests/ansible run real jobs)."""

from __future__ import annotations

import pytest

from ansible_collections.blkfleet.core.plugins.modules import replay_job
from ansible_collections.blkfleet.core.tests.unit.engine_checkout import schema

RUN = 'unit-no-such-run'


@pytest.mark.parametrize('state, extra, key', [
    ('status', {}, None), ('renewed', {}, 'renewed'), ('stopped', {'stop_timeout': 5}, 'stopped')])
def test_actions_on_no_job(run, engine_pyz, state, extra, key):
    rc, res = run(replay_job.main, dict({'run_id': RUN, 'state': state, 'engine': engine_pyz}, **extra))
    assert rc == 0, res
    schema('job.schema.json').validate(res['job'])
    assert res['job']['state'] == 'none' and res['changed'] is False
    if key:
        assert res['job'][key] is False


def test_starting_no_job_fails(run, engine_pyz):
    rc, res = run(replay_job.main, {'run_id': RUN, 'state': 'started', 'start_at': '1', 'engine': engine_pyz})
    assert rc == 1 and 'not waiting for a start' in res['msg'] and res['job']['start_accepted'] is False
    rc, res = run(replay_job.main, {'run_id': RUN, 'state': 'started', 'engine': engine_pyz})
    assert rc == 1 and 'start_at' in res['msg']
    rc, res = run(replay_job.main, {'run_id': RUN, 'state': 'started', 'start_at': 'soon', 'engine': engine_pyz})
    assert rc == 1 and res['error']['code'] == 'invalid_input' and "invalid --at 'soon'" in res['msg']


def test_check_mode_only_reads(run, engine_pyz):
    for state in ('renewed', 'stopped', 'started'):
        rc, res = run(replay_job.main, {'run_id': RUN, 'state': state, 'start_at': '1', 'engine': engine_pyz},
                      check_mode=True)
        assert rc == 0 and res['job']['state'] == 'none' and res['changed'] is False
        assert 'renewed' not in res['job'] and 'stopped' not in res['job']


@pytest.mark.parametrize('run_id', ['-x', 'a/b', 'a b'])
def test_bad_run_id_is_the_engines_refusal(run, engine_pyz, run_id):
    rc, res = run(replay_job.main, {'run_id': run_id, 'engine': engine_pyz})
    assert rc == 1 and res['msg'].startswith('invalid run ID') and res['error']['code'] == 'invalid_input'


@pytest.mark.parametrize('state', ['waited', 'armed'])
def test_controller_states_need_the_action_plugin(run, engine_pyz, state):
    rc, res = run(replay_job.main, {'run_id': 'r', 'state': state, 'engine': engine_pyz})
    assert rc == 1 and 'blkfleet.core.replay_job' in res['msg']

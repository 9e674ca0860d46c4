# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.blkfleet.core.plugins.modules import replay_job


@pytest.mark.parametrize('state, argv, changed', [
    ('status', ['job', 'status', '--', 'r-1'], False),
    ('renewed', ['job', 'renew', '--', 'r-1'], False),
    ('stopped', ['job', 'stop', '--timeout', '5.0', '--', 'r-1'], True),
])
def test_actions(run, fake_engine, state, argv, changed):
    rc, res = run(replay_job.main, {'run_id': 'r-1', 'state': state, 'engine': fake_engine, 'stop_timeout': 5})
    assert rc == 0, res
    assert res['job']['argv'] == argv and res['changed'] is changed


def test_stopping_a_finished_job_changes_nothing(run, fake_engine, monkeypatch):
    monkeypatch.setenv('FAKE_JOB_STATE', 'finished')
    rc, res = run(replay_job.main, {'run_id': 'r-1', 'state': 'stopped', 'engine': fake_engine})
    assert rc == 0 and res['changed'] is False and res['job']['stopped'] is False


def test_check_mode_only_reads(run, fake_engine):
    for state in ('renewed', 'stopped'):
        rc, res = run(replay_job.main, {'run_id': 'r-1', 'state': state, 'engine': fake_engine}, check_mode=True)
        assert rc == 0 and res['job']['argv'] == ['job', 'status', '--', 'r-1']
        assert res['changed'] is (state == 'stopped')  # it would stop a running job


@pytest.mark.parametrize('run_id', ['-x', 'a/b', '', 'a b'])
def test_bad_run_id(run, fake_engine, run_id):
    rc, res = run(replay_job.main, {'run_id': run_id, 'engine': fake_engine})
    assert rc == 1 and res['msg'].startswith('invalid run_id')


def test_waited_needs_the_action_plugin(run, fake_engine):
    rc, res = run(replay_job.main, {'run_id': 'r', 'state': 'waited', 'engine': fake_engine})
    assert rc == 1 and 'blkfleet.core.replay_job' in res['msg']

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The wait loops of blkfleet.core.replay_job (state=waited, state=armed) against scripted hosts. The real things, a
link taken down mid-replay and a target that never arms on namespace hosts, are tests/ansible/test_replay_fleet.py
in the repository."""

from __future__ import annotations

import os
import threading
import time

import pytest
import yaml
from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure

from ansible_collections.blkfleet.core.plugins.action import replay_job as action
from ansible_collections.blkfleet.core.plugins.modules import replay_job


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def job(state, **extra):
    doc = {'run_id': 'r1', 'state': state, 'pid': 42, 'exit_code': None, 'results': None, 'stop_reason': None,
           'lease_s': 30.0, 'lease_age_s': 0.1}
    doc.update(extra)
    return {'changed': False, 'job': doc}


def args(**extra):
    base = {'run_id': 'r1', 'state': 'waited', 'timeout': 60.0, 'poll': 2.0, 'async_jid': None, 'engine': None,
            'engine_root': '/var/lib/blkfleet/engine', 'stop_timeout': 30.0}
    base.update(extra)
    return base


class Host:
    """Answers the module calls from a script of job states (the last repeats), records the calls."""

    def __init__(self, clock, states, replay=None, fail_from=None):
        self.clock = clock
        self.states = list(states)
        self.replay = replay
        self.fail_from = fail_from
        self.calls = []

    def call(self, a):
        self.calls.append(a['state'])
        if self.fail_from is not None and self.clock() >= self.fail_from:
            raise AnsibleConnectionFailure('ssh: connect to host 10.0.0.2 port 22: Connection timed out')
        if a['state'] == 'stopped':
            return job('finished', exit_code=130, stop_reason='SIGTERM', stopped=True, results='/r.json')
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return state if isinstance(state, dict) else job(state)

    def async_status(self, jid):
        self.calls.append('async_status')
        return self.replay or {'finished': 0}


def test_waits_until_the_job_finishes_renewing_its_lease():
    clock = Clock()
    replay = {'finished': 1, 'changed': True, 'results_path': '/r.json', 'replay_results': {'total': {'ios': 3}}}
    host = Host(clock, ['running', 'running', job('finished', exit_code=0, results='/r.json')], replay=replay)
    out = action.Waiter(host.call, host.async_status, args(async_jid='1.2'), clock, clock.sleep).run()
    assert out['outcome'] == 'ok' and out['reachable'] and out['replay'] is replay and not out['changed']
    assert host.calls == ['renewed', 'renewed', 'renewed', 'async_status'] and out['waited_s'] == 4.0


def test_replay_that_failed_before_its_job_started():
    clock = Clock()
    replay = {'finished': 1, 'failed': True, 'msg': "invalid device name '-W': ..."}
    host = Host(clock, ['none'], replay=replay)
    out = action.Waiter(host.call, host.async_status, args(async_jid='1.2'), clock, clock.sleep).run()
    assert out['outcome'] == 'failed' and out['reason'] == "invalid device name '-W': ..."
    assert out['waited_s'] == 0.0


@pytest.mark.parametrize('final, outcome, reason', [
    (job('finished', exit_code=3), 'failed', 'the replay ended with exit code 3'),
    (job('finished', exit_code=4, stop_reason='lease expired'), 'failed', 'exit code 4 (lease expired)'),
    (job('dead', problem='pid 42 with start time 7 is gone'), 'failed', 'the replay engine died: pid 42'),
])
def test_a_job_that_ended_badly_is_a_failure(final, outcome, reason):
    clock = Clock()
    host = Host(clock, ['running', final])
    out = action.Waiter(host.call, host.async_status, args(), clock, clock.sleep).run()
    assert out['outcome'] == outcome and reason in out['reason']


def test_running_at_the_bound_is_stopped():
    clock = Clock()
    host = Host(clock, ['running'])
    out = action.Waiter(host.call, host.async_status, args(timeout=10.0), clock, clock.sleep).run()
    assert out['outcome'] == 'timed_out' and out['changed'] is True and out['job']['state'] == 'finished'
    assert host.calls[-1] == 'stopped' and host.calls.count('renewed') == 5 and out['waited_s'] == 10.0


def test_host_that_stops_answering_is_unreachable_at_the_bound():
    clock = Clock()
    host = Host(clock, ['running'], fail_from=1004.0)
    out = action.Waiter(host.call, host.async_status, args(timeout=30.0), clock, clock.sleep).run()
    assert out['outcome'] == 'unreachable' and not out['reachable'] and 'stopped' not in host.calls
    assert out['reason'].startswith('no answer from the host for 28.0 s (bound 30.0 s): ssh: connect to host')
    assert out['job']['state'] == 'running' and out['waited_s'] == 30.0


def test_host_that_answers_again_is_waited_for():
    clock = Clock()
    host = Host(clock, ['running'] * 3 + [job('finished', exit_code=0)], fail_from=1002.0)
    host.fail_until = 1008.0
    call = host.call

    def flaky(a):
        if 1002.0 <= clock() < 1008.0:
            raise AnsibleConnectionFailure('connection reset')
        host.fail_from = None
        return call(a)
    out = action.Waiter(flaky, host.async_status, args(), clock, clock.sleep).run()
    assert out['outcome'] == 'ok' and out['reachable']


def test_a_hung_call_costs_no_more_than_the_bound():
    release = threading.Event()

    def hang(a):
        release.wait(30)
        return job('running')
    t0 = time.monotonic()
    out = action.Waiter(hang, None, args(timeout=0.5)).run()
    release.set()
    assert time.monotonic() - t0 < 0.5 + action.CALL_GRACE_S + 1
    assert out['outcome'] == 'unreachable' and 'a call hung' in out['reason']


def test_module_failure_fails_the_task():
    clock = Clock()
    host = Host(clock, [{'failed': True, 'msg': 'blkfleet engine not found'}])
    with pytest.raises(AnsibleActionFail, match='blkfleet engine not found'):
        action.Waiter(host.call, host.async_status, args(), clock, clock.sleep).run()


def arm(host, clock, **extra):
    return action.Waiter(host.call, host.async_status, args(state='armed', poll=0.5, **extra), clock, clock.sleep,
                         wall=lambda: 1795680600.5).arm()


def test_waits_until_the_job_is_armed():
    clock = Clock()
    host = Host(clock, ['none', 'arming', 'arming', job('armed', armed_at=1795680600.25)])
    out = arm(host, clock)
    assert out['outcome'] == 'armed' and out['reachable'] and 'reason' not in out and not out['changed']
    assert out['armed_seen'] == 1795680600.5 and out['job']['armed_at'] == 1795680600.25
    assert host.calls == ['status'] * 4 and out['waited_s'] == 1.5  # read only: the lease waits for the start


@pytest.mark.parametrize('states, replay, outcome, reason', [
    (['arming', job('finished', exit_code=2, stop_reason='/dev/loop2: refusing to write: it holds an ext2/3/4 '
                    'filesystem')], None, 'failed', 'ended before it armed: /dev/loop2: refusing to write'),
    (['none'], {'finished': 1, 'failed': True, 'msg': 'no such block device: /dev/nope'}, 'failed',
     'no such block device: /dev/nope'),
    (['arming'], None, 'timed_out', 'not armed within 10.0 s'),
    (['running'], None, 'failed', 'runs without waiting for a start'),
    (['none'], None, 'none', 'no job r1 on the host'),
])
def test_a_job_that_does_not_arm(states, replay, outcome, reason):
    clock = Clock()
    host = Host(clock, states, replay=replay)
    out = arm(host, clock, timeout=10.0, async_jid='1.2' if replay else None)
    assert out['outcome'] == outcome and reason in out['reason'], out
    assert 'armed_seen' not in out and 'stopped' not in host.calls  # the role stops every job, armed or not


def test_a_host_that_stops_answering_while_arming():
    clock = Clock()
    host = Host(clock, ['arming'], fail_from=1002.0)
    out = arm(host, clock, timeout=10.0)
    assert out['outcome'] == 'unreachable' and out['reason'].startswith('no answer from the host for 8.5 s')


def test_a_slow_answer_before_the_job_exists_is_not_a_hung_host(monkeypatch):
    """A loaded host answers the background task's status late while its engine reads a large bundle, before its job
    exists: slower than the grace of a call, well within the wait. It arms; it was once taken for hung."""
    monkeypatch.setattr(action, 'CALL_GRACE_S', 0.05)
    clock = Clock()
    host = Host(clock, ['none', 'none', job('armed', armed_at=1795680600.25)])
    answer = host.async_status

    def slow_status(jid):
        time.sleep(0.3)
        return answer(jid)

    host.async_status = slow_status
    out = arm(host, clock, async_jid='1.2')
    assert out['outcome'] == 'armed' and out['reachable'], out
    assert host.calls == ['status', 'async_status', 'status', 'async_status', 'status']


def test_peers_meet_and_agree_on_one_instant(tmp_path):
    clock = Clock()
    meetings = [action.Rendezvous(str(tmp_path), host, ['t1', 't2', 't3'], clock, clock.sleep)
                for host in ('t1', 't2', 't3')]
    meetings[0].arrive(1000.0, 0.08)
    meetings[2].arrive(1002.5, 0.3)
    assert meetings[0].wait(clock() + 1.0) == (None, 't2 did not arm in time')
    meetings[1].arrive(1001.0, 0.1)
    arrivals, why = meetings[1].wait(clock() + 1.0)
    assert why is None and sorted(arrivals) == ['t1', 't2', 't3']
    assert action.start_instant(arrivals, 0.5) == 1003.1  # the last arrival plus twice the slowest call (0.6 > 0.5)
    assert action.start_instant({'t1': {'seen': 10.0, 'call_s': 0.1}}, 0.5) == 10.5
    assert sorted(os.listdir(str(tmp_path))) == ['t1.armed', 't2.armed', 't3.armed']  # written whole, nothing else


def test_a_peer_that_fails_stops_the_others_at_once(tmp_path):
    clock = Clock()
    t1, t2 = (action.Rendezvous(str(tmp_path), host, ['t1', 't2'], clock, clock.sleep) for host in ('t1', 't2'))
    t1.arrive(1000.0, 0.1)
    t2.fail('the replay ended before it armed: /dev/loop2: refusing to write')
    began = clock()
    assert t1.wait(clock() + 60) == (None, 't2 did not arm: the replay ended before it armed: /dev/loop2: refusing '
                                           'to write')
    assert clock() == began


def test_action_spec_matches_documentation():
    options = yaml.safe_load(replay_job.DOCUMENTATION)['options']
    spec = action.ActionModule.ARGUMENT_SPEC
    assert sorted(spec) == sorted(options)
    for name, entry in spec.items():
        assert entry.get('type', 'str') == options[name].get('type', 'str'), name
        assert entry.get('default') == options[name].get('default'), name

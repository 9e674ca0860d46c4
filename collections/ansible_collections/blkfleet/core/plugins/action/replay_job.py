# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of blkfleet.core.replay_job: state=waited waits on the controller, bounded, renewing the lease;
state=armed waits, bounded, for an armed job; state=started with peers starts a fleet together.

Why on the controller: a task's ``until`` loop, or Ansible's own polling of an ``async`` task, stops at the first
unreachable answer or retries through connection errors charging only the poll interval, and a call over an SSH
connection whose link went down can hang for many minutes. Here every call to the host runs in a helper thread
that the loop waits for only until the bound: a host that stops answering costs the task no more than its
``timeout``, and the other hosts' tasks are not held.

The start of a fleet (state=started with ``peers``) is one task whose workers, one per host, run side by side on
the controller: each waits until its host's engine is armed, says so in a rendezvous directory private to this
ansible-playbook run (``<host>.armed``, or ``<host>.failed`` with the reason), and waits there for its peers. Once
every peer has armed, each computes the same instant from the files (the last arrival, plus the margin, at least
twice the slowest peer's last call to its host) and gives it to its engine at once, straight over the connection.
No task boundary lies between the last host armed and the starts, so the margin only covers one call per host, made
in parallel. Every peer's worker must run at once: forks at least the number of peers.
"""

from __future__ import annotations

import json
import os
import threading
import time

from ansible import constants as C
from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure, AnsibleError

from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller
from ansible_collections.blkfleet.core.plugins.plugin_utils._action import BlkfleetAction

MODULE = 'blkfleet.core.replay_job'
COLLECT_S = 60.0  # how long the background btreplay task may take to record its result once the job has ended
CALL_GRACE_S = 5.0  # a call made just before the bound may take this long
STOP_S = 30.0  # how long a job still running at the bound may take to stop


class Hung(Exception):
    """A call to the host did not come back before the bound."""


def bounded(call, seconds):
    """``call()`` in a daemon thread, waited for at most ``seconds``: its value, its exception, or Hung."""
    box = {}

    def target():
        try:
            box['value'] = call()
        except BaseException as e:  # handed over to the waiting thread as is
            box['error'] = e
    thread = threading.Thread(target=target, name='blkfleet-replay-job-call', daemon=True)
    thread.start()
    thread.join(max(seconds, 0.0))
    if thread.is_alive():
        raise Hung()
    if 'error' in box:
        raise box['error']
    return box['value']


class Rendezvous:
    """Where the workers of one fleet start meet, a directory on the controller: ``arrive`` or ``fail`` for this host,
    ``wait`` for the others. Files are written whole (a temporary name, then rename) and read as JSON."""

    POLL_S = 0.01

    def __init__(self, directory, me, peers, clock=time.monotonic, sleep=time.sleep):
        self.directory = directory
        self.me = me
        self.peers = list(peers)
        self.clock = clock
        self.sleep = sleep
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def _put(self, kind, doc):
        path = os.path.join(self.directory, '%s.%s' % (self.me, kind))
        tmp = '%s.%d.tmp' % (path, os.getpid())
        with open(tmp, 'w') as f:
            json.dump(doc, f)
        os.rename(tmp, path)

    def _get(self, host, kind):
        try:
            with open(os.path.join(self.directory, '%s.%s' % (host, kind))) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def arrive(self, seen, call_s):
        self._put('armed', dict(seen=seen, call_s=call_s))

    def fail(self, reason):
        self._put('failed', dict(reason=reason))

    def wait(self, deadline):
        """({peer: its arrival} once every peer armed, None) or (None, why not): a peer failed, or the deadline
        (monotonic) passed."""
        while True:
            arrived = {}
            for peer in self.peers:
                failed = self._get(peer, 'failed')
                if failed is not None:
                    return None, '%s did not arm: %s' % (peer, failed.get('reason'))
                arrival = self._get(peer, 'armed')
                if arrival is not None:
                    arrived[peer] = arrival
            if len(arrived) == len(self.peers):
                return arrived, None
            if self.clock() >= deadline:
                late = [p for p in self.peers if p not in arrived]
                return None, '%s did not arm in time' % ', '.join(late)
            self.sleep(self.POLL_S)


def start_instant(arrivals, margin):
    """The common start of a fleet: the last arrival plus the margin, at least twice the slowest host's last call (the
    start is one such call per host, all at once). Every worker computes it from the same files."""
    slowest = max(a['call_s'] for a in arrivals.values())
    return max(a['seen'] for a in arrivals.values()) + max(margin, 2 * slowest)


class Waiter:
    """The wait loop of one host. ``call(args)`` runs the module there and ``async_status(jid)`` reads a background
    task (both may raise AnsibleConnectionFailure or hang); ``clock`` and ``sleep`` are time.monotonic and
    time.sleep, replaced in unit tests."""

    def __init__(self, call, async_status, args, clock=time.monotonic, sleep=time.sleep, wall=time.time):
        self.call = call
        self.async_status = async_status
        self.args = args
        self.clock = clock
        self.sleep = sleep
        self.wall = wall
        self.start = clock()
        self.bound = float(args['timeout'])
        self.deadline = self.start + self.bound
        self.hung = False  # a call never came back: make no other call (it would hang too)
        self.error = None  # the connection error of the last call, None when it answered
        self.last_answer = self.start
        self.call_s = 0.0  # how long the last call that answered took (the connection warm, as for the start)

    def remaining(self):
        return self.deadline - self.clock()

    def remote(self, fn, limit):
        """``fn()`` waited for at most ``limit`` s; None when the host did not answer (connection error, hang)."""
        began = self.clock()
        try:
            value = bounded(fn, limit)
        except Hung:
            self.hung = True
            return None
        except AnsibleConnectionFailure as e:
            self.error = str(e).strip().splitlines()[0] if str(e).strip() else 'connection failed'
            return None
        self.call_s = self.clock() - began
        self.last_answer = self.clock()
        self.error = None
        return value

    def job(self, state, limit, **extra):
        args = dict(run_id=self.args['run_id'], state=state, engine=self.args['engine'],
                    engine_root=self.args['engine_root'], **extra)
        result = self.remote(lambda: self.call(args), limit)
        if result is not None and result.get('failed'):
            raise AnsibleActionFail('blkfleet job %s failed: %s' % (state, result.get('msg', result)))
        return None if result is None else result['job']

    def replay_result(self, jid, wait_s):
        """The background task's result once it finished (asking until ``wait_s`` has passed), else None."""
        until = self.clock() + wait_s
        while not self.hung:
            # a slow answer is not a hung host: the call may take what is left of the whole wait (a loaded host
            # answers an async_status late while its engine verifies a large bundle, before its job exists)
            status = self.remote(lambda: self.async_status(jid), max(until - self.clock(), self.remaining(), 0.0)
                                 + CALL_GRACE_S)
            if status is not None and status.get('finished'):
                return status
            if self.clock() >= until:
                break
            self.sleep(min(0.5, max(until - self.clock(), 0.0)))
        return None

    def watch(self, call, until, poll):
        """Call the module (``call``: renewed or status) every ``poll`` seconds until the job reaches a state of
        ``until`` or ends, the bound passes or the host stops answering; (the task's result so far, the last state)."""
        jid = self.args['async_jid']
        out = dict(job=None, changed=False)
        while not self.hung and self.remaining() > 0:
            job = self.job(call, self.remaining() + CALL_GRACE_S)
            if job is not None:
                out['job'] = job
                if job['state'] in until + ('finished', 'dead'):
                    break
                if job['state'] == 'none' and jid:
                    early = self.replay_result(jid, 0.0)  # a replay that failed before its job started
                    if early is not None:
                        out['replay'] = early
                        break
            if self.remaining() > 0:
                self.sleep(min(poll, self.remaining()))
        return out, (out['job'] or {}).get('state')

    def collect(self, out, state):
        """The background task's result of a job that ended (within COLLECT_S), and whether the host answered."""
        jid = self.args['async_jid']
        if jid and 'replay' not in out and not self.hung and self.error is None and state in ('finished', 'dead'):
            replay = self.replay_result(jid, COLLECT_S)
            if replay is not None:
                out['replay'] = replay
        out['reachable'] = not self.hung and self.error is None
        out['waited_s'] = round(self.clock() - self.start, 3)

    def run(self):
        """Renew the lease until the job ends (stopped at the bound when it still runs); the task's result."""
        out, state = self.watch('renewed', (), max(float(self.args['poll']), 0.1))
        if state == 'running' and not self.hung and self.error is None:
            stopped = self.job('stopped', STOP_S + CALL_GRACE_S, stop_timeout=STOP_S)
            if stopped is not None:
                out.update(job=stopped, changed=bool(stopped.get('stopped')), stopped_at_bound=True)
                state = stopped['state']
        self.collect(out, state)
        out.update(self.outcome(out))
        return out

    def arm(self):
        """Read the job until it is armed (or ended, or the bound passed); the task's result."""
        out, state = self.watch('status', ('armed', 'running'), max(float(self.args['poll']), 0.05))
        if state == 'armed':
            out['armed_seen'] = self.wall()
        self.collect(out, state)
        out.update(self.arm_outcome(out))
        out['call_s'] = round(self.call_s, 3)
        return out

    def arm_outcome(self, out):
        job = out['job'] or {}
        replay = out.get('replay')
        state = job.get('state')
        if state == 'armed':
            return dict(outcome='armed')
        if not out['reachable']:
            return self.outcome(out)
        if replay is not None and replay.get('failed'):
            return dict(outcome='failed', reason=str(replay.get('msg') or 'the replay failed').strip().splitlines()[0])
        if state == 'running':
            return dict(outcome='failed', reason='the job runs without waiting for a start (not started with arm)')
        if state in ('finished', 'dead'):
            return dict(outcome='failed', reason='the replay ended before it armed: %s' % (
                job.get('stop_reason') or job.get('problem') or 'exit code %s' % job.get('exit_code')))
        if state == 'arming':
            return dict(outcome='timed_out', reason='not armed within %.1f s (still reading its files, checking its '
                        'targets or starting its workers)' % self.bound)
        return dict(outcome='none', reason='no job %s on the host within the bound (%.1f s)'
                    % (self.args['run_id'], self.bound))

    def outcome(self, out):
        job = out['job'] or {}
        replay = out.get('replay')
        if not out['reachable']:
            why = 'a call hung' if self.hung else self.error
            return dict(outcome='unreachable', reason='no answer from the host for %.1f s (bound %.1f s): %s'
                        % (self.clock() - self.last_answer, self.bound, why))
        if out.get('stopped_at_bound'):
            return dict(outcome='timed_out', reason='still running at the bound (%.1f s): stopped, partial results'
                        % self.bound)
        if job.get('state') == 'running':
            return dict(outcome='timed_out', reason='still running at the bound (%.1f s), not stopped' % self.bound)
        if replay is not None and replay.get('failed'):
            return dict(outcome='failed', reason=str(replay.get('msg') or 'the replay failed').strip().splitlines()[0])
        if job.get('state') == 'dead':
            return dict(outcome='failed', reason='the replay engine died: %s' % job.get('problem', 'gone'))
        if job.get('state') == 'finished':
            if job.get('exit_code') != 0:
                return dict(outcome='failed', reason='the replay ended with exit code %s%s' % (
                    job.get('exit_code'), ' (%s)' % job['stop_reason'] if job.get('stop_reason') else ''))
            if self.args['async_jid'] and replay is None:
                return dict(outcome='failed', reason='the replay task recorded no result within %.0f s of its end'
                            % COLLECT_S)
            return dict(outcome='ok')
        return dict(outcome='none', reason='no job %s on the host within the bound (%.1f s)'
                    % (self.args['run_id'], self.bound))


class ActionModule(BlkfleetAction):

    TRANSFERS_FILES = False
    ARGUMENT_SPEC = dict(
        run_id=dict(type='str', required=True),
        state=dict(type='str', choices=['status', 'renewed', 'stopped', 'waited', 'armed', 'started'],
                   default='status'),
        stop_timeout=dict(type='float', default=30.0),
        start_at=dict(type='str'),
        timeout=dict(type='float'),
        poll=dict(type='float', default=2.0),
        async_jid=dict(type='str'),
        peers=dict(type='list', elements='str'),
        rendezvous=dict(type='str'),
        margin=dict(type='float', default=0.5),
        engine=dict(type='path'),
        engine_root=dict(type='path', default='/var/lib/blkfleet/engine'),
    )

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        hung = False
        try:
            args = self.validated_args()
            if args['state'] == 'started' and args['peers'] is not None and not self._task.check_mode:
                waiter = self.waiter(args, task_vars)
                result.update(self.start_together(args, task_vars, waiter))
                hung = waiter.hung
                return result
            if args['state'] == 'started' and args['engine'] and not self._task.check_mode:
                result.update(self.start_now(args, task_vars))
                return result
            if args['state'] not in ('waited', 'armed'):
                result.update(self._execute_module(module_name=MODULE, module_args=self._task.args,
                                                   task_vars=task_vars))
                return result
            if args['timeout'] is None or not args['timeout'] > 0:
                raise AnsibleActionFail('state=%s needs timeout, seconds > 0' % args['state'])
            done = 'ok' if args['state'] == 'waited' else 'armed'
            if self._task.check_mode:
                result.update(changed=False, outcome=done, reachable=True, job=None, waited_s=0.0,
                              msg='check mode: not waited')
                return result
            waiter = self.waiter(args, task_vars)
            out = waiter.run() if done == 'ok' else waiter.arm()
            hung = waiter.hung
            result.update(out)
            if out['outcome'] != done:
                result.update(failed=True, msg=out['reason'])
            return result
        except AnsibleError as e:
            result.update(failed=True, msg=str(e.message))
            return result
        finally:
            if not hung:  # a hung connection would hang the clean-up too; the host's tmp is then left
                self.cleanup_remote()

    def waiter(self, args, task_vars):
        """The Waiter of this host: its job read straight over the connection while it arms (engine given)."""
        call = self.read_now if args['state'] != 'waited' and args['engine'] else self.module_call
        return Waiter(lambda a: call(a, task_vars), lambda jid: self._async_status(jid, task_vars), args)

    def start_together(self, args, task_vars, waiter):
        """Arm, meet the peers, start at their common instant (see the module docstring)."""
        me = task_vars['inventory_hostname']
        peers = args['peers']
        forks = int(task_vars.get('ansible_forks') or 0)
        if me not in peers:
            raise AnsibleActionFail('peers must name this host (%s)' % me)
        if forks and forks < len(peers):
            raise AnsibleActionFail('starting %d hosts together needs as many forks (forks is %d): raise forks, or '
                                    'start them at one wall-clock time (replay_start_at)' % (len(peers), forks))
        if args['timeout'] is None or not args['timeout'] > 0 or not args['rendezvous']:
            raise AnsibleActionFail('state=started with peers needs timeout, seconds > 0 to wait for them to arm, and '
                                    'rendezvous, a name the peers share')
        name = ''.join(c if c.isalnum() or c in '.-_' else '_' for c in args['rendezvous'])
        meeting = Rendezvous(os.path.join(C.DEFAULT_LOCAL_TMP, 'blkfleet-start-' + name), me, peers)
        out = waiter.arm()
        if out['outcome'] != 'armed':
            meeting.fail(out['reason'])
            return dict(out, failed=True, msg=out['reason'])
        meeting.arrive(out['armed_seen'], out['call_s'])
        arrivals, why = meeting.wait(waiter.deadline + CALL_GRACE_S)
        if arrivals is None:
            why = 'not started: %s' % why
            return dict(out, outcome='not_started', failed=True, msg=why, reason=why)
        at = '%.6f' % start_instant(arrivals, args['margin'])
        out['margin_s'] = round(float(at) - max(a['seen'] for a in arrivals.values()), 3)
        if args['engine']:
            started = self.start_now(dict(args, start_at=at), task_vars)
        else:
            started = self.module_call(dict(run_id=args['run_id'], state='started', start_at=at,
                                            engine_root=args['engine_root']), task_vars)
        result = dict(out, outcome='failed' if started.get('failed') else 'started', start_at=float(at), **started)
        if started.get('failed'):
            result['reason'] = started.get('msg')
        return result

    def module_call(self, args, task_vars):
        return self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)

    def read_now(self, args, task_vars):
        """``job status`` by the host's engine straight over the connection (a module result's shape)."""
        try:
            doc = self.engine_on_host(args['engine'], ['job', 'status', '--', args['run_id']], task_vars)
        except _controller.EngineFailed as e:
            return dict(failed=True, msg=e.short)
        return dict(changed=False, job=doc['result'])

    def start_now(self, args, task_vars):
        """``job start`` by the host's engine straight over the connection: the start instant reaches the host in one
        process there, well within the margin the role leaves."""
        if not args['start_at']:
            raise AnsibleActionFail('state=started needs start_at')
        job = self.engine_on_host(args['engine'], ['job', 'start', '--at', args['start_at'], '--', args['run_id']],
                                  task_vars)['result']
        if not job['start_accepted']:
            why = 'job %s not started: %s' % (args['run_id'], job.get('problem'))
            return dict(failed=True, changed=False, job=job, msg=why)
        return dict(changed=True, job=job)

    def _async_status(self, jid, task_vars):
        async_dir = self._remote_expand_user(self.get_shell_option('async_dir', default='~/.ansible_async'))
        return self._execute_module(module_name='ansible.legacy.async_status', task_vars=task_vars,
                                    module_args=dict(jid=jid, mode='status', _async_dir=async_dir))

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: replay_job
short_description: Read, renew, start, stop or wait for a replay job started by blkfleet.core.btreplay
version_added: 0.1.0
description:
  - A replay started by M(blkfleet.core.btreplay) with O(blkfleet.core.btreplay#module:run_id) is a job. The
    engine keeps its state in C(/run/blkfleet/replay/<run_id>/) on the host. This module runs the engine's
    C(blkfleet job status|renew|stop|start) and returns its document as RV(job).
  - O(state=status) reads the job; O(state=renewed) also renews its lease, so that a replay started with
    O(blkfleet.core.btreplay#module:lease) goes on; O(state=stopped) stops it (SIGTERM to the engine, only when it
    provably is that job's engine) and waits until it has ended with its partial results.
  - O(state=armed) runs on the controller (an action plugin). For a replay started with
    O(blkfleet.core.btreplay#module:arm), it reads the job every O(poll) seconds until its engine reports
    C(armed) (files read, targets opened and checked, workers pinned and ready), at most O(timeout) seconds, and
    returns RV(outcome) V(armed), or why not.
  - O(state=started) gives an armed replay its start instant O(start_at) (and renews its lease).
  - O(state=started) with O(peers) starts a fleet together, on the controller (an action plugin). This host's task
    waits until its replay is armed (at most O(timeout)), meets the tasks of its O(peers) (the same O(rendezvous)),
    and once every peer armed, all give their engines one start instant, O(margin) after the last one armed (at
    least twice the slowest host's last call). When a peer does not arm, none starts. The tasks of all the
    peers must run at once, so the play needs forks at least the number of peers. The role M(blkfleet.core.replay)
    starts its targets so.
  - O(state=waited) runs on the controller (an action plugin). It renews the lease and reads the job every
    O(poll) seconds until the job has ended, at most O(timeout) seconds. A host that does not answer (a lost
    link, a hung connection) does not hold the task longer than that. At the bound the job is reported
    V(unreachable) (its engine stops by itself when its lease runs out); a job still running at the bound on a
    host that answers is stopped and reported V(timed_out). With O(async_jid) it also collects the result of
    the background M(blkfleet.core.btreplay) task (RV(replay)), and notices a replay that failed before its job
    started.
author:
  - blkfleet developers (@blkfleet)
options:
  run_id:
    description:
      - The job's ID, the O(blkfleet.core.btreplay#module:run_id) of its replay.
    type: str
    required: true
  state:
    description:
      - V(status) reads the job, V(renewed) renews its lease and reads it, V(stopped) stops it, V(waited) waits for
        its end while renewing its lease, V(armed) waits until it is armed, V(started) starts an armed job at
        O(start_at) (see the description).
    type: str
    choices: [status, renewed, stopped, waited, armed, started]
    default: status
  stop_timeout:
    description:
      - With O(state=stopped), seconds to wait for the engine to end after SIGTERM.
    type: float
    default: 30.0
  start_at:
    description:
      - With O(state=started) and no O(peers), the start instant, seconds since the epoch or ISO 8601. An instant
        already past starts the replay at once; the results say how late (C(start.requested), C(start.wall)).
    type: str
  peers:
    description:
      - With O(state=started), the hosts started together (this one among them), e.g. C(ansible_play_batch).
    type: list
    elements: str
  rendezvous:
    description:
      - With O(peers) (required then), a name the peers share and no other start of this playbook run uses, e.g. the
        run token of their jobs.
    type: str
  margin:
    description:
      - With O(peers), seconds between the moment the last peer armed and the start instant, at least twice the
        last call the controller made to the slowest of the peers.
    type: float
    default: 0.5
  timeout:
    description:
      - With O(state=waited), seconds to wait at most, from the start of this task (required then). Give the
        replay's length (the trace's duration divided by the acceleration factor, times the iterations), the time
        until its start and a margin.
      - With O(state=armed), or O(state=started) with O(peers) (required then), seconds to wait at most for the job
        to be armed (and for the peers).
    type: float
  poll:
    description:
      - With O(state=waited), seconds between two renewals (keep it well below the replay's lease); with
        O(state=armed), between two reads.
    type: float
    default: 2.0
  async_jid:
    description:
      - With O(state=waited) or O(state=armed), the C(ansible_job_id) of the background M(blkfleet.core.btreplay)
        task that runs the job (C(async), C(poll=0)), to report why a replay failed before it armed or ended.
    type: str
  engine:
    description:
      - Path on the host of the engine (C(engine.pyz) or a directory holding one); the replay's own engine, e.g.
        RV(blkfleet.core.replay_bundle#module:engine) of its push. The default is the most recently installed
        engine under O(engine_root), else one found like M(blkfleet.core.btreplay) does.
    type: path
  engine_root:
    description:
      - Directory under which engines are installed (C(<sha256>/engine.pyz)).
    type: path
    default: /var/lib/blkfleet/engine
extends_documentation_fragment:
  - blkfleet.core._attributes
  - blkfleet.core._attributes.ACTIONGROUP_BLKFLEET
  - blkfleet.core._attributes.PLATFORM_LINUX
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Reads the job only; O(state=stopped) and O(state=started) predict RV(ignore:changed) from its state,
        O(state=waited) and O(state=armed) return at once.
  diff_mode:
    support: none
notes:
  - RV(ignore:changed) is V(true) only when O(state=stopped) (or V(waited), at its bound) stopped a running replay,
    or O(state=started) started one. Reading a job or renewing its lease changes nothing on the host.
  - Use the fully qualified name C(blkfleet.core.replay_job) for O(state=waited) and O(state=armed), which need
    the action plugin.
seealso:
  - module: blkfleet.core.btreplay
'''

EXAMPLES = r'''
- name: Start the replay in the background, as a job that stops by itself unless renewed every 30 s
  blkfleet.core.btreplay:
    bundle_id: "{{ pushed.bundle_id }}"
    device_map: {sdb: vdc}
    write_enable: true
    run_id: "nightly-{{ inventory_hostname }}"
    lease: 30
  async: 3600
  poll: 0
  register: launched

- name: Wait for it (at most 10 minutes), renewing its lease every 2 s
  blkfleet.core.replay_job:
    run_id: "nightly-{{ inventory_hostname }}"
    state: waited
    timeout: 600
    async_jid: "{{ launched.ansible_job_id }}"
    engine: "{{ pushed.engine }}"
  register: waited

- name: Stop it
  blkfleet.core.replay_job:
    run_id: "nightly-{{ inventory_hostname }}"
    state: stopped
    engine: "{{ pushed.engine }}"

- name: Arm a replay on every target (each waits at most 120 s for its start)
  blkfleet.core.btreplay:
    bundle_id: "{{ pushed.bundle_id }}"
    device_map: {sdb: vdc}
    run_id: "fleet-{{ inventory_hostname }}"
    arm: 120
    lease: 30
  async: 3600
  poll: 0
  register: launched

- name: Start every target half a second after the last one armed (none when one does not arm within 60 s)
  blkfleet.core.replay_job:
    run_id: "fleet-{{ inventory_hostname }}"
    state: started
    peers: "{{ ansible_play_batch }}"
    rendezvous: fleet
    timeout: 60
    async_jid: "{{ launched.ansible_job_id }}"
    engine: "{{ pushed.engine }}"
  register: started

- name: Or start one host at a time of your choosing
  blkfleet.core.replay_job:
    run_id: "fleet-{{ inventory_hostname }}"
    state: started
    start_at: "2026-12-01T02:30:00Z"
'''

RETURN = r'''
job:
  description:
    - The engine's job document (C(blkfleet job)). With O(state=waited), the last one read (none when the host
      never answered).
  returned: success, and with O(state=waited) when the host answered
  type: dict
  contains:
    run_id:
      description: The job's ID.
      type: str
    state:
      description:
        - V(none) (no such job), V(arming) (reading, checking, starting its workers), V(armed) (waiting for its
          start), V(running), V(finished) or V(dead) (its engine is gone without finishing).
      type: str
    pid:
      description: The engine's process ID.
      type: int
    exit_code:
      description: The engine's exit code once finished (0 done, 2 refused, 3 IO errors, 4 lease expired or never
        started, 5 a worker died, 130 stopped).
      type: int
    results:
      description: The results JSON the engine wrote, once finished.
      type: str
    stop_reason:
      description: Why it stopped early (C(SIGTERM), C(lease expired), ...); null when it ran to its end.
      type: str
    lease_s:
      description: The lease, in seconds.
      type: float
    lease_age_s:
      description: Seconds since the lease was last renewed.
      type: float
    renewed:
      description: With O(state=renewed), whether the lease was renewed.
      type: bool
    stopped:
      description: With O(state=stopped), whether the engine was stopped and is gone.
      type: bool
    armed_at:
      description: When the engine reported itself armed, epoch seconds (V(null) before, or without arming).
      type: float
    start_at:
      description: The start instant it was given, epoch seconds.
      type: float
    start_accepted:
      description: With O(state=started), whether the job took the start (it was arming or armed).
      type: bool
  sample:
    run_id: nightly-target1
    state: running
    pid: 4242
    exit_code: null
    results: null
    stop_reason: null
    lease_s: 30.0
    lease_age_s: 0.41
    started: "2026-12-01T05:28:52.802+00:00"
outcome:
  description:
    - With O(state=waited), V(ok) (the replay ran to its end), V(failed) (it ended with an error, was stopped,
      or its engine died), V(unreachable) (the host did not answer until the bound), V(timed_out) (still running
      at the bound, then stopped) or V(none) (no job and no background task to explain why).
    - With O(state=armed), V(armed), V(failed) (it ended before it armed, RV(reason) says why, e.g. a refused
      target), V(unreachable), V(timed_out) (not armed within O(timeout); it is not stopped here) or V(none).
    - With O(state=started) and O(peers), V(started), V(not_started) (a peer did not arm), or one of the above
      when this host did not arm.
  returned: with O(state=waited), O(state=armed), or O(state=started) with O(peers)
  type: str
  sample: ok
reason:
  description: With O(state=waited) or O(state=armed), one line saying why the outcome is not V(ok) or V(armed).
  returned: with O(state=waited) or O(state=armed), when the outcome is not V(ok) or V(armed)
  type: str
  sample: "no answer from the host for 87.1 s (bound 90.0 s): a call hung"
reachable:
  description: With O(state=waited) or O(state=armed), whether the host answered the last call.
  returned: with O(state=waited) or O(state=armed)
  type: bool
waited_s:
  description: With O(state=waited) or O(state=armed), seconds waited.
  returned: with O(state=waited) or O(state=armed)
  type: float
  sample: 21.3
armed_seen:
  description: With O(state=armed), when the controller saw the job armed, epoch seconds of the controller's clock.
  returned: with O(state=armed) or O(peers), when the job armed
  type: float
  sample: 1795680600.123
start_at:
  description: With O(peers), the start instant the peers were given, epoch seconds.
  returned: with O(state=started) and O(peers), once every peer armed
  type: float
  sample: 1795680600.623
call_s:
  description: With O(state=armed) or O(peers), how long the last call to the host took while it armed, seconds.
  returned: with O(state=armed), or O(state=started) with O(peers)
  type: float
  sample: 0.082
replay:
  description:
    - With O(state=waited) or O(state=armed) and O(async_jid), the result of the background
      M(blkfleet.core.btreplay) task (RV(blkfleet.core.btreplay#module:replay_results),
      RV(blkfleet.core.btreplay#module:results_path), RV(ignore:failed), RV(ignore:msg), ...), once it finished.
  returned: with O(async_jid), when the background task finished
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blkfleet.core.plugins.module_utils import _engine

ACTIONS = {'status': 'status', 'renewed': 'renew', 'stopped': 'stop', 'started': 'start'}
LIVE = ('arming', 'armed', 'running')
CONTROLLER_STATES = ('waited', 'armed')


def main():
    module = AnsibleModule(
        argument_spec=dict(
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
            engine_root=dict(type='path', default=_engine.ENGINE_ROOT),
        ),
        required_if=[('state', 'started', ('start_at', 'peers'), True)],
        supports_check_mode=True,
    )
    p = module.params
    if p['state'] in CONTROLLER_STATES or p['peers'] is not None:
        module.fail_json(msg='state=%s%s runs on the controller: call the module by its full name, '
                             'blkfleet.core.replay_job' % (p['state'], ' with peers' if p['peers'] is not None else ''))
    command = _engine.find_engine(module, engine=p['engine'], root=p['engine_root'])
    action = 'status' if module.check_mode else ACTIONS[p['state']]
    options = []
    if action == 'stop':
        options = ['--timeout', repr(max(float(p['stop_timeout']), 0.0))]
    elif action == 'start':
        options = ['--at', p['start_at']]
    job = _engine.run(module, command, ['job', action] + options + ['--', p['run_id']])['result']
    if module.check_mode:
        changed = p['state'] == 'stopped' and job['state'] in LIVE or p['state'] == 'started' and job['state'] in (
            'arming', 'armed')
    else:
        changed = bool(job.get('stopped') or job.get('start_accepted'))
    if p['state'] == 'started' and not module.check_mode and not job['start_accepted']:
        module.fail_json(msg='job %s not started: %s' % (p['run_id'], job.get('problem')), job=job)
    module.exit_json(changed=changed, job=job)


if __name__ == '__main__':
    main()

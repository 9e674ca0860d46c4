#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: replay_job
short_description: Read, renew, stop or wait for a replay job started by blkfleet.core.btreplay
version_added: 0.1.0
description:
  - A replay started by M(blkfleet.core.btreplay) with O(blkfleet.core.btreplay#module:run_id) is a job. The
    engine keeps its state in C(/run/blkfleet/replay/<run_id>/) on the host. This module runs the engine's
    C(blkfleet job status|renew|stop) and returns its document as RV(job).
  - O(state=status) reads the job; O(state=renewed) also renews its lease, so that a replay started with
    O(blkfleet.core.btreplay#module:lease) goes on; O(state=stopped) stops it (SIGTERM to the engine, only when it
    provably is that job's engine) and waits until it has ended with its partial results.
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
        its end while renewing its lease (see the description).
    type: str
    choices: [status, renewed, stopped, waited]
    default: status
  stop_timeout:
    description:
      - With O(state=stopped), seconds to wait for the engine to end after SIGTERM.
    type: float
    default: 30.0
  timeout:
    description:
      - With O(state=waited), seconds to wait at most, from the start of this task (required then). Give the
        replay's length (the trace's duration divided by the acceleration factor, times the iterations), the time
        until its start and a margin.
    type: float
  poll:
    description:
      - With O(state=waited), seconds between two renewals (keep it well below the replay's lease).
    type: float
    default: 2.0
  async_jid:
    description:
      - With O(state=waited), the C(ansible_job_id) of the background M(blkfleet.core.btreplay) task that runs the
        job (C(async), C(poll=0)).
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
      - Reads the job only; O(state=stopped) predicts RV(ignore:changed) from whether it runs, O(state=waited)
        returns at once.
  diff_mode:
    support: none
notes:
  - RV(ignore:changed) is V(true) only when O(state=stopped) (or V(waited), at its bound) stopped a running replay.
    Reading a job or renewing its lease changes nothing on the host.
  - Use the fully qualified name C(blkfleet.core.replay_job) for O(state=waited), which needs the action plugin.
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
      description: V(none) (no such job), V(running), V(finished) or V(dead) (its engine is gone without finishing).
      type: str
    pid:
      description: The engine's process ID.
      type: int
    exit_code:
      description: The engine's exit code once finished (0 done, 3 IO errors, 4 lease expired, 5 a worker died,
        130 stopped).
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
  returned: with O(state=waited)
  type: str
  sample: ok
reason:
  description: With O(state=waited), one line saying why the outcome is not V(ok).
  returned: with O(state=waited), when the outcome is not V(ok)
  type: str
  sample: "no answer from the host for 87.1 s (bound 90.0 s): a call hung"
reachable:
  description: With O(state=waited), whether the host answered the last call.
  returned: with O(state=waited)
  type: bool
waited_s:
  description: With O(state=waited), seconds waited.
  returned: with O(state=waited)
  type: float
  sample: 21.3
replay:
  description:
    - With O(state=waited) and O(async_jid), the result of the background M(blkfleet.core.btreplay) task
      (RV(blkfleet.core.btreplay#module:replay_results), RV(blkfleet.core.btreplay#module:results_path),
      RV(ignore:failed), RV(ignore:msg), ...), once it finished.
  returned: with O(state=waited) and O(async_jid), when the background task finished
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blkfleet.core.plugins.module_utils import _engine, _names

ACTIONS = {'status': 'status', 'renewed': 'renew', 'stopped': 'stop'}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            run_id=dict(type='str', required=True),
            state=dict(type='str', choices=['status', 'renewed', 'stopped', 'waited'], default='status'),
            stop_timeout=dict(type='float', default=30.0),
            timeout=dict(type='float'),
            poll=dict(type='float', default=2.0),
            async_jid=dict(type='str'),
            engine=dict(type='path'),
            engine_root=dict(type='path', default=_engine.ENGINE_ROOT),
        ),
        supports_check_mode=True,
    )
    p = module.params
    problem = _names.name_problem(p['run_id'])
    if problem:
        module.fail_json(msg='invalid run_id %r: %s' % (p['run_id'], problem))
    if p['state'] == 'waited':
        module.fail_json(msg='state=waited runs on the controller: call the module by its full name, '
                             'blkfleet.core.replay_job')
    command = _engine.find_engine(module, engine=p['engine'], root=p['engine_root'])
    action = 'status' if module.check_mode else ACTIONS[p['state']]
    options = ['--timeout', repr(max(float(p['stop_timeout']), 0.0))] if action == 'stop' else []
    dummy, job, out, err = _engine.run_engine(module, command, ['job', action] + options + ['--', p['run_id']])
    if not isinstance(job, dict):
        module.fail_json(msg='blkfleet job %s printed no job document' % action, stdout=out)
    if p['state'] == 'stopped':
        changed = job.get('state') == 'running' if module.check_mode else bool(job.get('stopped'))
    else:
        changed = False
    module.exit_json(changed=changed, job=job)


if __name__ == '__main__':
    main()

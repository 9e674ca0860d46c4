#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: blktrace
short_description: Start and stop a block IO capture (blktrace relay or the kernel's block tracepoints)
version_added: 0.1.0
description:
  - Starts or stops a capture of the block IO of O(devices) into C(DEV.blktrace.CPU) files in O(output_dir),
    by running the blkfleet engine's C(capture start) and C(capture stop) on the host.
  - The capture runs as a detached background job of the engine (own session, output to
    C(OUTPUT_DIR/capture.log)); the module returns as soon as it runs, and the capture survives the end of the
    Ansible connection.
  - O(state=started) when the same devices are already being captured into O(output_dir) with the same
    O(token) changes nothing. A capture of another O(token) running there makes the task fail, unless
    O(force), which stops and discards it and starts afresh.
  - O(state=started) on a finished capture of the same O(token) (or of no token, with no O(token) given, of the
    same devices) changes nothing either, in check mode too, so that a play run again does not fail on what its
    first run left; O(force) discards that token-less capture and starts afresh. A finished capture of another
    O(token) or of other devices is discarded only with O(force).
  - O(state=stopped) returns the capture summary (files, IOs, drops) and, for each trace file and
    C(capture.json), its size and SHA-256 as the engine reports them (RV(file_info), C(capture files)) to verify a
    copy against; stopping a capture that
    already stopped returns the same summary with RV(ignore:changed=false); without any capture in
    O(output_dir) it changes nothing.
  - O(output_dir) must be a directory only root can change (or one the engine creates, mode 0700); the engine
    refuses any other, and reports only plain C(DEV.blktrace.CPU) files inside it.
  - The engine must be on the host, see M(blkfleet.core.engine).
author:
  - blkfleet developers (@blkfleet)
options:
  state:
    description:
      - V(started) starts a capture unless one of the same devices runs in O(output_dir).
      - V(stopped) stops the capture in O(output_dir) and returns its summary.
    type: str
    choices: [started, stopped]
    default: started
  devices:
    description:
      - Block devices to capture, as kernel names (V(sdb)) or paths (V(/dev/sdb)). Required with O(state=started).
    type: list
    elements: str
    default: []
  output_dir:
    description:
      - Directory on the host for the trace files, C(capture.json) (state and summary) and C(capture.log).
      - One capture per directory. It must be owned by root and writable by no one else, in directories that
        no one else can write either (for example under C(/var/lib/blkfleet), never under C(/var/tmp)); when
        missing it is created with mode 0700.
    type: path
    required: true
  token:
    description:
      - Run token of the capture (letters, digits and C(.), C(_), C(:), C(@), C(+), C(-)), recorded with it.
      - With O(state=started), a capture of the same token already there (running or finished) changes nothing;
        a running capture of another token (or of none) fails the task unless O(force).
      - With O(state=stopped), only a capture of this token is stopped; another one fails the task.
    type: str
  backend:
    description:
      - V(auto) uses blktrace's relay files, and falls back to the ftrace backend (see O(mode)) when blktrace is missing
        or the kernel refuses relay files (kernel lockdown); the C(fallback_reason) of RV(capture) says why.
      - V(blktrace) or V(ftrace) insist on one backend.
    type: str
    choices: [auto, blktrace, ftrace]
    default: auto
  mode:
    description:
      - ftrace backend only. V(events) (the C(block_bio_queue) tracepoint, one event per IO, cheapest), V(raw)
        (the C(blk) tracer's per-CPU ring-buffer pages). V(pipe), the retired C(trace_pipe) mode, is accepted as
        another name for V(raw).
      - V(auto) picks V(events) for O(act_mask=queue) on whole devices, else V(raw).
    type: str
    choices: [auto, events, raw, pipe]
    default: auto
  act_mask:
    description:
      - Event categories to trace, names joined by C(,) (V(queue), V(complete), ...), V(all), or a number.
      - V(queue) is all that the conversion to replay files needs.
    type: str
    default: queue
  buffer_kb:
    description:
      - Sub-buffer size in KiB (blktrace C(-b)); for ftrace the per-CPU ring buffer is O(buffer_kb) times
        O(buffer_count) KiB. Raise it when the capture drops events.
    type: int
    default: 512
  buffer_count:
    description:
      - Number of sub-buffers (blktrace C(-n)).
    type: int
    default: 8
  duration:
    description:
      - Stop the capture by itself after this many seconds. O(state=stopped) still collects the summary.
    type: float
  force:
    description:
      - With O(state=started), start even though O(output_dir) holds a finished or dead capture, or a running
        capture of another O(token); that capture is stopped and its files are discarded. Without it, the
        engine refuses.
    type: bool
    default: false
  fail_on_drops:
    description:
      - With O(state=stopped), fail when the kernel dropped events (the trace is incomplete), after stopping
        and with the summary in the result. Set to V(false) to accept an incomplete trace.
    type: bool
    default: true
  busy_timeout:
    description:
      - The ftrace tracer is global to a machine, one capture at a time. With O(state=started), wait up to this
        many seconds for another capture to release it (while the engine answers with the error code
        C(tracer_busy)) before failing. V(0) fails at once.
    type: int
    default: 0
  engine:
    description:
      - Path on the host of the engine, C(engine.pyz) or a directory holding one, as installed by
        M(blkfleet.core.engine) (RV(blkfleet.core.engine#module:path)).
      - The default is the most recently installed engine under C(/var/lib/blkfleet/engine), else a
        C(blkfleet) program on E(PATH), else C(python3 -m blkfleet).
    type: path
extends_documentation_fragment:
  - blkfleet.core._attributes
  - blkfleet.core._attributes.ACTIONGROUP_BLKFLEET
  - blkfleet.core._attributes.PLATFORM_LINUX
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: none
  async:
    support: none
    details:
      - The module returns at once; the capture runs detached. Use O(duration) or a later O(state=stopped).
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Asks the engine what it would do (C(capture start --check), C(capture stop --check)) and predicts
        RV(ignore:changed), or the failure, without starting, stopping or recovering anything.
  diff_mode:
    support: none
notes:
  - Needs root. The ftrace backend is global to the machine; network-namespace hosts on one machine share it.
  - The trace files are read by C(blkfleet record) (M(blkfleet.core.btrecord)), btrecord and blkparse.
seealso:
  - module: blkfleet.core.btrecord
  - module: blkfleet.core.blkdev_info
    description: RV(blkfleet.core.blkdev_info#module:tracing.recommended_backend) tells which backend can run.
  - name: blktrace(8)
    description: The block layer IO tracing tool.
    link: https://man7.org/linux/man-pages/man8/blktrace.8.html
'''

EXAMPLES = r'''
- name: Start capturing two disks
  blkfleet.core.blktrace:
    devices: [sdb, /dev/nvme0n1]
    output_dir: /var/lib/blkfleet/capture
    token: "nightly-{{ ansible_date_time.iso8601_basic_short }}"
    state: started
  register: started

- name: Run the workload
  ansible.builtin.command: /usr/local/bin/run-workload
  changed_when: true

- name: Stop and collect the summary
  blkfleet.core.blktrace:
    output_dir: /var/lib/blkfleet/capture
    token: "{{ started.capture.token }}"
    state: stopped
  register: capture

- name: Show what was captured
  ansible.builtin.debug:
    msg: "{{ capture.queued }} IOs in {{ capture.files | length }} files, {{ capture.drops }} events dropped"

- name: Capture 30 s with the ftrace backend and large buffers
  blkfleet.core.blktrace:
    devices: [sdb]
    output_dir: /var/lib/blkfleet/capture30
    backend: ftrace
    buffer_kb: 4096
    duration: 30

- name: Wait for the 30 s capture to end
  ansible.builtin.pause:
    seconds: 31

- name: Collect it, accepting drops (an incomplete trace)
  blkfleet.core.blktrace:
    output_dir: /var/lib/blkfleet/capture30
    state: stopped
    fail_on_drops: false
'''

RETURN = r'''
state:
  description:
    - State of the capture after the task, C(capture status) words; V(none) when O(output_dir) holds no
      capture (only when stopping). In check mode, the state before the task.
  returned: always
  type: str
  sample: running
output_dir:
  description: Absolute path of the capture directory.
  returned: always
  type: str
  sample: /var/lib/blkfleet/capture
capture:
  description:
    - The engine's JSON document, verbatim. For O(state=started), the C(capture start) line (C(started),
      C(pid), C(backend), C(mode), C(fallback_reason), C(devices), C(backend_info), ...), or in check mode
      the C(capture status) document. For O(state=stopped), the capture summary of C(capture stop).
    - See C(docs/capture.md) of blkfleet for every field.
  returned: always
  type: dict
  sample:
    action: stop
    stopped: true
    state: stopped
    backend: ftrace
    mode: events
    devices:
      loop1:
        dev: "7,1"
        records: 12034
        queued: 12034
        bytes: 49291264
        drops: 0
    files: [loop1.blktrace.0, loop1.blktrace.1]
    queued: 12034
    drops: 0
    duration: 5.03
files:
  description: Absolute paths of the trace files written (O(state=stopped)).
  returned: when a capture summary exists
  type: list
  elements: str
  sample: [/var/lib/blkfleet/capture/loop1.blktrace.0, /var/lib/blkfleet/capture/loop1.blktrace.1]
file_info:
  description:
    - The trace files and C(capture.json), as the host has them after the stop (O(state=stopped), not in
      check mode), which a fetched copy must match.
  returned: when a capture summary exists
  type: list
  elements: dict
  contains:
    name:
      description: File name in O(output_dir).
      type: str
      sample: loop1.blktrace.0
    path:
      description: Absolute path on the host.
      type: str
      sample: /var/lib/blkfleet/capture/loop1.blktrace.0
    size:
      description: Size in bytes.
      type: int
      sample: 577632
    sha256:
      description: SHA-256 of the contents, hex.
      type: str
      sample: 9f2c0d0a51f0a4e3f8f4d2b5b8a1a5f1e0f6d9c2b7a4e8d1c3b5a7f9e1d3c5b7
queued:
  description: IOs captured (queue events over all devices) (O(state=stopped)).
  returned: when a capture summary exists
  type: int
  sample: 12034
drops:
  description: Events the kernel dropped (O(state=stopped)); more than V(0) means the trace is incomplete.
  returned: when a capture summary exists
  type: int
  sample: 0
backend:
  description: Backend that captures (V(blktrace) or V(ftrace)).
  returned: when known
  type: str
  sample: ftrace
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blkfleet.core.plugins.module_utils import _engine
from ansible_collections.blkfleet.core.plugins.module_utils._protocol import EngineError

BUSY_POLL = 2.0


def _summary_fields(module, command, doc, output_dir, describe=True):
    """files, queued and drops of a stop summary; with ``describe``, each file and capture.json as the engine
    describes it (``capture files``: name, path, size, sha256), for a verified copy."""
    result = dict(files=[os.path.join(output_dir, name) for name in doc.get('files') or []],
                  queued=doc.get('queued', 0), drops=doc.get('drops', 0))
    if describe:
        described = _engine.run(module, command, ['capture', 'files', '-D', output_dir] + _token_args(module.params),
                                capture=doc, **result)
        result['file_info'] = described['result']['files']
        result['files'] = [f['path'] for f in result['file_info'] if f['name'] != 'capture.json']
    return result


def _token_args(p):
    return ['--token', p['token']] if p['token'] else []


def start(module, command, output_dir):
    p = module.params
    if not p['devices']:
        module.fail_json(msg='devices is required with state=started')
    args = ['capture', 'start', '-D', output_dir, '--backend', p['backend'], '--mode', p['mode'],
            '-a', p['act_mask'], '-b', p['buffer_kb'], '-n', p['buffer_count']] + _token_args(p)
    for dev in p['devices']:
        args += ['-d', dev]
    if p['duration'] is not None:
        args += ['-w', repr(float(p['duration']))]
    if p['force']:
        args.append('--force')
    if module.check_mode:
        doc = _engine.run(module, command, args + ['--check'])['result']
        module.exit_json(changed=bool(doc.get('started')), state=doc.get('state'), output_dir=output_dir,
                         capture=doc, backend=doc.get('backend'))
    deadline = time.monotonic() + max(p['busy_timeout'], 0)
    while True:
        try:
            doc = _engine.call(module, command, args)['result']
            break
        except EngineError as e:
            if e.code != 'tracer_busy' or time.monotonic() >= deadline:
                _engine.fail(module, e)
        time.sleep(BUSY_POLL)
    module.exit_json(changed=bool(doc.get('started')), state=doc.get('state', 'running'), output_dir=output_dir,
                     capture=doc, backend=doc.get('backend'))


def stop(module, command, output_dir):
    p = module.params
    status = _engine.run(module, command, ['capture', 'status', '-D', output_dir])['result']
    if status.get('state') == 'none':
        module.exit_json(changed=False, state='none', output_dir=output_dir, capture=status)
    args = ['capture', 'stop', '-D', output_dir] + _token_args(p)
    if module.check_mode:
        doc = _engine.run(module, command, args + ['--check'])['result']
        result = dict(changed=bool(doc.get('stopped')), state=status.get('state'), output_dir=output_dir,
                      capture=doc, backend=doc.get('backend'))
        if doc.get('state') in ('stopped', 'failed', 'salvaged'):
            result.update(_summary_fields(module, command, doc, output_dir, describe=False))
        module.exit_json(**result)
    try:
        failure, doc = None, _engine.call(module, command, args)['result']
    except EngineError as e:
        failure, doc = e, e.result
        if doc is None:  # refused before stopping anything
            _engine.fail(module, e)
    result = dict(changed=bool(doc.get('stopped')), state=doc.get('state'), output_dir=output_dir, capture=doc,
                  backend=doc.get('backend'))
    result.update(_summary_fields(module, command, doc, output_dir, describe=failure is None))
    if failure is not None:
        _engine.fail(module, failure, **result)
    if p['fail_on_drops'] and (doc.get('drops') or doc.get('drop_reports')):
        module.fail_json(msg='the capture dropped %d events (%d reports): the trace is incomplete; use larger '
                             'buffers (buffer_kb, buffer_count) or fail_on_drops=false'
                             % (doc.get('drops') or 0, doc.get('drop_reports') or 0), **result)
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type='str', choices=['started', 'stopped'], default='started'),
            devices=dict(type='list', elements='str', default=[]),
            output_dir=dict(type='path', required=True),
            token=dict(type='str', no_log=False),  # a run id, not a secret
            backend=dict(type='str', choices=['auto', 'blktrace', 'ftrace'], default='auto'),
            mode=dict(type='str', choices=['auto', 'events', 'raw', 'pipe'], default='auto'),
            act_mask=dict(type='str', default='queue'),
            buffer_kb=dict(type='int', default=512),
            buffer_count=dict(type='int', default=8),
            duration=dict(type='float'),
            force=dict(type='bool', default=False),
            fail_on_drops=dict(type='bool', default=True),
            busy_timeout=dict(type='int', default=0),
            engine=dict(type='path'),
        ),
        supports_check_mode=True,
    )
    output_dir = os.path.abspath(module.params['output_dir'])
    command = _engine.find_engine(module, engine=module.params['engine'])
    if module.params['state'] == 'started':
        start(module, command, output_dir)
    else:
        stop(module, command, output_dir)


if __name__ == '__main__':
    main()

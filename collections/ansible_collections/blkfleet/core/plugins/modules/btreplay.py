#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: btreplay
short_description: Replay a pushed blkfleet bundle onto block devices and return the results
version_added: 0.1.0
description:
  - Runs the engine of a bundle pushed by M(blkfleet.core.replay_bundle) on the host,
    C(python3 ENGINE replay --bundle BUNDLE --json RESULTS ...). Per-CPU pinned workers issue every recorded
    IO at its recorded time (divided by O(acc_factor)) with direct IO.
  - Returns the results document (IOs and bytes by operation, IOPS, latency and lateness percentiles, errors)
    as RV(replay_results), and leaves it in O(results_path) on the host.
  - Without O(write_enable), recorded writes are replayed as reads of the same extents, and discards and
    flushes are skipped, so the devices are not modified.
  - A replay runs in the foreground for as long as the recorded workload (divided by O(acc_factor)); use
    C(async) with C(poll) for long ones.
author:
  - blkfleet developers (@blkfleet)
options:
  bundle:
    description:
      - Path on the host of the bundle file.
      - Mutually exclusive with O(bundle_id); one of them is required.
    type: path
  bundle_id:
    description:
      - Id of a bundle pushed by M(blkfleet.core.replay_bundle) (RV(blkfleet.core.replay_bundle#module:bundle_id)).
        The module replays C(BUNDLE_DIR/<bundle_id>.tar).
    type: str
  bundle_dir:
    description:
      - Directory of pushed bundles, where O(bundle_id) is looked up.
    type: path
    default: /var/lib/blkfleet/bundles
  devices:
    description:
      - Recorded devices to replay. The default, an empty list, replays every device of the bundle.
    type: list
    elements: str
    default: []
  device_map:
    description:
      - Where each recorded device is replayed, as C(RECORDED) to C(TARGET), TARGET a name under C(/dev) or an absolute
        path of a block device. A recorded device that is not mapped is replayed onto the device of the same
        name on the host.
    type: dict
    default: {}
  acc_factor:
    description:
      - Replay this many times faster (any positive number; V(0.5) replays twice slower).
    type: float
    default: 1.0
  no_stall:
    description:
      - Ignore the recorded times and issue the IOs in order as fast as the queue allows.
    type: bool
    default: false
  iterations:
    description:
      - How many times to replay the whole trace.
    type: int
    default: 1
  write_enable:
    description:
      - Really write (and discard, flush). B(This destroys the data of the target devices.)
      - The engine opens each target exclusively (C(O_EXCL)), so the kernel refuses a target that is mounted or in
        use, and takes a per-device lock, so a second writing replay of the same device fails at once. It also
        refuses a target that holds a filesystem, LVM, RAID or LUKS signature or a partition table, unless
        O(force).
    type: bool
    default: false
  force:
    description:
      - With O(write_enable), write even to a device whose signatures say it holds data (a filesystem, a
        partition table). A mounted or otherwise claimed device is never written.
    type: bool
    default: false
  start_at:
    description:
      - Wall-clock time at which the replay starts, seconds since the epoch or ISO 8601. Give every host the
        same value to start them together (their clocks should be synchronized). A time in the past starts at
        once, and RV(late_start_s) says by how much it was missed.
    type: str
  backend:
    description:
      - The IO engine, V(aio) (Linux native AIO), V(uring) (io_uring), V(sync) (one IO at a time per worker), V(auto).
    type: str
    choices: [aio, uring, sync, auto]
    default: aio
  realtime:
    description:
      - Run the workers as SCHED_FIFO while they are not busy all the time, so that kernel threads finishing IO
        (loop devices, some drivers) do not preempt them. V(auto) does so in timed mode when the engine may and
        a CPU is left to the kernel; V(on) fails where it may not.
    type: str
    choices: [auto, 'on', 'off']
    default: auto
  cpus:
    description:
      - Number of replay workers (recorded CPU streams are mapped onto them modulo this number). V(0) is one
        per recorded CPU, at most the CPUs available.
    type: int
    default: 0
  results_path:
    description:
      - Where to write the results JSON on the host. The default is
        C(/var/lib/blkfleet/results/<first 12 digits of the bundle id>-<UTC time>-<pid>.json).
    type: path
  engine:
    description:
      - Path on the host of the engine to run (C(engine.pyz) or a directory holding one).
      - The default is the bundle's own engine, installed by M(blkfleet.core.replay_bundle) under
        O(engine_root); failing that, the engine found like M(blkfleet.core.blktrace) does.
    type: path
  engine_root:
    description:
      - Directory under which engines are installed (C(<sha256>/engine.pyz)).
    type: path
    default: /var/lib/blkfleet/engine
  run_id:
    description:
      - Run the replay as a job with this ID (letters, digits, C(.), C(_), C(+), C(@), C(-); not starting with
        C(-)). The engine keeps C(/run/blkfleet/replay/<run_id>/) on the host, and M(blkfleet.core.replay_job) reads
        its state, renews its lease and stops it, also while this task runs in the background (C(async), C(poll=0)).
      - A second replay with the ID of a running one fails at once.
    type: str
  lease:
    description:
      - With O(run_id), seconds within which the lease must be renewed (M(blkfleet.core.replay_job)
        O(blkfleet.core.replay_job#module:state=renewed) or V(waited)); when it is not, the engine stops the replay
        by itself with partial results (exit 4). A replay whose controller went away (interrupted play, lost link)
        so stops writing. Without it the job runs to its end.
    type: float
extends_documentation_fragment:
  - blkfleet.core._attributes
  - blkfleet.core._attributes.ACTIONGROUP_BLKFLEET
  - blkfleet.core._attributes.PLATFORM_LINUX
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: none
  async:
    support: full
    details:
      - Use C(async) and C(poll) for replays longer than the connection's timeout; with C(poll=0), collect the
        result with M(ansible.builtin.async_status).
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Checks that the bundle and its engine are there and that the targets are block devices, replays
        nothing, and predicts RV(ignore:changed) from O(write_enable).
  diff_mode:
    support: none
notes:
  - Needs root (direct IO on block devices, CPU pinning).
  - RV(ignore:changed) is V(true) only when the replay wrote to a device (O(write_enable) and at least one write,
    discard, flush or write-zeroes IO issued), also when the task fails after it wrote (IO errors, an
    interrupted replay). A read-only replay modifies no device and reports V(false); its results file on the
    host is a report, like a command's output.
  - The task fails, with the engine's one-line message, when the engine rejects its input or set-up (exit 2),
    when IOs failed (exit 3; the results are in the failed result and in O(results_path)), when the lease
    expired (exit 4), when a worker died (exit 5) or when the replay was interrupted or stopped (exit 130);
    the partial results are returned in each case but the first.
seealso:
  - module: blkfleet.core.replay_bundle
  - name: btreplay(8)
    description: The C tool whose options this module follows.
    link: https://man7.org/linux/man-pages/man8/btreplay.8.html
'''

EXAMPLES = r'''
- name: Push the bundle
  blkfleet.core.replay_bundle:
    src: bundles/db1.bundle
  register: pushed

- name: Replay onto a scratch disk, four times faster, writes included
  blkfleet.core.btreplay:
    bundle_id: "{{ pushed.bundle_id }}"
    device_map:
      sdb: /dev/disk/by-id/nvme-scratch
    acc_factor: 4
    write_enable: true
  register: replay

- name: Start every target at the same instant, in the background
  blkfleet.core.btreplay:
    bundle_id: "{{ pushed.bundle_id }}"
    device_map: {sdb: vdc}
    start_at: "{{ replay_start_epoch }}"
    results_path: /var/tmp/replay-results.json
  async: 3600
  poll: 5
  register: replay

- name: Start a replay job that stops by itself unless its lease is renewed every 30 s
  blkfleet.core.btreplay:
    bundle_id: "{{ pushed.bundle_id }}"
    device_map: {sdb: vdc}
    run_id: nightly-42
    lease: 30
  async: 3600
  poll: 0
  register: replay_job

- name: Report
  ansible.builtin.debug:
    msg: "{{ replay.replay_results.total.ios }} IOs, p99 latency {{ replay.replay_results.total.latency_us.p99 }} us"
'''

RETURN = r'''
replay_results:
  description:
    - The results document of the replay, schema C(blkfleet-results/1) (C(engine/blkfleet/schemas/results.schema.json)).
      It holds the host, engine version, device map, mode, acceleration factor, per device and in total IOs and bytes by
      operation, skipped operations, duration, IOPS, MB/s, latency and lateness percentiles, late IOs, errors.
  returned: success, and on failure when the engine wrote them
  type: dict
  sample:
    schema: blkfleet-results/1
    host: target1
    started: "2026-11-26T06:10:00.123+00:00"
    bundle_id: 3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d
    device_map: {loop1: /dev/loop2}
    total:
      ios: 12034
      errors: {count: 0, first: null}
results_path:
  description: Where the results JSON is on the host.
  returned: success, and on failure when the engine wrote them
  type: str
  sample: /var/lib/blkfleet/results/3b9c1c0e5f0e-20261126T061000Z-4242.json
bundle:
  description: Path of the bundle replayed.
  returned: always
  type: str
  sample: /var/lib/blkfleet/bundles/3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d.tar
bundle_id:
  description: Id of the bundle replayed.
  returned: always
  type: str
  sample: 3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d
engine:
  description: Path of the engine that ran the replay (or its command, when it is not a zipapp).
  returned: always
  type: str
  sample: /var/lib/blkfleet/engine/f75152aff6f6751b6e2d024de69d022dda50a48ac2d0df90fde85eccfeb3c8fb/engine.pyz
cmd:
  description: The engine command line.
  returned: always
  type: list
  elements: str
summary:
  description: The engine's human summary lines (its standard error).
  returned: when the engine ran
  type: list
  elements: str
  sample: ["blkfleet replay: 12034 IOs in 5.012 s (2401 IOPS, 9.8 MB/s), mode timed, x1.0, engine aio"]
late_start_s:
  description: With O(start_at), how many seconds in the past the start time already was when the workers were
    ready (they then started at once); V(0.0) when the start was on time.
  returned: when the engine ran with O(start_at)
  type: float
  sample: 0.0
wall_start:
  description: Wall-clock time (seconds since the epoch) at which the module launched the engine.
  returned: when the engine ran
  type: float
  sample: 1795680600.123
run_id:
  description: The job ID the replay ran under.
  returned: with O(run_id)
  type: str
  sample: nightly-42
wall_end:
  description: Wall-clock time (seconds since the epoch) at which the engine exited.
  returned: when the engine ran
  type: float
  sample: 1795680605.456
'''

import datetime
import json
import os
import re
import stat
import sys
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blkfleet.core.plugins.module_utils import _engine, _install, _names

RESULTS_DIR = '/var/lib/blkfleet/results'
LATE_RE = re.compile(r'start time is ([0-9.]+) s in the past')
WRITE_OPS = ('write', 'discard', 'flush', 'write_zeroes')


def _target_path(target):
    return target if target.startswith('/') else os.path.join('/dev', target)


def _check_targets(module, device_map):
    for recorded, target in device_map.items():
        path = _target_path(str(target))
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            module.fail_json(msg='device_map %s: %s: %s' % (recorded, path, e.strerror))
        if not stat.S_ISBLK(mode):
            module.fail_json(msg='device_map %s: %s is not a block device' % (recorded, path))


def _wrote(results):
    devices = results.get('devices') if isinstance(results, dict) else None
    for dev in (devices.values() if isinstance(devices, dict) else ()):
        by_op = dev.get('by_op') if isinstance(dev, dict) else None
        for op, tally in (by_op.items() if isinstance(by_op, dict) else ()):
            if op in WRITE_OPS and isinstance(tally, dict) and tally.get('ios'):
                return True
    return False


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bundle=dict(type='path'),
            bundle_id=dict(type='str'),
            bundle_dir=dict(type='path', default=_install.BUNDLE_DIR),
            devices=dict(type='list', elements='str', default=[]),
            device_map=dict(type='dict', default={}),
            acc_factor=dict(type='float', default=1.0),
            no_stall=dict(type='bool', default=False),
            iterations=dict(type='int', default=1),
            write_enable=dict(type='bool', default=False),
            force=dict(type='bool', default=False),
            start_at=dict(type='str'),
            backend=dict(type='str', choices=['aio', 'uring', 'sync', 'auto'], default='aio'),
            realtime=dict(type='str', choices=['auto', 'on', 'off'], default='auto'),
            cpus=dict(type='int', default=0),
            results_path=dict(type='path'),
            engine=dict(type='path'),
            engine_root=dict(type='path', default=_install.ENGINE_ROOT),
            run_id=dict(type='str'),
            lease=dict(type='float'),
        ),
        mutually_exclusive=[('bundle', 'bundle_id')],
        required_one_of=[('bundle', 'bundle_id')],
        required_by={'lease': 'run_id'},
        supports_check_mode=True,
    )
    p = module.params
    problems = _names.device_problems(p['devices'], p['device_map'])
    if p['run_id'] is not None and _names.name_problem(p['run_id']):
        problems.append('invalid run_id %r: %s' % (p['run_id'], _names.name_problem(p['run_id'])))
    if p['lease'] is not None and not 0 < p['lease'] < float('inf'):
        problems.append('lease must be a number of seconds > 0, not %r' % p['lease'])
    if problems:
        module.fail_json(msg='; '.join(problems))
    try:
        bundle = p['bundle'] or _install.bundle_path(p['bundle_id'], p['bundle_dir'])
        manifest = _install.read_manifest(bundle)
    except _install.InstallError as e:
        module.fail_json(msg=str(e))
    bundle_id = manifest['bundle_id']
    if p['bundle_id'] and p['bundle_id'] != bundle_id:
        module.fail_json(msg='%s holds bundle %s, not %s' % (bundle, bundle_id, p['bundle_id']))
    if p['engine']:
        command = _engine.find_engine(module, engine=p['engine'])
    else:
        own = _install.engine_path(manifest['engine']['sha256'], p['engine_root'])
        if os.path.isfile(own):
            command = [sys.executable, own]
        else:
            command = _engine.find_engine(module, root=p['engine_root'])
    engine = command[1] if len(command) == 2 and command[1].endswith('.pyz') else ' '.join(command)
    result = dict(changed=False, bundle=bundle, bundle_id=bundle_id, engine=engine)
    _check_targets(module, p['device_map'])

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    default_name = '%s-%s-%d.json' % (bundle_id[:12], stamp, os.getpid())
    results_path = p['results_path'] or os.path.join(RESULTS_DIR, default_name)
    args = ['replay', '--bundle', bundle, '--json', results_path, '-x', repr(float(p['acc_factor'])),
            '-I', p['iterations'], '--backend', p['backend'], '-c', p['cpus']]
    if p['realtime'] != 'auto':  # the default needs no flag, so engines older than the option still run
        args += ['--realtime', p['realtime']]
    if p['device_map']:
        map_file = os.path.join(module.tmpdir, 'device-map')
        with open(map_file, 'w') as f:
            for recorded, target in sorted(p['device_map'].items()):
                f.write('%s %s\n' % (recorded, target))
        args += ['-M', map_file]
    if p['no_stall']:
        args.append('-N')
    if p['write_enable']:
        args.append('-W')
    if p['force']:
        args.append('--force')
    if p['start_at']:
        args += ['--start-at', p['start_at']]
    if p['run_id'] is not None:
        args += ['--run-id', p['run_id']]
        result['run_id'] = p['run_id']
    if p['lease'] is not None:
        args += ['--lease', repr(float(p['lease']))]
    args += ['--'] + list(p['devices'])
    argv = list(command) + [str(a) for a in args]
    result['cmd'] = argv

    if module.check_mode:
        rc, out, err = module.run_command(list(command) + ['bundle', 'info', '--', bundle])
        if rc != 0:
            module.fail_json(msg=_engine.engine_error(err, rc), **result)
        result['changed'] = bool(p['write_enable'])
        module.exit_json(**result)

    directory = os.path.dirname(results_path)
    if directory:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            module.fail_json(msg='cannot create %s: %s' % (directory, e.strerror), **result)
    _remove(results_path)
    wall_start = time.time()
    rc, out, err = module.run_command(argv)
    wall_end = time.time()
    result.update(summary=[line for line in (err or '').splitlines() if line.strip()], wall_start=wall_start,
                  wall_end=wall_end)
    if p['start_at']:
        late = LATE_RE.search(err or '')
        result['late_start_s'] = float(late.group(1)) if late else 0.0
    results = None
    if os.path.isfile(results_path):
        try:
            with open(results_path) as f:
                results = json.load(f)
        except (OSError, ValueError) as e:
            module.fail_json(msg='cannot read the results %s: %s' % (results_path, e), rc=rc, stderr=err, **result)
        result.update(replay_results=results, results_path=results_path)
    # A failed run (IO errors, exit 3; interrupted, 130) may have written before it failed: that is a change.
    result['changed'] = bool(p['write_enable']) and (_wrote(results) if results is not None else rc not in (0, 2))
    if rc != 0:
        module.fail_json(msg=_engine.engine_error(err, rc), rc=rc, stderr=err, **result)
    if results is None:
        module.fail_json(msg='the engine wrote no results to %s' % results_path, rc=rc, stderr=err, **result)
    module.exit_json(**result)


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


if __name__ == '__main__':
    main()

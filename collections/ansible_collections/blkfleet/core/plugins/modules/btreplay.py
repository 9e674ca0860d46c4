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
      - The bundle, as the one O(bundle_id) names, must be a file nobody but root can change, in directories nobody
        else can change (a sticky one such as C(/tmp) may hold it) and not reached through another user's link.
        The module refuses any other, since what it holds is replayed as root.
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
      - Replay this many times faster (any finite number > 0; V(0.5) replays twice slower).
    type: float
    default: 1.0
  no_stall:
    description:
      - Ignore the recorded times and issue the IOs in order as fast as the queue allows (timed mode only).
    type: bool
    default: false
  mode:
    description:
      - How each IO's moment is chosen (C(blkfleet replay --mode)).
      - V(timed) at its recorded time (divided by O(acc_factor); with O(no_stall) as fast as possible).
      - V(load) in trace order, once fewer IOs of its device are in flight than when it was recorded.
      - V(dependency) once the IOs it depended on (found at record time) completed, plus its recorded think
        time divided by O(acc_factor); IOs without such parents keep their recorded distance from the IO before.
      - V(load) and V(dependency) need a bundle of replay files recorded from a capture with completions
        (native format version 2) and run one worker (O(cpus) 0 or 1). The results store keeps the mode as part
        of the run, and a baseline never mixes modes.
    type: str
    choices: [timed, load, dependency]
    default: timed
  iterations:
    description:
      - How many times to replay the whole trace (at least V(1)).
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
      - Wall-clock time at which the replay starts, seconds since the epoch or ISO 8601. A time in the past starts
        at once, and RV(late_start_s) says by how much it was missed.
      - To start several hosts together, prefer O(arm), which needs no guess of how long the hosts take to get
        ready. Mutually exclusive with O(arm).
    type: str
  arm:
    description:
      - The two-phase start of a fleet, with O(run_id). The engine reads the bundle, checks and opens the targets,
        starts its workers pinned to their CPUs, reports C(armed) (M(blkfleet.core.replay_job)
        O(blkfleet.core.replay_job#module:state=armed)) and waits at most this many seconds for its start instant
        (M(blkfleet.core.replay_job) O(blkfleet.core.replay_job#module:state=started)). Without one it ends, having
        replayed nothing (exit 4, error code C(not_started)).
      - The lease (O(lease)) counts from the start; while armed, this wait bounds the engine.
      - The role M(blkfleet.core.replay) arms every target, then starts them all at one instant a short margin
        after the last one armed.
    type: float
  ioengine:
    description:
      - The IO engine, V(aio) (Linux native AIO), V(uring) (io_uring), V(sync) (one IO at a time per worker), V(auto).
    type: str
    choices: [aio, uring, sync, auto]
    default: aio
    aliases: [backend]
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
        per recorded CPU, at most the CPUs available; any other number must be at most the CPUs available.
    type: int
    default: 0
  results_path:
    description:
      - Where to write the results JSON on the host. The default is
        C(/var/lib/blkfleet/results/<first 12 digits of the bundle id>-<UTC time>-<pid>.json).
      - The engine makes its directory, and refuses one on a path that anyone but root could change or redirect
        (a sticky directory such as C(/var/tmp) may hold it).
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
      - Checks that the bundle and its engine are there (C(bundle info)) and that the targets are block devices
        (C(device info)), replays nothing, and predicts RV(ignore:changed) from O(write_enable).
  diff_mode:
    support: none
notes:
  - Needs root (direct IO on block devices, CPU pinning).
  - RV(ignore:changed) is V(true) only when the replay wrote to a device (O(write_enable) and at least one write,
    discard, flush or write-zeroes IO issued), also when the task fails after it wrote (IO errors, an
    interrupted replay). A read-only replay modifies no device and reports V(false); its results file on the
    host is a report, like a command's output.
  - The module runs the engine through its protocol (C(--json -)). The task fails, with the engine's one-line
    message and its error object (RV(error)), when the engine rejects its input or set-up (exit 2, error codes
    such as C(invalid_input), C(not_found), C(target_refused)), when IOs failed (exit 3, C(io_errors); the results
    are in the failed result and in O(results_path)), when the lease expired or no start came while armed (exit
    4, C(lease_expired), C(not_started)), when a worker died (exit 5, C(worker_failed)) or when the replay was
    interrupted or stopped (exit 130, C(interrupted)); the partial results are returned with the three run-time
    failures.
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
error:
  description: The engine's error object (C(code), C(message), ...), see C(docs/protocol.md) of blkfleet.
  returned: when the engine failed
  type: dict
  sample:
    code: target_refused
    message: "/dev/loop2: refusing to write: it holds an ext2/3/4 filesystem (use --force to write anyway)"
late_start_s:
  description: With O(start_at) or O(arm), how many seconds after the requested start instant the workers started
    (the start time was already past when they were ready, or when it reached an armed engine); V(0.0) when the
    start was on time. From the results' C(start.requested) and C(start.wall).
  returned: when the engine ran with O(start_at) or O(arm)
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
import math
import os
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blkfleet.core.plugins.module_utils import _engine
from ansible_collections.blkfleet.core.plugins.module_utils._install import (
    BUNDLE_DIR,
    InstallError,
    bundle_path,
    check_sha256,
    trusted_file,
)
from ansible_collections.blkfleet.core.plugins.module_utils._protocol import EngineError

RESULTS_DIR = '/var/lib/blkfleet/results'
WRITE_OPS = ('write', 'discard', 'flush', 'write_zeroes')
# One word of the engine's device map file, which this module writes (the engine checks the names themselves).
MAP_WORD_RE = re.compile(r'^[^\s#]+$')


def _wrote(results):
    devices = results.get('devices') if isinstance(results, dict) else None
    for dev in (devices.values() if isinstance(devices, dict) else ()):
        by_op = dev.get('by_op') if isinstance(dev, dict) else None
        for op, tally in (by_op.items() if isinstance(by_op, dict) else ()):
            if op in WRITE_OPS and isinstance(tally, dict) and tally.get('ios'):
                return True
    return False


def _late_start(results):
    """How late the workers started after the requested start instant (0.0 when on time), from the results."""
    start = (results or {}).get('start') or {}
    if start.get('requested') is None or start.get('wall') is None:
        return None
    return round(max(start['wall'] - float(start['requested']), 0.0), 6)


def _numbers_problem(p):
    """What the engine's replay refuses among the numbers (its option checks and ``replay.run.validate``), or None.
    Checked here too because check mode does not run the replay and must predict the same failure."""
    positive = [('acc_factor', p['acc_factor'])] + [(k, p[k]) for k in ('lease', 'arm') if p[k] is not None]
    for name, value in positive:
        if not (math.isfinite(value) and value > 0):
            return '%s must be a number > 0, not %r' % (name, value)
    if p['iterations'] < 1:
        return 'iterations must be >= 1, not %d' % p['iterations']
    ncpus = len(os.sched_getaffinity(0))
    if p['cpus'] and not 0 < p['cpus'] <= ncpus:
        return 'cpus must be 0 (one worker per recorded CPU) or 1..%d (the CPUs available), not %d' % (ncpus, p['cpus'])
    return None


def _engine_of(module, p, bundle):
    """(argv prefix of the engine to run, the bundle's manifest): the bundle's own engine when it is installed (and,
    like any engine, only from a place nobody else can change)."""
    if p['engine']:
        command = _engine.find_engine(module, engine=p['engine'])
        return command, _engine.run(module, command, ['bundle', 'info', '--', bundle])['result']
    command = _engine.find_engine(module, root=p['engine_root'])
    manifest = _engine.run(module, command, ['bundle', 'info', '--', bundle])['result']
    sha256 = manifest['engine']['sha256']
    if os.path.isfile(os.path.join(p['engine_root'], sha256, _engine.ENGINE_NAME)):
        command = _engine.find_engine(module, sha256=sha256, root=p['engine_root'])
    return command, manifest


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bundle=dict(type='path'),
            bundle_id=dict(type='str'),
            bundle_dir=dict(type='path', default=BUNDLE_DIR),
            devices=dict(type='list', elements='str', default=[]),
            device_map=dict(type='dict', default={}),
            acc_factor=dict(type='float', default=1.0),
            no_stall=dict(type='bool', default=False),
            mode=dict(type='str', choices=['timed', 'load', 'dependency'], default='timed'),
            iterations=dict(type='int', default=1),
            write_enable=dict(type='bool', default=False),
            force=dict(type='bool', default=False),
            start_at=dict(type='str'),
            arm=dict(type='float'),
            ioengine=dict(type='str', choices=['aio', 'uring', 'sync', 'auto'], default='aio', aliases=['backend']),
            realtime=dict(type='str', choices=['auto', 'on', 'off'], default='auto'),
            cpus=dict(type='int', default=0),
            results_path=dict(type='path'),
            engine=dict(type='path'),
            engine_root=dict(type='path', default=_engine.ENGINE_ROOT),
            run_id=dict(type='str'),
            lease=dict(type='float'),
        ),
        mutually_exclusive=[('bundle', 'bundle_id'), ('start_at', 'arm')],
        required_one_of=[('bundle', 'bundle_id')],
        required_by={'lease': 'run_id', 'arm': 'run_id'},
        supports_check_mode=True,
    )
    p = module.params
    problem = _numbers_problem(p)
    if problem:
        module.fail_json(msg=problem)
    if p['mode'] != 'timed' and (p['no_stall'] or p['cpus'] > 1):
        module.fail_json(msg='mode %s sets its own pace on one worker: no_stall and cpus > 1 are for the timed mode'
                         % p['mode'])
    for recorded, target in sorted(p['device_map'].items()):
        if not (MAP_WORD_RE.match(str(recorded)) and MAP_WORD_RE.match(str(target))):
            module.fail_json(msg='device_map: %r: %r: names and paths are one word each, without whitespace or "#"'
                             % (recorded, target))
    try:
        bundle = p['bundle'] or bundle_path(check_sha256(p['bundle_id'], 'bundle_id'), p['bundle_dir'])
        if os.path.lexists(bundle):  # what it holds is replayed as root (with write_enable, written)
            bundle = trusted_file(bundle)
    except InstallError as e:
        module.fail_json(msg=str(e))
    command, manifest = _engine_of(module, p, bundle)
    bundle_id = manifest['bundle_id']
    if p['bundle_id'] and p['bundle_id'] != bundle_id:
        module.fail_json(msg='%s holds bundle %s, not %s' % (bundle, bundle_id, p['bundle_id']))
    engine = command[1] if len(command) == 2 and command[1].endswith('.pyz') else ' '.join(command)
    result = dict(changed=False, bundle=bundle, bundle_id=bundle_id, engine=engine)
    if p['device_map']:  # every target must be a block device (the engine's device info says, as it sees them)
        _engine.run(module, command, ['device', 'info', '--probe', 'none', '--'] + list(p['device_map'].values()),
                    **result)

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    default_name = '%s-%s-%d.json' % (bundle_id[:12], stamp, os.getpid())
    results_path = p['results_path'] or os.path.join(RESULTS_DIR, default_name)
    args = ['replay', '--bundle', bundle, '--json', results_path, '-x', repr(float(p['acc_factor'])),
            '-I', p['iterations'], '--backend', p['ioengine'], '-c', p['cpus']]
    if p['realtime'] != 'auto':
        args += ['--realtime', p['realtime']]
    if p['device_map']:
        map_file = os.path.join(module.tmpdir, 'device-map')
        with open(map_file, 'w') as f:
            for recorded, target in sorted(p['device_map'].items()):
                f.write('%s %s\n' % (recorded, target))
        args += ['-M', map_file]
    if p['no_stall']:
        args.append('-N')
    if p['mode'] != 'timed':
        args += ['--mode', p['mode']]
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
    if p['arm'] is not None:
        args += ['--arm', repr(float(p['arm']))]
    args += ['--'] + list(p['devices'])
    result['cmd'] = list(command) + [str(a) for a in args]

    if module.check_mode:
        result['changed'] = bool(p['write_enable'])
        module.exit_json(**result)

    _remove(results_path)
    wall_start = time.time()
    summary = []
    try:
        failure, doc = None, _engine.call(module, command, args, stderr=summary)
    except EngineError as e:
        failure, doc = e, e.document
    result.update(wall_start=wall_start, wall_end=time.time(), summary=summary)
    results = (doc or {}).get('result')
    if results is not None:
        result.update(replay_results=results, results_path=results_path)
        if p['start_at'] or p['arm'] is not None:
            result['late_start_s'] = _late_start(results)
    # A failed run (IO errors, interrupted) may have written before it failed: that is a change.
    result['changed'] = bool(p['write_enable']) and (_wrote(results) if results is not None else
                                                     failure is not None and failure.rc not in (0, 2))
    if failure is not None:
        _engine.fail(module, failure, **result)
    module.exit_json(**result)


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


if __name__ == '__main__':
    main()

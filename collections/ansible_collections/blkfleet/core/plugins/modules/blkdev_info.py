#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: blkdev_info
short_description: Facts about block devices, CPUs, kernel block tracing, Linux AIO and io_uring
version_added: 0.1.0
description:
  - Reports what blkfleet needs to know about a Linux host before it captures or replays block IO.
  - For each block device, its size, block sizes, queue settings, whether it is read-only, mounted, used as swap
    or held by another device, its partitions and holders, and what it holds (a filesystem, another signature or
    a partition table).
  - The CPUs online, which the replay engine pins its per-CPU workers to.
  - Kernel tracing support, whether blktrace's debugfs relay files are usable (kernel lockdown refuses them) or
    the ftrace C(blk) tracer can be used instead.
  - Whether Linux native AIO and io_uring are available.
  - Reads C(/sys), C(/proc) and, for the content probe, the blocks of each device where signatures lie. Never
    writes.
  - Runs C(blkfleet device info) of the engine on the host, which must be installed first (M(blkfleet.core.engine)).
author:
  - blkfleet developers (@blkfleet)
options:
  devices:
    description:
      - Block devices to report, as kernel names (V(loop0), V(sda1)) or paths under C(/dev), symlinks such as
        C(/dev/disk/by-id/...) and C(/dev/mapper/...) included.
      - The default, an empty list, reports every whole device in C(/sys/block).
      - The module fails if a listed device does not exist.
    type: list
    elements: str
    default: []
  include_empty:
    description:
      - When listing every device (O(devices) empty), also report devices whose size is zero, such as unattached
        loop devices. Listed devices are always reported.
    type: bool
    default: false
  include_partitions:
    description:
      - When listing every device (O(devices) empty), also report each partition as a device of its own.
        Partitions are always named in their disk's RV(devices[].partitions).
    type: bool
    default: false
  content_probe:
    description:
      - How to find out what a device holds; the probes are the ones C(blkfleet replay -W) uses before it writes
        to a target.
      - V(blkid) runs C(blkid -p) (low-level probe, no cache); it needs util-linux's C(blkid).
      - V(superblock) reads, with direct IO, only the blocks where known signatures lie (ext2/3/4, xfs, btrfs,
        f2fs, ntfs, exfat, vfat, squashfs, iso9660, swap, LUKS, MD RAID, LVM2, bcache, Ceph BlueStore; GPT and DOS
        partition tables).
      - V(auto) uses V(blkid) when it is installed, else V(superblock).
      - V(none) skips the probe; RV(devices[].content.method) is then V(none).
      - Both probes need read access to the device, normally root.
    type: str
    choices: [auto, blkid, superblock, none]
    default: auto
  engine:
    description:
      - Path on the host of the engine, C(engine.pyz) or a directory holding one, as installed by
        M(blkfleet.core.engine) (RV(blkfleet.core.engine#module:path)).
      - The default is the most recently installed engine under O(engine_root), else a C(blkfleet) program on
        E(PATH), else C(python3 -m blkfleet).
    type: path
  engine_root:
    description:
      - Directory under which engines are installed (C(<sha256>/engine.pyz)).
    type: path
    default: /var/lib/blkfleet/engine
extends_documentation_fragment:
  - blkfleet.core._attributes
  - blkfleet.core._attributes.INFO_MODULE
  - blkfleet.core._attributes.ACTIONGROUP_BLKFLEET
  - blkfleet.core._attributes.PLATFORM_LINUX
notes:
  - The blktrace relay is reported as not allowed under kernel lockdown V(integrity) or V(confidentiality), because
    the kernel then refuses debugfs relay files with EPERM. This is derived from
    C(/sys/kernel/security/lockdown), not tried.
  - AIO and io_uring availability come from C(/proc/sys) and from opening the replay's own IO engines (an AIO
    context and an io_uring of one entry, closed at once).
seealso:
  - name: blktrace(8)
    description: The block layer IO tracing tool.
    link: https://man7.org/linux/man-pages/man8/blktrace.8.html
  - name: kernel_lockdown(7)
    description: What kernel lockdown restricts.
    link: https://man7.org/linux/man-pages/man7/kernel_lockdown.7.html
'''

EXAMPLES = r'''
- name: Install the engine, which reads the facts
  blkfleet.core.engine:
  register: engine

- name: Gather facts about every block device of the host
  blkfleet.core.blkdev_info:
    engine: "{{ engine.path }}"
  register: blk

- name: Report one loop device and a disk by id, reading their signatures with blkid
  blkfleet.core.blkdev_info:
    devices:
      - loop0
      - /dev/disk/by-id/virtio-data
    content_probe: blkid
  register: blk

- name: Refuse to replay writes onto a device that is in use
  ansible.builtin.assert:
    that:
      - not blk.devices['loop0'].in_use
      - blk.devices['loop0'].content.type is none
    fail_msg: loop0 is mounted, held or holds data

- name: Pick the capture backend the kernel allows
  ansible.builtin.set_fact:
    capture_backend: "{{ blk.tracing.recommended_backend }}"
'''

RETURN = r'''
devices:
  description: Facts about each reported block device, keyed by kernel name.
  returned: always
  type: dict
  sample:
    loop0:
      name: loop0
      path: /dev/loop0
      dev: "7:0"
      type: loop
      parent: null
      size_bytes: 67108864
      size_sectors: 131072
      logical_block_size: 512
      physical_block_size: 512
      minimum_io_size: 512
      optimal_io_size: 0
      max_sectors_kb: 1280
      nr_requests: 128
      rotational: false
      scheduler: none
      schedulers: [none, mq-deadline]
      discard: true
      zoned: none
      read_only: false
      removable: false
      model: null
      mounted: false
      mountpoints: []
      swap: false
      in_use: false
      partitions: []
      holders: []
      slaves: []
      trace_enable: true
      loop:
        backing_file: /dev/shm/disk.img
        offset: 0
        sizelimit: 0
        autoclear: false
        direct_io: false
        read_only: false
      content:
        method: blkid
        type: null
        usage: null
        uuid: null
        label: null
        partition_table: null
        error: null
      has_filesystem: false
      has_partition_table: false
  contains:
    name:
      description: Kernel name of the device.
      type: str
    path:
      description: Device node path.
      type: str
    dev:
      description: Major and minor numbers, C(MAJ:MIN).
      type: str
    type:
      description: V(partition), V(loop), V(dm), V(md), V(nvme), V(zram), V(nbd), V(rom), V(ram) or V(disk).
      type: str
    parent:
      description: For a partition, the whole disk it belongs to; V(null) otherwise.
      type: str
    size_bytes:
      description: Size in bytes.
      type: int
    size_sectors:
      description: Size in 512-byte sectors, as the kernel counts it.
      type: int
    logical_block_size:
      description: Logical block size in bytes; direct IO must be aligned to it.
      type: int
    physical_block_size:
      description: Physical block size in bytes.
      type: int
    minimum_io_size:
      description: Minimum IO size in bytes.
      type: int
    optimal_io_size:
      description: Optimal IO size in bytes, V(0) if not reported.
      type: int
    max_sectors_kb:
      description: Largest request the block layer issues, in KiB.
      type: int
    nr_requests:
      description: Queue depth of the block layer.
      type: int
    rotational:
      description: Whether the device reports itself as rotational.
      type: bool
    scheduler:
      description: Active IO scheduler, V(null) if the device has none.
      type: str
    schedulers:
      description: IO schedulers available for the device.
      type: list
      elements: str
    discard:
      description: Whether the device accepts discards.
      type: bool
    zoned:
      description: Zoned model (V(none), V(host-aware), V(host-managed)).
      type: str
    read_only:
      description: Whether the kernel marks the device read-only.
      type: bool
    removable:
      description: Whether the device is removable.
      type: bool
    model:
      description: Model string of the hardware, if any.
      type: str
    mounted:
      description: Whether the device itself is mounted.
      type: bool
    mountpoints:
      description: Where the device is mounted, from C(/proc/self/mountinfo), matched by major and minor.
      type: list
      elements: str
    swap:
      description: Whether the device is an active swap area.
      type: bool
    in_use:
      description: The device or one of its partitions is mounted, used as swap or held by another device.
      type: bool
    partitions:
      description: Kernel names of the device's partitions.
      type: list
      elements: str
    holders:
      description: Devices built on this one (device mapper, MD RAID, ...), from C(/sys/class/block/DEV/holders).
      type: list
      elements: str
    slaves:
      description: Devices this one is built on.
      type: list
      elements: str
    trace_enable:
      description: Whether C(/sys/block/DEV/trace/enable) exists, which the ftrace C(blk) tracer needs.
      type: bool
    loop:
      description: For a loop device, its backing file and settings; V(null) otherwise.
      type: dict
    content:
      description: What the device holds.
      type: dict
      contains:
        method:
          description:
            - V(blkid) or V(superblock), the probe used.
            - V(mountinfo) when the probe could not read a mounted device; the type is then the mounted
              filesystem's, from C(/proc/self/mountinfo).
            - V(none) when not probed or the probe failed.
          type: str
        type:
          description: Signature found (V(ext4), V(xfs), V(swap), V(LVM2_member), ...), V(null) if none.
          type: str
        usage:
          description: blkid's usage class of the signature (V(filesystem), V(raid), V(crypto), V(other)).
          type: str
        uuid:
          description: UUID of the signature (blkid only).
          type: str
        label:
          description: Label of the filesystem (blkid only).
          type: str
        partition_table:
          description: Partition table type (V(gpt), V(dos), ...), V(null) if none.
          type: str
        error:
          description: Why the probe failed, V(null) if it did not.
          type: str
    has_filesystem:
      description: Whether the device holds a filesystem signature (usage V(filesystem)).
      type: bool
    has_partition_table:
      description: Whether the device holds a partition table.
      type: bool
cpus:
  description: CPUs of the host.
  returned: always
  type: dict
  sample:
    online: [0, 1]
    online_count: 2
    present: [0, 1]
    possible: [0, 1]
    affinity: [0, 1]
  contains:
    online:
      description: CPUs online, from C(/sys/devices/system/cpu/online).
      type: list
      elements: int
    online_count:
      description: Number of CPUs online.
      type: int
    present:
      description: CPUs present.
      type: list
      elements: int
    possible:
      description: CPUs possible.
      type: list
      elements: int
    affinity:
      description: CPUs the module process may run on.
      type: list
      elements: int
tracing:
  description: Kernel block IO tracing support.
  returned: always
  type: dict
  sample:
    tracefs: {mounted: true, path: /sys/kernel/tracing, mountable: true}
    debugfs: {mounted: true, mountable: true}
    available_tracers: [blk, function, nop]
    current_tracer: nop
    blk_tracer: true
    lockdown: integrity
    blktrace_relay_allowed: false
    blktrace_program: /usr/sbin/blktrace
    blktrace_usable: false
    blktrace_reasons: ["kernel lockdown 'integrity' refuses debugfs relay files (EPERM)"]
    ftrace_usable: true
    ftrace_reasons: []
    recommended_backend: ftrace
  contains:
    tracefs:
      description: Whether tracefs is mounted, where, and whether the kernel knows the tracefs type.
      type: dict
    debugfs:
      description: Whether debugfs is mounted at C(/sys/kernel/debug) and whether the kernel knows it.
      type: dict
    available_tracers:
      description: Content of tracefs C(available_tracers).
      type: list
      elements: str
    current_tracer:
      description: Content of tracefs C(current_tracer); the tracer is global to the machine.
      type: str
    blk_tracer:
      description: Whether the C(blk) tracer is available.
      type: bool
    lockdown:
      description: Kernel lockdown mode (V(none), V(integrity), V(confidentiality)), V(null) if unknown.
      type: str
    blktrace_relay_allowed:
      description: Whether the kernel allows blktrace's debugfs relay files.
      type: bool
    blktrace_program:
      description: Path of the blktrace program, V(null) if not installed.
      type: str
    blktrace_usable:
      description: Whether the C(blktrace) capture backend can run (relay allowed and program installed).
      type: bool
    blktrace_reasons:
      description: Why the C(blktrace) backend cannot run.
      type: list
      elements: str
    ftrace_usable:
      description: Whether the C(ftrace) capture backend can run now.
      type: bool
    ftrace_reasons:
      description: Why the C(ftrace) backend cannot run now.
      type: list
      elements: str
    recommended_backend:
      description: V(blktrace) when usable, else V(ftrace) when usable, else V(null).
      type: str
aio:
  description: Linux native AIO.
  returned: always
  type: dict
  sample: {available: true, max_nr: 65536, nr: 0, free: 65536, syscall: supported}
  contains:
    available:
      description: Whether native AIO can be used.
      type: bool
    max_nr:
      description: C(/proc/sys/fs/aio-max-nr), V(null) without AIO support.
      type: int
    nr:
      description: C(/proc/sys/fs/aio-nr), AIO events in use.
      type: int
    free:
      description: AIO events still available (max_nr - nr).
      type: int
    syscall:
      description: >-
        Result of opening an AIO context: V(supported), V(disabled) (EPERM), V(not_implemented) (ENOSYS),
        V(unknown) (another error), or V(null) when the engine knows no system call numbers for this machine.
      type: str
io_uring:
  description: Linux io_uring.
  returned: always
  type: dict
  sample: {available: true, disabled_sysctl: 0, group: -1, syscall: supported}
  contains:
    available:
      description: Whether io_uring can be used by the module's user.
      type: bool
    disabled_sysctl:
      description: >-
        C(/proc/sys/kernel/io_uring_disabled): V(0) enabled, V(1) only for C(io_uring_group) members and
        privileged processes, V(2) disabled; V(null) on kernels without the setting.
      type: int
    group:
      description: C(/proc/sys/kernel/io_uring_group), V(null) if absent.
      type: int
    syscall:
      description: Result of opening an io_uring, as for RV(aio.syscall).
      type: str
kernel:
  description: The running kernel.
  returned: always
  type: dict
  sample: {release: 6.1.0-27-amd64, machine: x86_64}
  contains:
    release:
      description: Kernel release (C(uname -r)).
      type: str
    machine:
      description: Machine hardware name (C(uname -m)).
      type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blkfleet.core.plugins.module_utils import _engine

# content_probe -> the engine's --probe; the engine's name of a probe -> the content method this module returns
PROBES = {'auto': 'auto', 'blkid': 'blkid', 'superblock': 'internal', 'none': 'none'}
METHODS = {'internal': 'superblock'}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            devices=dict(type='list', elements='str', default=[]),
            include_empty=dict(type='bool', default=False),
            include_partitions=dict(type='bool', default=False),
            content_probe=dict(type='str', default='auto', choices=['auto', 'blkid', 'superblock', 'none']),
            engine=dict(type='path'),
            engine_root=dict(type='path', default=_engine.ENGINE_ROOT),
        ),
        supports_check_mode=True,
    )
    p = module.params
    command = _engine.find_engine(module, engine=p['engine'], root=p['engine_root'])
    args = ['device', 'info', '--probe', PROBES[p['content_probe']]]
    args += ['--include-empty'] if p['include_empty'] else []
    args += ['--include-partitions'] if p['include_partitions'] else []
    facts = _engine.run(module, command, args + ['--'] + p['devices'])['result']
    del facts['probe']
    for device in facts['devices'].values():
        device['content']['method'] = METHODS.get(device['content']['method'], device['content']['method'])
    module.exit_json(changed=False, **facts)


if __name__ == '__main__':
    main()

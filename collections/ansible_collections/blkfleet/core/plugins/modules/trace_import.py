#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: trace_import
short_description: Import a foreign block trace into replay files and a replay bundle, on the controller
version_added: 0.1.0
description:
  - Converts block traces that blkfleet did not capture (fio iologs, blkparse text, SNIA MSR Cambridge, Alibaba and
    Tencent CBS CSV, or CSV with a column mapping; plain, compressed or in tar archives) into native replay files
    with C(blkfleet import), and optionally packs them into a replay bundle with C(blkfleet bundle create),
    reshaped for the targets with the options of C(blkfleet transform) (time window, operation filter, renames,
    LBA shift, scale, wrap-around and alignment, time scaling).
  - Runs entirely on the controller (an action plugin; the task's host is not contacted), with the controller's
    C(blkfleet) package (the project's virtualenv, the checkout's C(engine/) directory, or a C(blkfleet) program on
    E(PATH); E(BLKFLEET_ENGINE_PYTHON) names a Python to use instead).
  - The import and the bundle are deterministic, and files whose content would not change are not rewritten, so
    the same inputs report RV(ignore:changed=false). What was done is recorded in C(origin.json) beside the replay
    files and in the bundle's manifest (C(origin)).
author:
  - blkfleet developers (@blkfleet)
options:
  format:
    description:
      - The trace format (see C(docs/formats.md) of blkfleet for the fields and units of each).
    type: str
    required: true
    choices: [fio-iolog, blkparse, msr, alibaba, tencent, csv]
  src:
    description:
      - Trace files on the controller, in time order.
    type: list
    elements: path
    required: true
  replay_dir:
    description:
      - Directory on the controller for the replay files (C(DEV.replay.0), one per device) and C(origin.json).
        Replay files of an earlier import that this one does not produce are removed from it.
    type: path
    required: true
  bundle:
    description:
      - Path on the controller of a bundle file to write from the replay files, for M(blkfleet.core.replay_bundle).
        No bundle is made without it.
    type: path
  source_host:
    description:
      - Name of the host the trace was taken on, for the bundle's manifest.
    type: str
  select:
    description:
      - Import only these devices of the trace, by the trace's own names (an MSR host and disk C(usr_0), an Alibaba
        C(device_id), a Tencent C(VolumeID), a fio file name, a blkparse C(major,minor)). The default, an empty
        list, imports them all.
    type: list
    elements: str
    default: []
  rename:
    description:
      - Device names, by the trace's own names; several renamed to one name merge into one device.
    type: dict
    default: {}
  tolerance:
    description:
      - IOs up to this long before an IO of their device that came earlier in the trace are put back in time order
        (C(1ms), C(0.5)); by default an IO out of order is an error.
    type: str
  csv:
    description:
      - For O(format=csv), the column mapping, as the options of C(blkfleet import csv) without their leading
        dashes (C(columns), C(time_unit), C(offset_unit), C(size_unit), C(ops), C(op), C(delimiter), C(skip_lines),
        C(fields), C(device_name)).
    type: dict
  transform:
    description:
      - How the bundle reshapes the replay files for the targets, as the options of C(blkfleet transform) without
        their leading dashes (C(from), C(to), C(duration), C(skip), C(rename), C(shift), C(scale), C(wrap),
        C(align), C(time_scale)). Needs O(bundle).
    type: dict
    default: {}
extends_documentation_fragment:
  - blkfleet.core._attributes
  - blkfleet.core._attributes.ACTIONGROUP_BLKFLEET
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
      - Imports into a temporary directory and compares, writing nothing in O(replay_dir) or O(bundle).
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
    details:
      - Runs on the controller.
notes:
  - Use the fully qualified name C(blkfleet.core.trace_import); the module has no code of its own.
seealso:
  - module: blkfleet.core.btrecord
  - module: blkfleet.core.replay_bundle
'''

EXAMPLES = r'''
- name: Import an MSR Cambridge trace and fit it to 256 MiB targets
  blkfleet.core.trace_import:
    format: msr
    src: [traces/usr_0.csv.gz]
    replay_dir: work/imported/usr_0
    bundle: work/bundles/usr_0.bundle
    transform:
      wrap: 256M
      align: 4096
      skip: [flush]
  delegate_to: localhost
  run_once: true
  register: imported

- name: Show the bundle
  ansible.builtin.debug:
    msg: "bundle {{ imported.bundle_id }}: {{ imported.ios }} IOs of {{ imported.devices | join(', ') }}"
'''

RETURN = r'''
replay_dir:
  description: Absolute path of the replay directory.
  returned: success
  type: str
  sample: /srv/blkfleet/work/imported/usr_0
devices:
  description: Devices imported (their names in the replay files).
  returned: success
  type: list
  elements: str
  sample: [usr_0]
files:
  description:
    - The replay files written, as C(blkfleet record --json) lists its files, with absolute paths.
  returned: success
  type: list
  elements: dict
  sample:
    - device: usr_0
      cpu: 0
      source: usr_0
      output: /srv/blkfleet/work/imported/usr_0/usr_0.replay.0
      format: native
      ios: 2237889
      bunches: 37105
      ops: {read: {ios: 134234, bytes: 5117603840}, write: {ios: 2103655, bytes: 22931439616}}
      first_time_ns: 0
      last_time_ns: 604799860600
      span_ns: 604799860600
ios:
  description: IOs imported.
  returned: success
  type: int
  sample: 2237889
origin:
  description: What the import did (C(origin.json) of O(replay_dir)).
  returned: success
  type: dict
  sample: {command: import, inputs: [{name: usr_0.csv.gz, bytes: 44213184, origin: null}], options: {format: msr},
           counts: {ios: 2237889, devices: 1}}
updated:
  description: Files of O(replay_dir) written (or, in check mode, that would be).
  returned: success
  type: list
  elements: str
  sample: [origin.json, usr_0.replay.0]
removed:
  description: Replay files of an earlier import removed from O(replay_dir) (or, in check mode, that would be).
  returned: success
  type: list
  elements: str
  sample: []
bundle:
  description: Absolute path of the bundle file.
  returned: when O(bundle) is given
  type: str
  sample: /srv/blkfleet/work/bundles/usr_0.bundle
bundle_id:
  description: Id of the bundle (SHA-256 of its manifest's content).
  returned: when O(bundle) is given
  type: str
  sample: 3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d
manifest:
  description: The bundle's manifest (see C(docs/bundle.md) of blkfleet); its C(origin) says what was replayed.
  returned: when O(bundle) is given
  type: dict
  sample: {format: blkfleet-bundle, format_version: 3, totals: {files: 1, ios: 2237889}}
'''

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: btrecord
short_description: Convert fetched block IO traces into replay files and a replay bundle, on the controller
version_added: 0.1.0
description:
  - Converts C(DEV.blktrace.CPU) trace files (from M(blkfleet.core.blktrace), fetched to the controller) into
    replay files C(DEV.replay.CPU) with C(blkfleet record), and optionally packs them with their manifest and
    the engine into one replay bundle with C(blkfleet bundle create).
  - Runs entirely on the controller (an action plugin; the task's host is not contacted), with the
    controller's C(blkfleet) package (the project's virtualenv, the checkout's C(engine/) directory, or a
    C(blkfleet) program on E(PATH); E(BLKFLEET_ENGINE_PYTHON) names a Python to use instead).
  - The conversion and the bundle are deterministic, and files whose content would not change are not
    rewritten, so the same inputs report RV(ignore:changed=false).
  - Replay files of the converted devices that the conversion no longer produces (fewer CPUs) are removed from
    O(replay_dir), so that a bundle never mixes two conversions.
author:
  - blkfleet developers (@blkfleet)
options:
  trace_dir:
    description:
      - Directory on the controller holding the trace files (and C(capture.json), which gives the manifest the
        devices' sizes and the source host).
      - It must be one nobody but root (or the user running Ansible) can change, nor a directory above it, nor a
        link on the way; a sticky directory such as C(/tmp) itself is refused, a directory of root's under it is
        fine. Otherwise the task fails and nothing is written.
    type: path
    required: true
  replay_dir:
    description:
      - Directory on the controller for the replay files and C(record.json), the conversion's summary.
    type: path
    required: true
  devices:
    description:
      - Traced devices to convert, by kernel name. The default, an empty list, converts every device found in
        O(trace_dir).
    type: list
    elements: str
    default: []
  bundle:
    description:
      - Path on the controller of a bundle file to write from the replay files, for
        M(blkfleet.core.replay_bundle). No bundle is made without it.
    type: path
  source_host:
    description:
      - Name of the host the IO was captured on, for the bundle's manifest. The default is the host named in
        O(trace_dir)'s C(capture.json).
    type: str
  compat:
    description:
      - Write btrecord 1.2.0's format byte for byte (for the C btreplay) instead of blkfleet's native format
        (a time for every IO; discards, flushes and FUA kept as operations).
    type: bool
    default: false
  accept_missing:
    description:
      - When O(trace_dir) holds the C(capture.json) of a C(blkfleet capture), the engine checks every trace
        file against what the capture recorded (size, queued IOs and bytes per file) and refuses a trace that
        is shorter, for example after a fetch that was cut off.
      - V(true) converts what is there instead; the shortfall is then recorded in RV(capture) and in the bundle
        manifest (C(record.capture)).
    type: bool
    default: false
  timing:
    description:
      - Write native files of format version 2 from a capture with completions (the default of
        M(blkfleet.core.blktrace)'s events mode), holding each IO's recorded latency, in-flight count and
        parents, which M(blkfleet.core.btreplay) needs for O(blkfleet.core.btreplay#module:mode=load) and
        O(blkfleet.core.btreplay#module:mode=dependency).
      - The dependency analysis costs about 24 microseconds of CPU per IO, so it is off by default.
    type: bool
    default: false
  max_bunch_time:
    description:
      - Bunch window in nanoseconds (btrecord C(-m)); the default is 10000000.
    type: int
  max_pkts:
    description:
      - IOs per bunch at most (btrecord C(-M)); the default is 64 (native) or 8 (O(compat)).
    type: int
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
      - Converts into a temporary directory and compares, writing nothing in O(replay_dir) or O(bundle).
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
    details:
      - Runs on the controller.
notes:
  - Use the fully qualified name C(blkfleet.core.btrecord); the module has no code of its own.
  - With several source hosts, run it once per host on that host's fetched directory (the task does not
    connect to the host), or with C(delegate_to) and C(run_once) for a single one.
seealso:
  - module: blkfleet.core.blktrace
  - module: blkfleet.core.replay_bundle
  - name: btrecord(8)
    description: The C tool whose conversion C(blkfleet record --compat) reproduces.
    link: https://man7.org/linux/man-pages/man8/btrecord.8.html
'''

EXAMPLES = r'''
- name: Fetch the traces of a source host
  ansible.builtin.fetch:
    src: "/var/tmp/capture/{{ item }}"
    dest: "work/{{ inventory_hostname }}/traces/"
    flat: true
  loop: "{{ capture.capture.files + ['capture.json'] }}"

- name: Convert them and build a bundle, on the controller
  blkfleet.core.btrecord:
    trace_dir: "work/{{ inventory_hostname }}/traces"
    replay_dir: "work/{{ inventory_hostname }}/replay"
    bundle: "work/{{ inventory_hostname }}/{{ inventory_hostname }}.bundle"
  register: recorded

- name: Show the bundle
  ansible.builtin.debug:
    msg: "bundle {{ recorded.bundle_id }}: {{ recorded.ios }} IOs of {{ recorded.devices | join(', ') }}"
'''

RETURN = r'''
replay_dir:
  description: Absolute path of the replay directory.
  returned: success
  type: str
  sample: /srv/blkfleet/work/db1/replay
devices:
  description: Devices converted.
  returned: success
  type: list
  elements: str
  sample: [loop1]
files:
  description:
    - The conversion's summary per replay file (C(blkfleet record --json)), with absolute paths.
  returned: success
  type: list
  elements: dict
  sample:
    - device: loop1
      cpu: 0
      source: /srv/blkfleet/work/db1/traces/loop1.blktrace.0
      output: /srv/blkfleet/work/db1/replay/loop1.replay.0
      format: native
      ios: 6017
      bunches: 95
      ops: {read: {ios: 3010, bytes: 12328960}, write: {ios: 3007, bytes: 12316672}}
      first_time_ns: 1042
      last_time_ns: 2003998123
      span_ns: 2003997081
ios:
  description: IOs in the replay files.
  returned: success
  type: int
  sample: 12034
capture:
  description:
    - How the trace files compared with the C(capture.json) of O(trace_dir), null when there is none. It holds
      C(complete), C(accepted_missing), C(expected) and C(found) IOs and bytes, and a C(shortfall) entry per
      file that holds less than the capture recorded.
  returned: success
  type: dict
  sample:
    complete: false
    accepted_missing: true
    expected: {ios: 3000, bytes: 12288000}
    found: {ios: 1727, bytes: 7073792}
    shortfall:
      - file: loop1.blktrace.0
        expected_ios: 1785
        ios: 512
        expected_bytes: 7311360
        bytes: 2097152
        expected_file_bytes: 85680
        file_bytes: 24576
    problem: null
updated:
  description: Files of O(replay_dir) written (or, in check mode, that would be).
  returned: success
  type: list
  elements: str
  sample: [loop1.replay.0, loop1.replay.1, record.json]
removed:
  description: Stale replay files removed from O(replay_dir) (or, in check mode, that would be).
  returned: success
  type: list
  elements: str
  sample: []
record_json:
  description: Path of the conversion's summary in O(replay_dir).
  returned: success
  type: str
  sample: /srv/blkfleet/work/db1/replay/record.json
bundle:
  description: Absolute path of the bundle file.
  returned: when O(bundle) is given
  type: str
  sample: /srv/blkfleet/work/db1/db1.bundle
bundle_id:
  description: Id of the bundle (SHA-256 of its manifest's content).
  returned: when O(bundle) is given
  type: str
  sample: 3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d
manifest:
  description: The bundle's manifest (see C(docs/bundle.md) of blkfleet).
  returned: when O(bundle) is given
  type: dict
  sample: {format: blkfleet-bundle, format_version: 1, source_host: db1, totals: {files: 2, ios: 12034}}
'''

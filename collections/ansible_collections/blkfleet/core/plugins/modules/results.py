#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: results
short_description: Store replay results, manage baselines and write the HTML report, on the controller
version_added: 0.1.0
description:
  - The results store of blkfleet (an SQLite file) on the controller, through the controller's engine
    (C(blkfleet results) and C(blkfleet report), each answering in the engine's protocol).
  - O(action=add) stores results files (M(blkfleet.core.btreplay)'s, fetched with M(blkfleet.core.verified_fetch)),
    tagged; a file stored before is not stored again, and RV(runs) says which were added.
  - O(action=baselines) lists the store's baselines (none when there is no store yet).
  - O(action=baseline) defines (or redefines) the baseline O(name) from the stored runs O(runs).
  - O(action=report) writes one self-contained HTML report (O(report)) of the stored runs, with the band of the
    baseline O(name) when given.
  - Runs entirely on the controller (an action plugin; the task's host is not contacted).
author:
  - blkfleet developers (@blkfleet)
options:
  action:
    description:
      - What to do (see the description).
    type: str
    choices: [add, baselines, baseline, report]
    required: true
  db:
    description:
      - The results store on the controller, a SQLite file or a PostgreSQL URL (C(postgresql://...)).
      - Without it, C(BLKFLEET_DB) in the controller's environment, else C(results/blkfleet.sqlite) under the
        current directory.
    type: str
  files:
    description:
      - With O(action=add), the results files to store.
    type: list
    elements: path
    default: []
  tags:
    description:
      - With O(action=add), tags of the stored runs (C(KEY=VALUE) each), such as the host, the suite and the stamp of
        the run.
    type: dict
    default: {}
  bundle_id:
    description:
      - With O(action=add), the id of the bundle that was replayed.
    type: str
  name:
    description:
      - With O(action=baseline) (required then), the baseline to define; with O(action=report), the baseline whose band
        and verdict the report shows.
    type: str
  runs:
    description:
      - With O(action=baseline), the stored runs (ids from RV(runs)) that make the baseline.
    type: list
    elements: int
    default: []
  report:
    description:
      - With O(action=report) (required then), the HTML file to write.
    type: path
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
    support: none
    details:
      - A store is a record of measurements; the task is skipped in check mode.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
    details:
      - Runs on the controller.
notes:
  - Use the fully qualified name C(blkfleet.core.results); the module has no code of its own.
  - RV(ignore:changed) is V(true) when O(action=add) stored a run, for O(action=baseline) and O(action=report).
seealso:
  - module: blkfleet.core.regress
  - module: blkfleet.core.verified_fetch
'''

EXAMPLES = r'''
- name: Store a replay's results, tagged with its host
  blkfleet.core.results:
    action: add
    db: results/blkfleet.sqlite
    files: ["results/replays/{{ inventory_hostname }}.json"]
    tags: {host: "{{ inventory_hostname }}"}
  delegate_to: localhost
  register: stored

- name: Make them the baseline nightly
  blkfleet.core.results:
    action: baseline
    db: results/blkfleet.sqlite
    name: nightly
    runs: "{{ stored.runs | map(attribute='run') | list }}"
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
runs:
  description: With O(action=add), one entry per file, in order.
  returned: with O(action=add)
  type: list
  elements: dict
  contains:
    run:
      description: The run's id in the store.
      type: int
    added:
      description: Whether this task stored it (V(false) when it was stored before).
      type: bool
    host:
      description: The host the replay ran on.
      type: str
    devices:
      description: Its recorded devices.
      type: list
      elements: str
    file:
      description: The results file.
      type: str
  sample: [{run: 7, added: true, host: target1, devices: [loop1], file: results/replays/target1.json}]
baselines:
  description: With O(action=baselines), each baseline with its members (run, host, device); empty without a store.
  returned: with O(action=baselines)
  type: list
  elements: dict
  sample: [{name: nightly, created: "2026-12-01T05:28:52", members: [{run: 7, host: target1, device: loop1}]}]
baseline:
  description: With O(action=baseline), the baseline defined (C(name), C(members)).
  returned: with O(action=baseline)
  type: dict
report:
  description: With O(action=report), the report written (C(output), C(bytes), C(runs), C(verdict)).
  returned: with O(action=report)
  type: dict
'''

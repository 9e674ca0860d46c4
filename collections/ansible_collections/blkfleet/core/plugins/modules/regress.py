#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: regress
short_description: Judge stored replay results against a baseline, on the controller
version_added: 0.1.0
description:
  - Runs the controller's engine, C(blkfleet regress), on the results store. It judges the candidate runs O(runs)
    against the baseline O(baseline), per host and device, on IOPS, MB/s, latency p50/p99 and lateness p99, with a
    significance test (see C(docs/regression.md) of blkfleet).
  - Returns the verdict (RV(verdict), RV(outcome)); a regression or too few samples is a result, not a failure of
    the task (the play decides, see the role M(blkfleet.core.regression)). Bad input (no such baseline or run)
    fails the task.
  - Runs entirely on the controller (an action plugin; the task's host is not contacted).
author:
  - blkfleet developers (@blkfleet)
options:
  db:
    description:
      - The results store on the controller, a SQLite file or a PostgreSQL URL (C(postgresql://...)).
      - Without it, C(BLKFLEET_DB) in the controller's environment, else C(results/blkfleet.sqlite) under the
        current directory.
    type: str
  baseline:
    description:
      - The baseline (M(blkfleet.core.results) O(blkfleet.core.results#module:action=baseline)).
    type: str
    required: true
  runs:
    description:
      - The candidate runs; the default, an empty list, is the last run of each baseline host and device that is not
        in the baseline.
    type: list
    elements: int
    default: []
  metrics:
    description:
      - The metrics to judge; the default, an empty list, judges them all.
    type: list
    elements: str
    default: []
  tolerances:
    description:
      - Relative tolerances in percent by metric (C(iops), C(mb_s), C(latency_p50), C(latency_p99), C(lateness_p99)).
    type: dict
    default: {}
  abs_tolerances:
    description:
      - Absolute floors by metric, in the metric's unit.
    type: dict
    default: {}
  alpha:
    description:
      - Significance level.
    type: float
    default: 0.05
  test:
    description:
      - V(welch) or V(mann-whitney).
    type: str
    choices: [welch, mann-whitney]
    default: welch
  min_samples:
    description:
      - Fewer samples on a side gives the outcome V(insufficient).
    type: int
    default: 3
  json:
    description:
      - Also write the verdict as JSON to this file on the controller.
    type: path
  markdown:
    description:
      - Also write the verdict as Markdown to this file on the controller.
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
      - A verdict is a measurement; the task is skipped in check mode.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
    details:
      - Runs on the controller.
notes:
  - Use the fully qualified name C(blkfleet.core.regress); the module has no code of its own.
  - RV(ignore:changed) is V(true) when O(json) or O(markdown) was written.
seealso:
  - module: blkfleet.core.results
'''

EXAMPLES = r'''
- name: Judge the last runs against the baseline nightly
  blkfleet.core.regress:
    db: results/blkfleet.sqlite
    baseline: nightly
    markdown: results/verdict.md
  delegate_to: localhost
  run_once: true
  register: verdict

- name: Fail on a regression
  ansible.builtin.fail:
    msg: "regression, see results/verdict.md"
  when: verdict.outcome == 'regression'
  run_once: true
'''

RETURN = r'''
outcome:
  description: V(pass), V(improvement), V(regression) or V(insufficient) (too few samples, no regression).
  returned: success
  type: str
  sample: pass
exit_code:
  description: The engine's exit code for the verdict (0 pass or improvement, 10 regression, 12 insufficient).
  returned: success
  type: int
  sample: 0
verdict:
  description: The verdict document (schema C(verdict.schema.json) of blkfleet), per host, device and metric.
  returned: success
  type: dict
'''

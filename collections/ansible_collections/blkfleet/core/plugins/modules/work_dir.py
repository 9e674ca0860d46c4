#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: work_dir
short_description: Make a controller directory for blkfleet's outputs, refusing one that others could change
version_added: 0.1.0
description:
  - Makes O(path) and its missing parents (mode C(0755)) on the controller with the controller's engine
    (C(blkfleet workdir)), or fails with the reason when anyone but root or the user running Ansible could change
    what it holds.
  - Every directory on its path must be owned by root or by that user and not writable by others (a sticky
    directory such as C(/tmp) is accepted above it, never as O(path) itself); a symbolic link on the way is followed
    only when root or that user owns it. So a directory another user planted (or a link to C(/etc) planted as
    C(results)) is refused before anything is written through it.
  - The collection's playbooks make their C(results/) directory with it first; M(blkfleet.core.verified_fetch),
    M(blkfleet.core.btrecord) and M(blkfleet.core.trace_import) check the directories they write into the same way.
  - Runs entirely on the controller (an action plugin; the task's host is not contacted).
author:
  - blkfleet developers (@blkfleet)
options:
  path:
    description:
      - The directory on the controller.
    type: path
    required: true
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
      - Makes nothing; fails the same way when the part of the path that exists is refused.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
    details:
      - Runs on the controller.
notes:
  - Use the fully qualified name C(blkfleet.core.work_dir); the module has no code of its own.
seealso:
  - module: blkfleet.core.verified_fetch
'''

EXAMPLES = r'''
- name: Make the results directory on the controller, refusing one another user could redirect
  blkfleet.core.work_dir:
    path: "{{ playbook_dir }}/results"
  run_once: true
'''

RETURN = r'''
path:
  description: O(path), absolute.
  returned: success
  type: str
  sample: /srv/perf/results
real_path:
  description: The directory O(path) names, with the symbolic links on its path followed.
  returned: success
  type: str
  sample: /data/perf/results
'''

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: verified_fetch
short_description: Fetch a file from a host to the controller, whole and checked, or not at all
version_added: 0.1.0
description:
  - Copies O(src), a regular file on the host, to O(dest) on the controller like M(ansible.builtin.fetch) with
    O(ansible.builtin.fetch#module:flat=true), but the destination only ever holds a complete, checked file.
  - The host reports the file's size and SHA-256 (read once, without following a symbolic link). The file is
    transferred to a temporary name beside O(dest) (C(.NAME.XXXXXXXX.partial)), its size and SHA-256 compared
    with the host's, its content checked (O(validate)), flushed to disk and only then renamed to O(dest).
  - A transfer that fails or is cut short (a full disk on the controller, ENOSPC; a lost connection), a file
    that changed during the transfer or content that fails its check fails the task and leaves O(dest) as it
    was, with no temporary file behind.
  - When O(dest) already holds the same bytes nothing is transferred and RV(ignore:changed) is V(false).
author:
  - blkfleet developers (@blkfleet)
options:
  src:
    description:
      - Path on the host of the file to fetch.
    type: path
    required: true
  dest:
    description:
      - Path on the controller of the file to write (its directory is made when missing).
    type: path
    required: true
  validate:
    description:
      - What the content must be. V(none) any bytes; V(json) one JSON document; V(results) a blkfleet results
        document, checked by the controller's engine against its results schema (C(blkfleet results check)).
    type: str
    choices: [none, json, results]
    default: none
  mode:
    description:
      - Permissions of O(dest).
    type: str
    default: '0644'
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
      - Asks the host for the file's size and SHA-256, writes nothing and predicts RV(ignore:changed).
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Use the fully qualified name C(blkfleet.core.verified_fetch); without its action plugin nothing is fetched.
  - The transfer is the connection's own (SFTP or SCP over SSH). When it is refused under C(become) (the login
    user may not read the file), files up to 64 MiB are read through the module instead.
seealso:
  - module: ansible.builtin.fetch
  - module: blkfleet.core.btreplay
'''

EXAMPLES = r'''
- name: Fetch a replay's results, checked against the results schema
  blkfleet.core.verified_fetch:
    src: /var/lib/blkfleet/results/target1-replay.json
    dest: "{{ playbook_dir }}/results/replays/{{ inventory_hostname }}.json"
    validate: results

- name: Fetch a trace file as it is
  blkfleet.core.verified_fetch:
    src: /var/lib/blkfleet/capture/sdb.blktrace.0
    dest: "traces/{{ inventory_hostname }}/sdb.blktrace.0"
'''

RETURN = r'''
src:
  description: The file on the host.
  returned: always
  type: str
  sample: /var/lib/blkfleet/results/target1-replay.json
dest:
  description: The file on the controller.
  returned: success
  type: str
  sample: /srv/blkfleet/results/replays/target1.json
size:
  description: Its size in bytes, as the host reported it (and the controller checked).
  returned: success
  type: int
  sample: 23154
sha256:
  description: Its SHA-256, as the host reported it (and the controller checked).
  returned: success
  type: str
  sample: 9f2c6b7e0f3d3c1e9a1d5f4b8e7c6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blkfleet.core.plugins.module_utils._install import describe


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path', required=True),
            dest=dict(type='path', required=True),
            validate=dict(type='str', choices=['none', 'json', 'results'], default='none'),
            mode=dict(type='str', default='0644'),
        ),
        supports_check_mode=True,
    )
    src = module.params['src']
    try:
        size, sha256 = describe(src)
    except OSError as e:
        module.fail_json(msg='%s: %s' % (src, e.strerror or e), src=src)
    module.exit_json(changed=False, src=src, size=size, sha256=sha256)


if __name__ == '__main__':
    main()

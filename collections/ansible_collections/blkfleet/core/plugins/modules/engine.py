#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: engine
short_description: Install the blkfleet engine (engine.pyz) on hosts, content-addressed
version_added: 0.1.0
description:
  - Installs the blkfleet engine, one stdlib-only Python zipapp, at C(ROOT/<sha256>/engine.pyz) on the hosts,
    where M(blkfleet.core.blktrace), M(blkfleet.core.btreplay) and the roles find it.
  - The action plugin builds C(engine.pyz) on the controller from the controller's C(blkfleet) package
    (C(blkfleet bundle engine)), or takes O(src), and transfers it only when the host does not hold that
    content yet. The build is deterministic, so a second run reports RV(ignore:changed=false).
  - Engines of other versions stay installed side by side; nothing is removed.
author:
  - blkfleet developers (@blkfleet)
options:
  src:
    description:
      - Path on the controller of a prebuilt C(engine.pyz). The default builds one from the C(blkfleet) package
        the controller can run (the project's virtualenv, the checkout's C(engine/) directory, or a
        C(blkfleet) program on E(PATH); E(BLKFLEET_ENGINE_PYTHON) names a Python to use instead).
      - The action plugin transfers the file to a temporary path on the host and passes that path to the
        module; when the module runs without O(src), it only reports whether the engine is installed.
    type: path
  sha256:
    description:
      - SHA-256 of the engine. Set by the action plugin; when given with O(src), the content must match it.
    type: str
  root:
    description:
      - Directory on the host under which engines are installed, one C(<sha256>/engine.pyz) each.
    type: path
    default: /var/lib/blkfleet/engine
extends_documentation_fragment:
  - blkfleet.core._attributes
  - blkfleet.core._attributes.ACTIONGROUP_BLKFLEET
  - blkfleet.core._attributes.PLATFORM_LINUX
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
  diff_mode:
    support: none
notes:
  - Use the fully qualified name C(blkfleet.core.engine). Through a short name from a C(library) path, Ansible
    would run the module without its action plugin, and nothing would be transferred.
  - The engine needs Python 3.9 or later on the host; nothing else.
seealso:
  - module: blkfleet.core.replay_bundle
    description: A pushed bundle installs its own engine the same way.
'''

EXAMPLES = r'''
- name: Install the engine built from the controller's blkfleet package
  blkfleet.core.engine:
  register: engine

- name: Capture with exactly that engine
  blkfleet.core.blktrace:
    devices: [sdb]
    output_dir: /var/tmp/capture
    state: started
    engine: "{{ engine.path }}"

- name: Install a prebuilt engine under another root
  blkfleet.core.engine:
    src: dist/engine.pyz
    root: /opt/blkfleet/engine
'''

RETURN = r'''
path:
  description: Where the engine is installed on the host (to pass as O(blkfleet.core.blktrace#module:engine)).
  returned: success
  type: str
  sample: /var/lib/blkfleet/engine/f75152aff6f6751b6e2d024de69d022dda50a48ac2d0df90fde85eccfeb3c8fb/engine.pyz
sha256:
  description: SHA-256 of the engine.
  returned: success
  type: str
  sample: f75152aff6f6751b6e2d024de69d022dda50a48ac2d0df90fde85eccfeb3c8fb
size:
  description: Size of the engine in bytes.
  returned: success
  type: int
  sample: 378226
installed:
  description: Whether the engine is installed now (in check mode, whether it was before).
  returned: success
  type: bool
  sample: true
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blkfleet.core.plugins.module_utils import _engine, _install


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path'),
            sha256=dict(type='str'),
            root=dict(type='path', default=_engine.ENGINE_ROOT),
        ),
        supports_check_mode=True,
    )
    src = module.params['src']
    sha = module.params['sha256']
    if sha is None and src is None:
        module.fail_json(msg='give sha256 or src (use the action plugin: blkfleet.core.engine, by its full name)')
    try:
        if sha is None:
            sha = _install.describe(src)[1]
        dest = _install.engine_path(sha, module.params['root'])
    except (_install.InstallError, OSError) as e:
        module.fail_json(msg=str(e))
    result = dict(changed=False, path=dest, sha256=sha, installed=False)
    if _install.has_content(dest, sha):
        result.update(installed=True, size=os.path.getsize(dest))
        module.exit_json(**result)
    if module.check_mode or src is None:
        result['changed'] = src is not None
        module.exit_json(**result)
    try:
        _install.install_file(src, dest, sha, mode=0o755)
    except (_install.InstallError, OSError) as e:
        module.fail_json(msg='cannot install the engine: %s' % e)
    result.update(changed=True, installed=True, size=os.path.getsize(dest))
    module.exit_json(**result)


if __name__ == '__main__':
    main()

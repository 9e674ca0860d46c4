#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: replay_bundle
short_description: Push a blkfleet replay bundle to hosts, content-addressed
version_added: 0.1.0
description:
  - Pushes a replay bundle (manifest, replay files and the engine C(engine.pyz) in one file) to
    C(DEST/<bundle_id>.tar) on the hosts, where M(blkfleet.core.btreplay) replays it by its id.
  - Takes a bundle file from the controller (O(src)), or builds one on the controller from replay files
    (O(replay_dir), with C(blkfleet bundle create)).
  - Transfers nothing when the host already holds the same bytes, so a second push reports
    RV(ignore:changed=false). A transferred bundle is verified on the host by its own engine
    (C(bundle verify) checks the manifest, the id, every member's size and SHA-256) before it is moved into place.
  - Installs the bundle's engine at C(ENGINE_ROOT/<sha256>/engine.pyz), where M(blkfleet.core.btreplay) runs it.
    The controller reads the engine's member, size and SHA-256 in the manifest (C(bundle info)); everything else
    the host learns of the bundle, it learns from that engine.
author:
  - blkfleet developers (@blkfleet)
options:
  src:
    description:
      - Path on the controller of the bundle file (M(blkfleet.core.btrecord)'s RV(blkfleet.core.btrecord#module:bundle)).
      - The action plugin transfers it to a temporary path on the host and passes that path to the module.
        When the module runs without O(src), it only reports whether the bundle is installed.
      - Exactly one of O(src) and O(replay_dir) is required.
    type: path
  replay_dir:
    description:
      - Build the bundle on the controller from the replay files (C(DEV.replay.CPU)) in this controller
        directory, then push it. Each run builds it again (deterministically); to push one bundle to many
        hosts, build it once with M(blkfleet.core.btrecord) and push it with O(src).
    type: path
  devices:
    description:
      - With O(replay_dir), the recorded devices to bundle; the default, an empty list, bundles every device
        found.
    type: list
    elements: str
    default: []
  trace_dir:
    description:
      - With O(replay_dir), the capture directory on the controller (C(capture.json), trace files). It gives device
        sizes, logical block sizes and source host for the manifest.
    type: path
  source_host:
    description:
      - With O(replay_dir), the name of the host the IO was captured on, for the manifest.
    type: str
  record_json:
    description:
      - With O(replay_dir), the C(blkfleet record --json) summary, cross-checked against the files.
    type: path
  dest:
    description:
      - Directory on the host for pushed bundles.
    type: path
    default: /var/lib/blkfleet/bundles
  engine_root:
    description:
      - Directory on the host under which the bundle's engine is installed (C(<sha256>/engine.pyz)).
    type: path
    default: /var/lib/blkfleet/engine
  bundle_id:
    description:
      - Id of the bundle. Set by the action plugin from the manifest; the pushed bundle must have it.
    type: str
  checksum:
    description:
      - SHA-256 of the bundle file. Set by the action plugin; when given, the pushed file must have it.
    type: str
  engine_member:
    description:
      - Path of the engine in the bundle, from its manifest. Set by the action plugin.
    type: str
  engine_size:
    description:
      - Size of the engine in the bundle, from its manifest. Set by the action plugin.
    type: int
  engine_sha256:
    description:
      - SHA-256 of the engine in the bundle, from its manifest. Set by the action plugin.
    type: str
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
    details:
      - Builds the bundle on the controller when O(replay_dir) is given (a controller-side temporary file),
        transfers nothing and predicts RV(ignore:changed).
  diff_mode:
    support: none
notes:
  - Use the fully qualified name C(blkfleet.core.replay_bundle); through a short name from a C(library) path,
    Ansible would run the module without its action plugin, and nothing would be transferred.
  - Bundles are uncompressed tar files, so that the same content always has the same bytes. For large bundles
    over slow links, compress the transport (SSH compression).
seealso:
  - module: blkfleet.core.btrecord
  - module: blkfleet.core.btreplay
'''

EXAMPLES = r'''
- name: Push a bundle built by btrecord
  blkfleet.core.replay_bundle:
    src: "{{ playbook_dir }}/../work/db1/db1.bundle"
  register: pushed

- name: Replay it
  blkfleet.core.btreplay:
    bundle_id: "{{ pushed.bundle_id }}"
    device_map: {sdb: vdc}

- name: Build a bundle from replay files on the controller and push it
  blkfleet.core.replay_bundle:
    replay_dir: /srv/blkfleet/db1/replay
    trace_dir: /srv/blkfleet/db1/traces
    source_host: db1
    devices: [sdb]
'''

RETURN = r'''
bundle_id:
  description: Id of the bundle (SHA-256 of its manifest's content).
  returned: success
  type: str
  sample: 3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d
path:
  description: Path of the bundle on the host.
  returned: success
  type: str
  sample: /var/lib/blkfleet/bundles/3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d.tar
checksum:
  description: SHA-256 of the bundle file.
  returned: success
  type: str
  sample: 0d6f4b6b2f4e8f1c2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091
installed:
  description: Whether the bundle is on the host now (in check mode, whether it was before).
  returned: success
  type: bool
  sample: true
engine:
  description: Path of the bundle's engine on the host.
  returned: success
  type: str
  sample: /var/lib/blkfleet/engine/f75152aff6f6751b6e2d024de69d022dda50a48ac2d0df90fde85eccfeb3c8fb/engine.pyz
engine_sha256:
  description: SHA-256 of the bundle's engine.
  returned: success
  type: str
  sample: f75152aff6f6751b6e2d024de69d022dda50a48ac2d0df90fde85eccfeb3c8fb
devices:
  description: Recorded devices in the bundle.
  returned: when the bundle is installed
  type: list
  elements: str
  sample: [loop1]
totals:
  description: The manifest's totals (replay files, bytes of replay files, IOs, IO bytes, by operation).
  returned: when the bundle is installed
  type: dict
  sample: {files: 2, size: 240000, ios: 12034, bytes: 49291264}
capture_window:
  description:
    - The manifest's capture window, C(first_ns), C(last_ns) and C(span_ns) (nanoseconds). C(span_ns) is how long
      the recorded workload lasted, so a replay at acceleration 1 lasts about as long.
  returned: when the bundle is installed, and in check mode
  type: dict
  sample: {first_ns: 521832678890, last_ns: 521869498021, span_ns: 36819131}
'''

import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blkfleet.core.plugins.module_utils import _engine, _install


def _described(manifest, result):
    result.update(devices=list(manifest['replay']['devices']), totals=manifest['totals'],
                  capture_window=manifest.get('capture_window') or {})
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path'),
            replay_dir=dict(type='path'),
            devices=dict(type='list', elements='str', default=[]),
            trace_dir=dict(type='path'),
            source_host=dict(type='str'),
            record_json=dict(type='path'),
            dest=dict(type='path', default=_install.BUNDLE_DIR),
            engine_root=dict(type='path', default=_engine.ENGINE_ROOT),
            bundle_id=dict(type='str'),
            checksum=dict(type='str'),
            engine_member=dict(type='str'),
            engine_size=dict(type='int'),
            engine_sha256=dict(type='str'),
        ),
        mutually_exclusive=[('src', 'replay_dir')],
        supports_check_mode=True,
    )
    p = module.params
    if p['replay_dir']:
        module.fail_json(msg='replay_dir is handled on the controller: use the action plugin '
                             '(blkfleet.core.replay_bundle, by its full name)')
    if not all(p[key] for key in ('bundle_id', 'checksum', 'engine_member', 'engine_size', 'engine_sha256')):
        module.fail_json(msg='bundle_id, checksum and the engine member are set by the action plugin: use '
                             'blkfleet.core.replay_bundle, by its full name')
    src = p['src']
    try:
        path = _install.bundle_path(p['bundle_id'], p['dest'])
        engine_sha = _install.check_sha256(p['engine_sha256'], 'engine_sha256')
        checksum = _install.check_sha256(p['checksum'], 'checksum')
        engine = _install.engine_path(engine_sha, p['engine_root'])
    except _install.InstallError as e:
        module.fail_json(msg=str(e))
    result = dict(changed=False, bundle_id=p['bundle_id'], path=path, checksum=checksum, engine=engine,
                  engine_sha256=engine_sha)
    installed = _install.has_content(path, checksum)
    if not installed and (src is None or module.check_mode):
        result.update(installed=False, changed=src is not None)
        module.exit_json(**result)
    if installed and module.check_mode:
        result.update(installed=True, changed=not _install.has_content(engine, engine_sha))
        if not result['changed']:
            _described(_engine.run(module, [sys.executable, engine], ['bundle', 'info', '--', path],
                                   **result)['result'], result)
        module.exit_json(**result)
    bundle = path if installed else src
    try:
        if not installed and _install.describe(src)[1] != checksum:
            raise _install.InstallError('%s: content differs from checksum %s (damaged in transfer?)' % (src, checksum))
        engine, result['changed'] = _install.install_engine_from_bundle(bundle, p['engine_member'], p['engine_size'],
                                                                        engine_sha, p['engine_root'])
    except (_install.InstallError, OSError) as e:
        module.fail_json(msg='cannot install the engine of the bundle: %s' % e, **result)
    command = [sys.executable, engine]
    if installed:
        manifest = _engine.run(module, command, ['bundle', 'info', '--', path], **result)['result']
    else:
        verified = _engine.run(module, command, ['bundle', 'verify', '--', src], **result)['result']
        if (verified['bundle_id'], verified['engine_sha256']) != (p['bundle_id'], engine_sha):
            module.fail_json(msg='%s holds bundle %s with engine %s, not bundle %s with engine %s' % (
                src, verified['bundle_id'], verified['engine_sha256'], p['bundle_id'], engine_sha), **result)
        manifest = _engine.run(module, command, ['bundle', 'info', '--', src], **result)['result']
        try:
            _install.install_file(src, path, checksum)
        except (_install.InstallError, OSError) as e:
            module.fail_json(msg='cannot install the bundle: %s' % e, **result)
        result['changed'] = True
    result['installed'] = True
    module.exit_json(**_described(manifest, result))


if __name__ == '__main__':
    main()

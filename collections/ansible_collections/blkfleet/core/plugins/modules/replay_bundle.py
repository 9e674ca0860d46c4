#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: replay_bundle
short_description: Push a blkfleet replay bundle to hosts, or let them pull it from a web server, content-addressed
version_added: 0.1.0
description:
  - Puts a replay bundle (manifest, replay files and the engine C(engine.pyz) in one file) at
    C(DEST/<bundle_id>.tar) on the hosts, where M(blkfleet.core.btreplay) replays it by its id.
  - Push takes a bundle file from the controller (O(src)), or builds one on the controller from replay files
    (O(replay_dir), with C(blkfleet bundle create)), and sends it over the connection to every host.
  - Pull (O(url)) has every host download the bundle itself from a web server or an object store (a presigned S3
    URL included), where C(blkfleet bundle publish) or M(blkfleet.core.bundle_publish) put it once. The host checks
    the download against the bundle id before anything of it is used (its manifest's hash, then the engine of that
    manifest verifies every member), installs it only then, and keeps nothing of a download that failed or did not
    match. The controller sends no bundle bytes, so the controller's uplink no longer limits a large fleet.
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
      - Path on the controller of the bundle file (M(blkfleet.core.btrecord)'s
        RV(blkfleet.core.btrecord#module:bundle)).
      - The action plugin transfers it to a temporary path on the host and passes that path to the module.
        When the module runs without O(src), it only reports whether the bundle is installed.
      - Exactly one of O(src), O(replay_dir) and O(url) is required, except that O(src) may come with O(url). The
        controller then reads the bundle's id, engine and file SHA-256 from O(src), and the hosts pull O(url), which
        must hold the same bytes.
    type: path
  replay_dir:
    description:
      - Build the bundle on the controller from the replay files (C(DEV.replay.CPU)) in this controller
        directory, then push it. Each run builds it again (deterministically); to push one bundle to many
        hosts, build it once with M(blkfleet.core.btrecord) and push it with O(src).
      - It must be one nobody but root (or the user running Ansible) can change, nor a directory above it, nor a
        link on the way; a sticky directory such as C(/tmp) itself is refused, a directory of root's under it is
        fine. Otherwise the task fails and nothing is pushed.
    type: path
  url:
    description:
      - Pull mode. The C(http://) or C(https://) URL each host downloads the bundle from, for example
        C(http://web1/bundles/<bundle_id>.tar) as C(blkfleet bundle publish --to) wrote it, or a presigned S3 GET URL;
        or a base URL, ending in C(/), under which the bundle is C(<bundle_id>.tar).
      - The bundle id is O(bundle_id), else the URL's last path part C(<bundle_id>.tar), else O(src)'s; the task fails
        when none tells it (a host verifies the download against it).
      - A bundle the host holds under that id already is not downloaded again (RV(ignore:changed=false)).
      - Messages and results give the URL without its user, query and fragment (a presigned URL's signature). The
        task's arguments, which C(-v) shows, hold it as given; set C(no_log) on the task to hide them too.
    type: str
  timeout:
    description:
      - Pull mode. Seconds for the connection and for each read (not for the whole download).
    type: int
    default: 30
  retries:
    description:
      - Pull mode. Further attempts after a failure that may pass (no connection, a connection cut, a timeout,
        HTTP 408, 429 or 5xx). Each attempt starts from the first byte. Other HTTP errors (404, 403) and a download
        that does not match the bundle id fail at once.
    type: int
    default: 3
  retry_delay:
    description:
      - Pull mode. Seconds between two attempts.
    type: float
    default: 2
  validate_certs:
    description:
      - Pull mode. Check the server's certificate (https).
    type: bool
    default: true
  use_proxy:
    description:
      - Pull mode. Use the host's proxy settings (E(https_proxy), E(http_proxy), E(no_proxy)).
    type: bool
    default: true
  ca_path:
    description:
      - Pull mode. CA certificates (PEM) on the host for the server's certificate, instead of the system's.
    type: path
  headers:
    description:
      - Pull mode. HTTP headers to send, for example an object store's authorization. Not logged.
    type: dict
    default: {}
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
      - It is held to the rule of O(replay_dir).
    type: path
  source_host:
    description:
      - With O(replay_dir), the name of the host the IO was captured on, for the manifest.
    type: str
  record_json:
    description:
      - With O(replay_dir), the C(blkfleet record --json) summary, cross-checked against the files.
      - It must be a file of root's that nobody else can write or replace (in a sticky directory such as C(/tmp) only
        its owner can), reached through no other user's link; otherwise the task fails and no bundle is made.
    type: path
  dest:
    description:
      - Directory on the host for pushed and pulled bundles, made if missing.
      - It must be one nobody but root can change, links resolved. It and every directory above it must be owned by
        root and not writable by others (a sticky directory such as C(/tmp) counts only above it). Otherwise the task
        fails and nothing is installed (another user could replace or redirect a bundle after it was checked).
    type: path
    default: /var/lib/blkfleet/bundles
  engine_root:
    description:
      - Directory on the host under which the bundle's engine is installed (C(<sha256>/engine.pyz)).
    type: path
    default: /var/lib/blkfleet/engine
  bundle_id:
    description:
      - Id of the bundle. Set by the action plugin from the manifest (push), or from O(url) (pull); the bundle must
        have it.
    type: str
  checksum:
    description:
      - SHA-256 of the bundle file. Set by the action plugin from O(src); when given, the pushed or pulled file must
        have it (a pull checks it before reading the file).
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
        transfers and downloads nothing and predicts RV(ignore:changed).
  diff_mode:
    support: none
notes:
  - Use the fully qualified name C(blkfleet.core.replay_bundle); through a short name from a C(library) path,
    Ansible would run the module without its action plugin, and nothing would be transferred.
  - Bundles are uncompressed tar files, so that the same content always has the same bytes. For large bundles
    over slow links, compress the transport (SSH compression).
  - Push sends the bundle once per host from the controller; pull sends it once from the controller to the server
    (C(blkfleet bundle publish)), and the server sends it to each host. Pull is the mode for more than a few hosts;
    push needs no server.
  - Pull uses Ansible's URL client (the one of M(ansible.builtin.get_url)) on the host, not the engine's. The engine
    comes inside the bundle, so the host has none it could trust before the download is checked.
  - A pull downloads into a private directory C(DEST/.pull-*) and renames the bundle into place only once it is
    verified; a failed pull removes that directory, and one left by a killed pull is removed by a later pull once
    nothing was written in it for an hour.
seealso:
  - module: blkfleet.core.bundle_publish
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

- name: Let every host pull a bundle published with blkfleet bundle publish db1.bundle --to /srv/www/bundles
  blkfleet.core.replay_bundle:
    url: "http://web1/bundles/{{ bundle_id }}.tar"
    retries: 5
  register: pulled

- name: Pull from a presigned S3 URL, naming the bundle (its id is not in the URL)
  blkfleet.core.replay_bundle:
    url: "{{ presigned_get_url }}"
    bundle_id: "{{ bundle_id }}"

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
  description: Path of the bundle on the host (in O(dest) with its links resolved).
  returned: success
  type: str
  sample: /var/lib/blkfleet/bundles/3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d.tar
checksum:
  description: SHA-256 of the bundle file.
  returned: success, except a pull of a bundle the host already held when the controller did not know the checksum
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
url:
  description: Pull mode. The URL, without user, query and fragment.
  returned: pull
  type: str
  sample: http://web1/bundles/3b9c1c0e5f0e4d7a9c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d.tar
fetched:
  description: Pull mode. Whether the host downloaded the bundle in this run.
  returned: pull
  type: bool
  sample: true
attempts:
  description: Pull mode. Download attempts made (0 when the bundle was there).
  returned: pull
  type: int
  sample: 1
size:
  description: Pull mode. Bytes downloaded.
  returned: pull, when the host downloaded the bundle
  type: int
  sample: 268700160
download_s:
  description: Pull mode. Seconds the download took (all attempts), before the checks.
  returned: pull, when the host downloaded the bundle
  type: float
  sample: 2.31
capture_window:
  description:
    - The manifest's capture window, C(first_ns), C(last_ns) and C(span_ns) (nanoseconds). C(span_ns) is how long
      the recorded workload lasted, so a replay at acceleration 1 lasts about as long.
  returned: when the bundle is installed, and in check mode
  type: dict
  sample: {first_ns: 521832678890, last_ns: 521869498021, span_ns: 36819131}
'''

import os
import sys
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.blkfleet.core.plugins.module_utils import _engine, _install, _pull
from ansible_collections.blkfleet.core.plugins.module_utils._protocol import EngineError


def _described(manifest, result):
    result.update(devices=list(manifest['replay']['devices']), totals=manifest['totals'],
                  capture_window=manifest.get('capture_window') or {})
    return result


def _installed_manifest(path, bundle_id, checksum):
    """The manifest of the bundle installed at ``path``, or None. Without the file's checksum, its manifest's id is
    checked: a file gets there only by a rename after it was verified whole."""
    try:
        if checksum and not _install.has_content(path, checksum):
            return None
        return _install.checked_manifest(path, bundle_id)
    except (_install.InstallError, OSError):
        return None


def _engine_of(module, manifest, p, result):
    """The manifest's engine entry, which must be the controller's when it named one."""
    engine = manifest['engine']
    expected = (p['engine_member'], p['engine_size'], p['engine_sha256'])
    if any(expected) and expected != (engine['path'], engine['size'], engine['sha256']):
        module.fail_json(msg='bundle %s has engine %s, not %s' % (manifest['bundle_id'], engine['sha256'],
                                                                  p['engine_sha256']), **result)
    return engine


def _fetch(module, p, bundle_id, checksum, path, result):
    """Download the bundle into a private directory, check it against its id, then install its engine and it."""
    shown = result['url']
    work = _pull.workdir(p['dest'], bundle_id)
    try:
        started = time.monotonic()
        try:
            tmp, size, sha256, attempts = _pull.download(
                p['url'], work, checksum, timeout=p['timeout'], retries=p['retries'], retry_delay=p['retry_delay'],
                validate_certs=p['validate_certs'], use_proxy=p['use_proxy'], ca_path=p['ca_path'],
                headers=p['headers'])
        except _pull.PullError as e:
            result['attempts'] = e.attempts
            module.fail_json(msg=str(e), status=e.status, **result)
        result.update(attempts=attempts, size=size, checksum=sha256, download_s=round(time.monotonic() - started, 3))

        def refuse(problem):
            module.fail_json(msg='%s: refused, nothing kept: %s' % (shown, problem.replace(tmp, 'the download')),
                             **result)

        try:
            manifest = _install.checked_manifest(tmp, bundle_id)
            engine = _engine_of(module, manifest, p, result)
            tmp_engine = os.path.join(work, _engine.ENGINE_NAME)
            _install.extract_engine(tmp, engine['path'], engine['size'], engine['sha256'], tmp_engine)
        except _install.InstallError as e:
            refuse(str(e))
        try:  # the engine the id names checks every member against the manifest
            verified = _engine.call(module, [sys.executable, tmp_engine], ['bundle', 'verify', '--', tmp])['result']
        except EngineError as e:
            refuse(e.message)
        if (verified['bundle_id'], verified['engine_sha256']) != (bundle_id, engine['sha256']):
            refuse('holds bundle %s with engine %s' % (verified['bundle_id'], verified['engine_sha256']))
        result['engine'] = _install.engine_path(engine['sha256'], p['engine_root'])
        try:
            if not _install.has_content(result['engine'], engine['sha256']):
                _install.install_file(tmp_engine, result['engine'], engine['sha256'], mode=0o755)
            os.rename(tmp, path)
        except (_install.InstallError, OSError) as e:
            module.fail_json(msg='cannot install the bundle: %s' % e, **result)
    finally:
        _pull.remove_workdir(work)
    result.update(changed=True, fetched=True)
    return manifest


def pull(module, p):
    """Pull mode: the host downloads the bundle from ``url`` unless it holds it under its id."""
    try:
        url = _pull.check_url(p['url'])
        if _pull.is_base(url) and p['bundle_id']:
            url = _pull.under(url, _install.check_sha256(p['bundle_id'], 'bundle_id'))
        named = _pull.bundle_id_of(url)
        if p['bundle_id'] and named and named != p['bundle_id']:
            raise _install.InstallError('%s names bundle %s, not bundle_id %s'
                                        % (_pull.redact(url), named, p['bundle_id']))
        bundle_id = p['bundle_id'] or named
        if not bundle_id:
            raise _install.InstallError('%s: which bundle is it? Give bundle_id (a published bundle\'s URL ends in '
                                        '<bundle_id>.tar)' % _pull.redact(url))
        path = _install.bundle_path(bundle_id, p['dest'])
        checksum = p['checksum'] and _install.check_sha256(p['checksum'], 'checksum')
    except (_pull.PullError, _install.InstallError) as e:
        module.fail_json(msg=str(e))
    result = dict(changed=False, bundle_id=bundle_id, path=path, url=_pull.redact(url), fetched=False, attempts=0)
    if checksum:
        result['checksum'] = checksum
    manifest = _installed_manifest(path, bundle_id, checksum)
    if manifest is None and module.check_mode:
        module.exit_json(installed=False, **dict(result, changed=True))
    if manifest is None:
        _pull.remove_stale(p['dest'])
        manifest = _fetch(module, p, bundle_id, checksum, path, result)
    else:
        engine = _engine_of(module, manifest, p, result)
        result['engine'] = _install.engine_path(engine['sha256'], p['engine_root'])
        if module.check_mode:
            result['changed'] = not _install.has_content(result['engine'], engine['sha256'])
        else:
            try:
                result['engine'], result['changed'] = _install.install_engine_from_bundle(
                    path, engine['path'], engine['size'], engine['sha256'], p['engine_root'])
            except (_install.InstallError, OSError) as e:
                module.fail_json(msg='cannot install the engine of the bundle: %s' % e, **result)
    result.update(installed=True, engine_sha256=manifest['engine']['sha256'])
    module.exit_json(**_described(manifest, result))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path'),
            replay_dir=dict(type='path'),
            url=dict(type='str'),
            timeout=dict(type='int', default=30),
            retries=dict(type='int', default=3),
            retry_delay=dict(type='float', default=2),
            validate_certs=dict(type='bool', default=True),
            use_proxy=dict(type='bool', default=True),
            ca_path=dict(type='path'),
            headers=dict(type='dict', default={}, no_log=True),
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
        mutually_exclusive=[('src', 'replay_dir'), ('url', 'replay_dir')],
        supports_check_mode=True,
    )
    p = module.params
    if p['replay_dir']:
        module.fail_json(msg='replay_dir is handled on the controller: use the action plugin '
                             '(blkfleet.core.replay_bundle, by its full name)')
    try:  # nobody else may change what is installed there, nor where it points
        p['dest'] = _install.trusted_dir(p['dest'], create=bool(p['src'] or p['url']) and not module.check_mode)
    except _install.InstallError as e:
        module.fail_json(msg=str(e))
    if p['url']:
        pull(module, p)
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
            command = _engine.find_engine(module, sha256=engine_sha, root=p['engine_root'])
            _described(_engine.run(module, command, ['bundle', 'info', '--', path], **result)['result'], result)
        module.exit_json(**result)
    bundle = path if installed else src
    try:
        if not installed and _install.describe(src)[1] != checksum:
            raise _install.InstallError('%s: content differs from checksum %s (damaged in transfer?)' % (src, checksum))
        engine, result['changed'] = _install.install_engine_from_bundle(bundle, p['engine_member'], p['engine_size'],
                                                                        engine_sha, p['engine_root'])
    except (_install.InstallError, OSError) as e:
        module.fail_json(msg='cannot install the engine of the bundle: %s' % e, **result)
    command = _engine.find_engine(module, sha256=engine_sha, root=p['engine_root'])
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

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of blkfleet.core.replay_bundle: build or take a bundle on the controller and push it once, or tell
the host which bundle to pull from a URL (the host downloads and checks it itself)."""

from __future__ import annotations

import os

from ansible.errors import AnsibleError

from ansible_collections.blkfleet.core.plugins.module_utils import _pull
from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller, _files
from ansible_collections.blkfleet.core.plugins.plugin_utils._action import BlkfleetAction

MODULE = 'blkfleet.core.replay_bundle'


def build_bundle(workdir, args):
    """``blkfleet bundle create`` from ``args['replay_dir']`` into ``workdir``; returns the bundle's path."""
    path = os.path.join(workdir, 'bundle.tar')
    argv = ['bundle', 'create', '-d', args['replay_dir'], '-o', path]
    if args['trace_dir']:
        argv += ['--trace-dir', args['trace_dir']]
    if args['source_host']:
        argv += ['--source-host', args['source_host']]
    if args['record_json']:
        argv += ['--record-json', args['record_json']]
    if args['devices']:
        argv += ['--'] + list(args['devices'])
    else:
        argv.append('-F')
    _controller.run(argv)
    return path


class ActionModule(BlkfleetAction):

    TRANSFERS_FILES = False
    ARGUMENT_SPEC = dict(
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
        dest=dict(type='path', default='/var/lib/blkfleet/bundles'),
        engine_root=dict(type='path', default='/var/lib/blkfleet/engine'),
        bundle_id=dict(type='str'),
        checksum=dict(type='str'),
        engine_member=dict(type='str'),
        engine_size=dict(type='int'),
        engine_sha256=dict(type='str'),
    )
    MUTUALLY_EXCLUSIVE = [('src', 'replay_dir'), ('url', 'replay_dir')]
    REQUIRED_ONE_OF = [('src', 'replay_dir', 'url')]
    PULL_OPTIONS = ('url', 'timeout', 'retries', 'retry_delay', 'validate_certs', 'use_proxy', 'ca_path', 'headers',
                    'dest', 'engine_root')

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp

        def body(workdir):
            args = self.validated_args()
            if args['url']:
                return self.pull(result, task_vars, args)
            local = self._find_needle('files', args['src']) if args['src'] else build_bundle(workdir, args)
            manifest = _controller.run(['bundle', 'info', '--', local])['result']
            bundle_id = manifest['bundle_id']
            checksum = _files.describe(local)[1]
            for key, value in (('bundle_id', bundle_id), ('checksum', checksum)):
                if args[key] and args[key] != value:
                    raise AnsibleError('%s has %s %s, not the %s given' % (local, key, value, args[key]))
            engine = manifest['engine']
            remote_args = dict(bundle_id=bundle_id, checksum=checksum, dest=args['dest'],
                               engine_root=args['engine_root'], engine_member=engine['path'],
                               engine_size=engine['size'], engine_sha256=engine['sha256'])
            return self.push(result, task_vars, MODULE, local, 'bundle.tar', remote_args,
                             check_extra=dict(devices=list(manifest['replay']['devices']),
                                              totals=manifest['totals'],
                                              capture_window=manifest.get('capture_window') or {}))

        return self.guarded(result, body, 'blkfleet-bundle-')

    def pull(self, result, task_vars, args):
        """Pull mode: the host downloads the bundle itself; the bundle id is always given. With ``src`` (the same
        bytes, on the controller) the host also gets the file's SHA-256 and the engine the manifest names; that costs
        the controller a hash of the file per host, which ``bundle_id`` and ``checksum`` (from the publication, once)
        spare it."""
        remote_args = dict((key, args[key]) for key in self.PULL_OPTIONS)
        named = _pull.bundle_id_of(args['url'])
        bundle_id = args['bundle_id'] or named
        if args['src']:
            local = self._find_needle('files', args['src'])
            manifest = _controller.run(['bundle', 'info', '--', local])['result']
            engine = manifest['engine']
            if bundle_id and bundle_id != manifest['bundle_id']:
                raise AnsibleError('%s holds bundle %s, not bundle %s that the url or bundle_id names' % (
                    local, manifest['bundle_id'], bundle_id))
            bundle_id = manifest['bundle_id']
            checksum = _files.describe(local)[1]
            if args['checksum'] and args['checksum'] != checksum:
                raise AnsibleError('%s has checksum %s, not the checksum given' % (local, checksum))
            remote_args.update(checksum=checksum, engine_member=engine['path'], engine_size=engine['size'],
                               engine_sha256=engine['sha256'])
        elif args['checksum']:
            remote_args['checksum'] = args['checksum']
        if not bundle_id:
            raise AnsibleError('%s: which bundle is it? Give bundle_id or src (a published bundle\'s URL ends in '
                               '<bundle_id>.tar)' % _pull.redact(args['url']))
        remote_args['bundle_id'] = bundle_id
        if _pull.is_base(args['url']):
            remote_args['url'] = _pull.under(args['url'], bundle_id)
        result.update(self._execute_module(module_name=MODULE, module_args=remote_args, task_vars=task_vars))
        return result

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of blkfleet.core.replay_bundle: build or take a bundle on the controller, push it once."""

from __future__ import annotations

import os

from ansible.errors import AnsibleError

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
    MUTUALLY_EXCLUSIVE = [('src', 'replay_dir')]
    REQUIRED_ONE_OF = [('src', 'replay_dir')]

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp

        def body(workdir):
            args = self.validated_args()
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

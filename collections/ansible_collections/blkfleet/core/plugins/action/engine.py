# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of blkfleet.core.engine: build engine.pyz on the controller, install it on the host."""

from __future__ import annotations

import os

from ansible.errors import AnsibleError

from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller, _files
from ansible_collections.blkfleet.core.plugins.plugin_utils._action import BlkfleetAction

MODULE = 'blkfleet.core.engine'


def build_engine(workdir):
    """Build engine.pyz from the controller's blkfleet package into ``workdir``; returns (path, sha256)."""
    built = _controller.run(['bundle', 'engine', '-o', os.path.join(workdir, 'engine.pyz')])['result']
    return built['path'], built['sha256']


class ActionModule(BlkfleetAction):

    TRANSFERS_FILES = False
    ARGUMENT_SPEC = dict(
        src=dict(type='path'),
        sha256=dict(type='str'),
        root=dict(type='path', default='/var/lib/blkfleet/engine'),
    )

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp

        def body(workdir):
            args = self.validated_args()
            if args['src']:
                local = self._find_needle('files', args['src'])
                sha = _files.describe(local)[1]
            else:
                local, sha = build_engine(workdir)
            if args['sha256'] and args['sha256'] != sha:
                raise AnsibleError('%s has sha256 %s, not the %s given' % (local, sha, args['sha256']))
            return self.push(result, task_vars, MODULE, local, 'engine.pyz', dict(sha256=sha, root=args['root']))

        return self.guarded(result, body, 'blkfleet-engine-')

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of blkfleet.core.engine: build engine.pyz on the controller, install it on the host."""

from __future__ import annotations

import os
import shutil
import tempfile

from ansible.errors import AnsibleError

from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller
from ansible_collections.blkfleet.core.plugins.plugin_utils._action import BlkfleetAction

MODULE = 'blkfleet.core.engine'


def build_engine(workdir):
    """Build engine.pyz from the controller's blkfleet package into ``workdir``; returns its path."""
    path = os.path.join(workdir, 'engine.pyz')
    _controller.run_engine(['bundle', 'engine', '-o', path])
    return path


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
        workdir = None
        try:
            args = self.validated_args()
            if args['src']:
                local = self._find_needle('files', args['src'])
            else:
                workdir = tempfile.mkdtemp(prefix='blkfleet-engine-')
                local = build_engine(workdir)
            sha = _controller.sha256_file(local)
            if args['sha256'] and args['sha256'] != sha:
                raise AnsibleError('%s has sha256 %s, not the %s given' % (local, sha, args['sha256']))
            probe = self._execute_module(module_name=MODULE, task_vars=task_vars,
                                         module_args=dict(sha256=sha, root=args['root']))
            if probe.get('failed') or probe.get('installed'):
                result.update(probe)
                return result
            if self._task.check_mode:
                result.update(probe, changed=True)
                return result
            remote = self.transfer(local, 'engine.pyz')
            result.update(self._execute_module(module_name=MODULE, task_vars=task_vars,
                                               module_args=dict(src=remote, sha256=sha, root=args['root'])))
            return result
        except _controller.EngineFailed as e:
            result.update(_controller.failure_result(e))
            return result
        except AnsibleError as e:
            result.update(failed=True, msg=str(e.message))
            return result
        finally:
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
            self.cleanup_remote()

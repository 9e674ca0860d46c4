# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of blkfleet.core.work_dir: ``blkfleet workdir`` on the controller only."""

from __future__ import annotations

from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller
from ansible_collections.blkfleet.core.plugins.plugin_utils._action import BlkfleetAction


class ActionModule(BlkfleetAction):

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    ARGUMENT_SPEC = dict(
        path=dict(type='path', required=True),
    )

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp

        def body(workdir):
            args = self.validated_args()
            made = _controller.work_dir(args['path'], check=self._task.check_mode)
            result.update(path=made['path'], real_path=made['real_path'], changed=not made['exists'])
            return result

        return self.guarded(result, body, 'blkfleet-workdir-')

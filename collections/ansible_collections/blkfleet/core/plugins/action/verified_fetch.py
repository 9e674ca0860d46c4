# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of blkfleet.core.verified_fetch: the host reports size and SHA-256, the controller writes a
temporary file beside the destination, checks it, and renames it only when it is whole and valid."""

from __future__ import annotations

import base64
import json
import os

from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure, AnsibleError

from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller, _files
from ansible_collections.blkfleet.core.plugins.plugin_utils._action import BlkfleetAction

MODULE = 'blkfleet.core.verified_fetch'
SLURP_MAX = 64 << 20
JSON_MAX = 64 << 20


def check_content(path, validate):
    """Raise AnsibleActionFail when the file at ``path`` is not what ``validate`` asks for."""
    if validate == 'none':
        return
    if os.path.getsize(path) > JSON_MAX:
        raise AnsibleActionFail('%s: larger than %d bytes, not checked as JSON' % (path, JSON_MAX))
    try:
        with open(path, 'rb') as f:
            json.loads(f.read().decode('utf-8'))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise AnsibleActionFail('not valid JSON: %s' % e) from None
    if validate == 'results':
        try:
            _controller.run(['results', 'check', '--', path])
        except _controller.EngineFailed as e:
            raise AnsibleActionFail('not a valid results document: %s' % e.short) from None


class ActionModule(BlkfleetAction):

    TRANSFERS_FILES = False
    ARGUMENT_SPEC = dict(
        src=dict(type='path', required=True),
        dest=dict(type='path', required=True),
        validate=dict(type='str', choices=['none', 'json', 'results'], default='none'),
        mode=dict(type='str', default='0644'),
    )

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp

        def body(workdir):
            args = self.validated_args()
            try:
                mode = int(args['mode'], 8)
            except ValueError:
                raise AnsibleActionFail('mode must be octal, like 0644, not %r' % args['mode']) from None
            src, dest = args['src'], os.path.abspath(args['dest'])
            remote = self._execute_module(module_name=MODULE, module_args=self._task.args, task_vars=task_vars)
            if remote.get('failed'):
                result.update(remote)
                return result
            size, sha256 = remote['size'], remote['sha256']
            result.update(src=src, dest=dest, size=size, sha256=sha256, changed=False)
            if os.path.isfile(dest) and not os.path.islink(dest) and _files.describe(dest) == (size, sha256):
                return result
            result['changed'] = True
            if self._task.check_mode:
                return result
            partial = _files.temp_beside(dest)
            try:
                self.transfer_to(src, partial, size, task_vars)
                got = _files.describe(partial)
                if got != (size, sha256):
                    raise AnsibleActionFail('%s: fetched %d bytes (sha256 %s), the host reported %d bytes (sha256 %s)'
                                            % (src, got[0], got[1], size, sha256))
                check_content(partial, args['validate'])
                _files.commit(partial, dest, mode)
            except AnsibleActionFail as e:
                _files.discard(partial)
                raise AnsibleActionFail('%s: %s' % (dest, e.message)) from None
            except (AnsibleError, OSError) as e:
                _files.discard(partial)
                raise AnsibleActionFail('cannot fetch %s to %s: %s'
                                        % (src, dest, getattr(e, 'message', None) or e)) from None
            except BaseException:
                _files.discard(partial)
                raise
            return result

        return self.guarded(result, body, 'blkfleet-fetch-')

    def transfer_to(self, src, local, size, task_vars):
        """The connection's own transfer; under become, a refused one is read through slurp when small enough."""
        try:
            self._connection.fetch_file(src, local)
            return
        except AnsibleConnectionFailure:
            raise
        except AnsibleError:
            if not self._connection.become or size > SLURP_MAX:
                raise
        slurped = self._execute_module(module_name='ansible.legacy.slurp', module_args=dict(src=src),
                                       task_vars=task_vars)
        if slurped.get('failed'):
            raise AnsibleActionFail('cannot read %s: %s' % (src, slurped.get('msg')))
        with open(local, 'wb') as f:
            f.write(base64.b64decode(slurped['content']))

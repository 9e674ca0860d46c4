# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of blkfleet.core.bundle_publish: ``blkfleet bundle publish`` on the controller, once."""

from __future__ import annotations

from ansible.errors import AnsibleError

from ansible_collections.blkfleet.core.plugins.module_utils import _pull
from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller
from ansible_collections.blkfleet.core.plugins.plugin_utils._action import BlkfleetAction


def pull_url(to, url, name):
    """Where the targets pull ``name`` from: under ``url`` (a base), else under ``to`` when it is a base URL."""
    base = url or (to if '://' in to else None)
    if not base:
        return None
    if '://' in to and not url and not _pull.urlsplit(to).path.endswith('/'):
        return to
    parts = _pull.urlsplit(base)
    path = parts.path if parts.path.endswith('/') else parts.path + '/'
    return _pull.urlunsplit(parts._replace(path=path + name))


class ActionModule(BlkfleetAction):

    TRANSFERS_FILES = False
    _requires_connection = False
    ARGUMENT_SPEC = dict(
        src=dict(type='path', required=True),
        to=dict(type='str', required=True),
        url=dict(type='str'),
        timeout=dict(type='float', default=60),
        retries=dict(type='int', default=3),
        retry_delay=dict(type='float', default=2),
        ca_file=dict(type='path'),
    )

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        try:
            args = self.validated_args()
            if args['url']:
                _pull.check_url(args['url'])
            local = self._find_needle('files', args['src'])
            argv = ['bundle', 'publish', '--to=' + args['to'], '--timeout', str(args['timeout']),
                    '--retries', str(args['retries']), '--retry-delay', str(args['retry_delay'])]
            if args['ca_file']:
                argv += ['--ca-file', args['ca_file']]
            if self._task.check_mode:
                argv.append('--check')
            doc = _controller.run(argv + ['--', local])['result']
            doc.pop('checked', None)
            result.update(doc, url=pull_url(args['to'], args['url'], doc['name']))
        except _controller.EngineFailed as e:
            result.update(_controller.failure_result(e))
        except _pull.PullError as e:
            result.update(failed=True, msg=str(e))
        except AnsibleError as e:
            result.update(failed=True, msg=str(e.message))
        return result

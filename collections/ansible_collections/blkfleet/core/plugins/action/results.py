# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of blkfleet.core.results: the results store and the HTML report, on the controller only."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail

from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller
from ansible_collections.blkfleet.core.plugins.plugin_utils._action import BlkfleetAction


def add(args):
    if not args['files']:
        raise AnsibleActionFail('action=add needs files')
    argv = ['results', 'add'] + _controller.store_option(args['db'])
    if args['bundle_id']:
        argv += ['--bundle-id', args['bundle_id']]
    for key, value in sorted(args['tags'].items()):
        argv += ['--tag', '%s=%s' % (key, value)]
    runs = _controller.run(argv + ['--'] + list(args['files']))['result']['runs']
    return dict(changed=any(r['added'] for r in runs), runs=runs)


def baselines(args):
    try:
        listed = _controller.run(['results', 'baseline', 'list'] + _controller.store_option(args['db']))['result']
    except _controller.EngineFailed as e:
        if e.code != 'not_found':
            raise
        listed = []  # no store yet: no baseline
    return dict(changed=False, baselines=listed)


def baseline(args):
    if not args['name'] or not args['runs']:
        raise AnsibleActionFail('action=baseline needs name and runs')
    argv = (['results', 'baseline', 'set'] + _controller.store_option(args['db'])
            + ['--run'] + [str(r) for r in args['runs']])
    return dict(changed=True, baseline=_controller.run(argv + ['--', args['name']])['result'])


def report(args):
    if not args['report']:
        raise AnsibleActionFail('action=report needs report, the HTML file to write')
    argv = ['report', '-o', args['report']] + _controller.store_option(args['db'])
    if args['name']:
        argv += ['--baseline', args['name']]
    return dict(changed=True, report=_controller.run(argv)['result'])


class ActionModule(BlkfleetAction):

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = False
    ARGUMENT_SPEC = dict(
        action=dict(type='str', required=True, choices=['add', 'baselines', 'baseline', 'report']),
        db=dict(type='str'),
        files=dict(type='list', elements='path', default=[]),
        tags=dict(type='dict', default={}),
        bundle_id=dict(type='str'),
        name=dict(type='str'),
        runs=dict(type='list', elements='int', default=[]),
        report=dict(type='path'),
    )
    ACTIONS = {'add': add, 'baselines': baselines, 'baseline': baseline, 'report': report}

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp

        def body(workdir):
            args = self.validated_args()
            result.update(self.ACTIONS[args['action']](args))
            return result

        return self.guarded(result, body, 'blkfleet-results-')

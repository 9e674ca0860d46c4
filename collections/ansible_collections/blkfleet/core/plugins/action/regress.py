# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of blkfleet.core.regress: a verdict against a baseline, on the controller only."""

from __future__ import annotations

from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller
from ansible_collections.blkfleet.core.plugins.plugin_utils._action import BlkfleetAction

VERDICTS = ('regression', 'insufficient_samples')  # error codes of a verdict, which the play judges


def argv_of(args):
    """``blkfleet regress`` with the task's options."""
    argv = ['regress', '--baseline', args['baseline']] + _controller.store_option(args['db']) + [
        '-q', '--alpha', repr(args['alpha']), '--test', args['test'], '--min-samples', str(args['min_samples'])]
    if args['runs']:
        argv += ['--runs'] + [str(r) for r in args['runs']]
    argv += ['--metric=%s' % m for m in args['metrics']]
    argv += ['--tolerance=%s=%s' % item for item in sorted(args['tolerances'].items())]
    argv += ['--abs-tolerance=%s=%s' % item for item in sorted(args['abs_tolerances'].items())]
    for option in ('json', 'markdown'):
        if args[option]:
            argv += ['--%s' % option, args[option]]
    return argv


class ActionModule(BlkfleetAction):

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = False
    ARGUMENT_SPEC = dict(
        db=dict(type='str'),
        baseline=dict(type='str', required=True),
        runs=dict(type='list', elements='int', default=[]),
        metrics=dict(type='list', elements='str', default=[]),
        tolerances=dict(type='dict', default={}),
        abs_tolerances=dict(type='dict', default={}),
        alpha=dict(type='float', default=0.05),
        test=dict(type='str', choices=['welch', 'mann-whitney'], default='welch'),
        min_samples=dict(type='int', default=3),
        json=dict(type='path'),
        markdown=dict(type='path'),
    )

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp

        def body(workdir):
            args = self.validated_args()
            try:
                doc = _controller.run(argv_of(args))
            except _controller.EngineFailed as e:
                if e.code not in VERDICTS or e.error.result is None:
                    raise
                doc = e.error.document
            verdict = doc['result']
            result.update(changed=bool(args['json'] or args['markdown']), verdict=verdict,
                          outcome=verdict['verdict'], exit_code=doc['exit_code'])
            return result

        return self.guarded(result, body, 'blkfleet-regress-')

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of blkfleet.core.trace_import: foreign traces -> replay files (+ a transformed bundle), on the
controller only."""

from __future__ import annotations

import os
import re

from ansible.errors import AnsibleError

from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller, _files
from ansible_collections.blkfleet.core.plugins.plugin_utils._action import BlkfleetAction

FORMATS = ['fio-iolog', 'blkparse', 'msr', 'alibaba', 'tencent', 'csv']
CSV_OPTIONS = ('columns', 'fields', 'time_unit', 'offset_unit', 'size_unit', 'ops', 'op', 'delimiter', 'skip_lines',
               'device_name')
TRANSFORM_OPTIONS = ('from', 'to', 'duration', 'skip', 'rename', 'shift', 'scale', 'wrap', 'align', 'time_scale')
ORIGIN = 'origin.json'


def _flags(options, known, what):
    """``--key value`` pairs of a dict of options (lists and dicts repeat the flag)."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise AnsibleError('unknown %s option(s) %s (known: %s)' % (what, ', '.join(unknown), ', '.join(known)))
    argv = []
    for key in known:
        value = options.get(key)
        if value is None:
            continue
        flag = '--' + key.replace('_', '-')
        if isinstance(value, dict):
            argv += [part for k, v in sorted(value.items()) for part in (flag, '%s=%s' % (k, v))]
        elif isinstance(value, list):
            argv += [flag, ','.join(str(v) for v in value)]
        else:
            argv.append('%s=%s' % (flag, value))  # '=': a value may start with '-' (a negative shift)
    return argv


def import_argv(args, workdir):
    argv = ['import', args['format']] + list(args['src']) + ['-D', workdir, '-q']
    for name, value in sorted(args['rename'].items()):
        argv += ['--rename', '%s=%s' % (name, value)]
    if args['select']:
        argv += ['--select', ','.join(args['select'])]
    if args['tolerance'] is not None:
        argv.append('--tolerance=%s' % args['tolerance'])
    if args['format'] == 'csv':
        argv += _flags(args['csv'] or {}, CSV_OPTIONS, 'csv')
    elif args['csv']:
        raise AnsibleError('csv options are for format csv only')
    return argv


def produced(directory):
    """The replay files and origin.json an import wrote into ``directory``."""
    return sorted(n for n in os.listdir(directory) if n == ORIGIN or re.match(r'^[^.]+\.replay\.\d+$', n))


class ActionModule(BlkfleetAction):

    TRANSFERS_FILES = False
    _requires_connection = False
    ARGUMENT_SPEC = dict(
        format=dict(type='str', required=True, choices=FORMATS),
        src=dict(type='list', elements='path', required=True),
        replay_dir=dict(type='path', required=True),
        bundle=dict(type='path'),
        source_host=dict(type='str'),
        select=dict(type='list', elements='str', default=[]),
        rename=dict(type='dict', default={}),
        tolerance=dict(type='str'),
        csv=dict(type='dict'),
        transform=dict(type='dict', default={}),
    )

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        return self.guarded(result, lambda workdir: self._run(result, workdir), 'blkfleet-import-')

    def _run(self, result, workdir):
        args = self.validated_args()
        args['src'] = [os.path.abspath(p) for p in args['src']]
        for path in args['src']:
            if not os.path.isfile(path):
                raise AnsibleError('src %s is not a file on the controller' % path)
        replay_dir = os.path.abspath(args['replay_dir'])
        out = os.path.join(workdir, 'replay')
        summary = _controller.run(import_argv(args, out))['result']
        names = produced(out)
        changed_files = [n for n in names
                         if not _controller.same_content(os.path.join(out, n), os.path.join(replay_dir, n))]
        stale = [n for n in (produced(replay_dir) if os.path.isdir(replay_dir) else []) if n not in names]
        check = self._task.check_mode
        if not check:
            _files.replace_all([(os.path.join(out, n), os.path.join(replay_dir, n)) for n in changed_files])
            for name in stale:
                os.unlink(os.path.join(replay_dir, name))
        files = summary['files']
        for item in files:
            item['output'] = os.path.join(replay_dir, os.path.basename(item['output']))
        result.update(changed=bool(changed_files or stale), replay_dir=replay_dir,
                      devices=[f['device'] for f in files], files=files, ios=summary['ios'],
                      updated=changed_files, removed=stale, origin=summary['origin'])
        if args['bundle']:
            target = os.path.abspath(args['bundle'])
            built = os.path.join(workdir, 'bundle.tar')
            argv = ['bundle', 'create', '-d', out if check else replay_dir, '-F', '-o', built]
            if args['source_host']:
                argv += ['--source-host', args['source_host']]
            manifest = _controller.run(argv + _flags(args['transform'], TRANSFORM_OPTIONS, 'transform'))['result']
            bundle_changed = not _controller.same_content(built, target)
            if bundle_changed and not check:
                _files.replace_all([(built, target)])
            result.update(bundle=target, bundle_id=manifest['bundle_id'], manifest=manifest,
                          changed=result['changed'] or bundle_changed)
        elif args['transform']:
            raise AnsibleError('transform options shape the bundle: give bundle too')
        return result

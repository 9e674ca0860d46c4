# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of blkfleet.core.btrecord: traces -> replay files (+ bundle), on the controller only."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

from ansible.errors import AnsibleError

from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller, _files
from ansible_collections.blkfleet.core.plugins.plugin_utils._action import BlkfleetAction

RECORD_JSON = 'record.json'


def record(args, workdir):
    """Run ``blkfleet record`` into ``workdir``; returns its summary (``{"files": [...]}``)."""
    argv = ['record', '-q', '-d', args['trace_dir'], '-D', workdir]
    if args['compat']:
        argv.append('--compat')
    if args['accept_missing']:
        argv.append('--accept-missing')
    if args['timing']:
        argv.append('--timing')
    if args['max_bunch_time'] is not None:
        argv += ['-m', args['max_bunch_time']]
    if args['max_pkts'] is not None:
        argv += ['-M', args['max_pkts']]
    argv += ['--'] + list(args['devices']) if args['devices'] else ['-F']
    return _controller.run(argv)['result']


def stale_files(replay_dir, devices, produced):
    """Replay files of ``devices`` in ``replay_dir`` that this conversion did not produce (fewer CPUs now)."""
    stale = []
    try:
        names = os.listdir(replay_dir)
    except OSError:
        return stale
    for name in sorted(names):
        for dev in devices:
            if re.match(r'^%s\.replay\.\d+$' % re.escape(dev), name) and name not in produced:
                stale.append(name)
    return stale


def bundle(args, replay_dir, summary_path, devices, workdir):
    """``blkfleet bundle create`` into ``workdir``; returns (path, manifest)."""
    path = os.path.join(workdir, 'bundle.tar')
    argv = ['bundle', 'create', '-d', replay_dir, '-o', path, '--trace-dir', args['trace_dir'],
            '--record-json', summary_path]
    if args['source_host']:
        argv += ['--source-host', args['source_host']]
    return path, _controller.run(argv + ['--'] + list(devices))['result']


class ActionModule(BlkfleetAction):

    TRANSFERS_FILES = False
    _requires_connection = False
    ARGUMENT_SPEC = dict(
        trace_dir=dict(type='path', required=True),
        replay_dir=dict(type='path', required=True),
        devices=dict(type='list', elements='str', default=[]),
        bundle=dict(type='path'),
        source_host=dict(type='str'),
        compat=dict(type='bool', default=False),
        accept_missing=dict(type='bool', default=False),
        timing=dict(type='bool', default=False),
        max_bunch_time=dict(type='int'),
        max_pkts=dict(type='int'),
    )

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        workdir = tempfile.mkdtemp(prefix='blkfleet-btrecord-')
        try:
            args = self.validated_args()
            trace_dir = os.path.abspath(args['trace_dir'])
            replay_dir = os.path.abspath(args['replay_dir'])
            args['trace_dir'] = trace_dir
            if not os.path.isdir(trace_dir):
                raise AnsibleError('trace_dir %s is not a directory on the controller' % trace_dir)
            out = os.path.join(workdir, 'replay')
            os.mkdir(out)
            summary = record(args, out)
            files = summary.get('files') or []
            devices = list(dict.fromkeys(item['device'] for item in files))
            produced = [os.path.basename(item['output']) for item in files]
            for item in files:
                item['output'] = os.path.join(replay_dir, os.path.basename(item['output']))
                item['source'] = os.path.join(trace_dir, os.path.basename(item['source']))
            summary_path = os.path.join(out, RECORD_JSON)
            with open(summary_path, 'w') as f:
                json.dump(summary, f, indent=2, sort_keys=True)
                f.write('\n')

            changed_files = [name for name in produced + [RECORD_JSON]
                             if not _controller.same_content(os.path.join(out, name), os.path.join(replay_dir, name))]
            stale = stale_files(replay_dir, devices, set(produced))
            check = self._task.check_mode
            if not check:
                # all or nothing: a full disk leaves the previous conversion whole, never half of each
                _files.replace_all([(os.path.join(out, name), os.path.join(replay_dir, name))
                                    for name in changed_files])
                for name in stale:
                    os.unlink(os.path.join(replay_dir, name))
            result.update(
                changed=bool(changed_files or stale), replay_dir=replay_dir, devices=devices,
                files=files, ios=sum(item.get('ios', 0) for item in files), updated=changed_files, removed=stale,
                record_json=os.path.join(replay_dir, RECORD_JSON), capture=summary.get('capture'))
            if args['bundle']:
                target = os.path.abspath(args['bundle'])
                source_dir = out if check else replay_dir
                built, manifest = bundle(args, source_dir, os.path.join(source_dir, RECORD_JSON), devices, workdir)
                bundle_changed = not _controller.same_content(built, target)
                if bundle_changed and not check:
                    _files.replace_all([(built, target)])
                result.update(bundle=target, bundle_id=manifest['bundle_id'], manifest=manifest,
                              changed=result['changed'] or bundle_changed)
            return result
        except _controller.EngineFailed as e:
            result.update(_controller.failure_result(e))
            return result
        except (AnsibleError, OSError, ValueError) as e:
            result.update(failed=True, msg=str(getattr(e, 'message', None) or e))
            return result
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

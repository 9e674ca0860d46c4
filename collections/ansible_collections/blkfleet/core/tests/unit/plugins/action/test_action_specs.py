# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The action plugins validate the same options as their modules document (sanity checks only the modules)."""

from __future__ import annotations

import json
import os
import sys

import pytest
import yaml

from ansible_collections.blkfleet.core.plugins.action import btrecord as btrecord_action
from ansible_collections.blkfleet.core.plugins.action import bundle_publish as bundle_publish_action
from ansible_collections.blkfleet.core.plugins.action import engine as engine_action
from ansible_collections.blkfleet.core.plugins.action import regress as regress_action
from ansible_collections.blkfleet.core.plugins.action import replay_bundle as replay_bundle_action
from ansible_collections.blkfleet.core.plugins.action import replay_job as replay_job_action
from ansible_collections.blkfleet.core.plugins.action import results as results_action
from ansible_collections.blkfleet.core.plugins.action import trace_import as trace_import_action
from ansible_collections.blkfleet.core.plugins.action import work_dir as work_dir_action
from ansible_collections.blkfleet.core.plugins.module_utils._engine import RUN_PACKAGE
from ansible_collections.blkfleet.core.plugins.modules import (
    btrecord,
    bundle_publish,
    engine,
    regress,
    replay_bundle,
    replay_job,
    results,
    trace_import,
    work_dir,
)
from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller, _files
from ansible_collections.blkfleet.core.tests.unit.engine_checkout import RANDMIX, check_document


@pytest.mark.parametrize('action, module', [
    (btrecord_action, btrecord), (bundle_publish_action, bundle_publish), (engine_action, engine),
    (replay_bundle_action, replay_bundle), (replay_job_action, replay_job), (results_action, results),
    (regress_action, regress), (trace_import_action, trace_import), (work_dir_action, work_dir)])
def test_action_spec_matches_documentation(action, module):
    options = yaml.safe_load(module.DOCUMENTATION)['options']
    spec = action.ActionModule.ARGUMENT_SPEC
    assert sorted(spec) == sorted(options)
    for name, entry in spec.items():
        doc = options[name]
        assert entry.get('type', 'str') == doc.get('type', 'str'), name
        assert entry.get('default') == doc.get('default'), name
        assert bool(entry.get('required')) == bool(doc.get('required')), name
        assert entry.get('elements') == doc.get('elements'), name
        assert entry.get('choices') == doc.get('choices'), name


def test_publish_pull_url():
    name = 'a' * 64 + '.tar'
    assert bundle_publish_action.pull_url('/srv/www/b', 'http://web1/b', name) == 'http://web1/b/' + name
    assert bundle_publish_action.pull_url('/srv/www/b', None, name) is None
    assert bundle_publish_action.pull_url('http://web1/b/', None, name) == 'http://web1/b/' + name
    assert bundle_publish_action.pull_url('https://s3/b/x.tar?sig=1', None, name) == 'https://s3/b/x.tar?sig=1'


def test_stale_files(tmp_path):
    for name in ('sda.replay.0', 'sda.replay.1', 'sda.replay.2', 'sdb.replay.0', 'sda.replay.x', 'record.json'):
        (tmp_path / name).write_text('x')
    assert btrecord_action.stale_files(str(tmp_path), ['sda'], {'sda.replay.0', 'sda.replay.1'}) == ['sda.replay.2']
    assert btrecord_action.stale_files(str(tmp_path / 'missing'), ['sda'], set()) == []


def test_replace_all_is_all_or_nothing(tmp_path):
    src = tmp_path / 'a'
    src.write_bytes(b'new')
    dest = tmp_path / 'sub' / 'b'
    _files.replace_all([(str(src), str(dest))])
    assert dest.read_bytes() == b'new' and os.listdir(str(tmp_path / 'sub')) == ['b']
    assert oct(os.stat(str(dest)).st_mode & 0o777) == '0o644'
    other = tmp_path / 'sub' / 'c'
    other.write_bytes(b'old')
    with pytest.raises(OSError):  # the second source is missing: the first destination is not replaced either
        _files.replace_all([(str(src), str(other)), (str(tmp_path / 'missing'), str(dest))])
    assert other.read_bytes() == b'old' and sorted(os.listdir(str(tmp_path / 'sub'))) == ['b', 'c']
    assert _controller.same_content(str(src), str(dest))
    assert not _controller.same_content(str(src), str(tmp_path / 'missing'))


def test_engine_command_order(monkeypatch):
    assert _controller.engine_command({'BLKFLEET_ENGINE_PYTHON': '/opt/py'}) == (['/opt/py', '-c', RUN_PACKAGE], {})
    monkeypatch.setattr(_controller.importlib.util, 'find_spec', lambda name: None)
    monkeypatch.setattr(_controller, '_CHECKOUT_ENGINE', '/nonexistent')
    monkeypatch.setattr(_controller.shutil, 'which', lambda name: '/usr/bin/blkfleet')
    assert _controller.engine_command({}) == (['/usr/bin/blkfleet'], {})
    monkeypatch.setattr(_controller.shutil, 'which', lambda name: None)
    with pytest.raises(_controller.AnsibleError, match='the Python package blkfleet is missing on the controller'):
        _controller.engine_command({})


def test_checkout_engine(monkeypatch, tmp_path):
    (tmp_path / 'blkfleet').mkdir()
    (tmp_path / 'blkfleet' / 'cli.py').write_text('')
    monkeypatch.setattr(_controller.importlib.util, 'find_spec', lambda name: None)
    monkeypatch.setattr(_controller, '_CHECKOUT_ENGINE', str(tmp_path))
    argv, env = _controller.engine_command({'PYTHONPATH': '/x'})
    assert argv == [sys.executable, '-c', RUN_PACKAGE] and env == {'PYTHONPATH': str(tmp_path) + os.pathsep + '/x'}


def test_the_controller_runner_on_the_real_engine(tmp_path):
    doc = _controller.run(['job', 'status', '--', 'unit-no-such-run'])
    assert check_document(doc)['result']['state'] == 'none'
    with pytest.raises(_controller.EngineFailed) as exc:
        _controller.run(['record', '-d', str(tmp_path / 'nowhere'), '-D', str(tmp_path), '-F'])
    check_document(exc.value.error.document)
    result = _controller.failure_result(exc.value)
    assert result['failed'] is True and result['rc'] == 2 and result['msg'] == exc.value.short
    assert result['error']['code'] == exc.value.code and 'nowhere' in result['msg']
    assert result['stderr'] == 'blkfleet: %s\n' % result['msg'] and result['cmd'][-3:] == ['-F', '--json', '-']


def test_record_and_bundle_through_the_runner(tmp_path):
    args = {'trace_dir': RANDMIX, 'compat': False, 'accept_missing': False, 'max_bunch_time': None, 'max_pkts': None,
            'devices': ['loop1'], 'source_host': 'src', 'timing': True}
    out = tmp_path / 'replay'
    out.mkdir()
    summary = btrecord_action.record(args, str(out))
    assert [f['device'] for f in summary['files']] == ['loop1', 'loop1']
    assert all(f['timing']['device']['completed'] == 2000 for f in summary['files'])  # timing: version 2 files
    assert sum(f['ios'] for f in summary['files']) == 2000
    (out / 'record.json').write_text(json.dumps(summary))
    path, manifest = btrecord_action.bundle(args, str(out), str(out / 'record.json'), ['loop1'], str(tmp_path))
    assert os.path.isfile(path) and manifest['source_host'] == 'src' and manifest['totals']['ios'] == 2000
    built = replay_bundle_action.build_bundle(str(tmp_path), {'replay_dir': str(out), 'trace_dir': None,
                                                              'source_host': None, 'record_json': None,
                                                              'devices': ['loop1']})
    assert _controller.run(['bundle', 'info', '--', built])['result']['totals']['ios'] == 2000
    args['devices'] = ['-F', '--compat']  # devices go after '--': never read as options
    with pytest.raises(_controller.EngineFailed, match='no -F.blktrace.N files found for device -F'):
        btrecord_action.record(args, str(out))


def test_trace_import_argv():
    args = {'format': 'csv', 'src': ['/t/a.csv'], 'rename': {'7': 'sdb', '1': 'sda'}, 'select': ['1', '7'],
            'tolerance': '1ms', 'csv': {'columns': 'time=0,offset=1,size=2', 'time_unit': 'us', 'skip_lines': 1}}
    assert trace_import_action.import_argv(args, '/w') == [
        'import', 'csv', '/t/a.csv', '-D', '/w', '-q', '--rename', '1=sda', '--rename', '7=sdb', '--select', '1,7',
        '--tolerance=1ms', '--columns=time=0,offset=1,size=2', '--time-unit=us', '--skip-lines=1']
    assert trace_import_action._flags({'wrap': '256M', 'skip': ['discard', 'flush'], 'shift': '-1M'},
                                      trace_import_action.TRANSFORM_OPTIONS, 'transform') == [
        '--skip', 'discard,flush', '--shift=-1M', '--wrap=256M']
    with pytest.raises(_controller.AnsibleError, match='unknown transform option'):
        trace_import_action._flags({'warp': 1}, trace_import_action.TRANSFORM_OPTIONS, 'transform')
    with pytest.raises(_controller.AnsibleError, match='for format csv only'):
        trace_import_action.import_argv(dict(args, format='msr'), '/w')


def test_results_and_regress_without_db_take_the_controllers_blkfleet_db(monkeypatch):
    """``db`` left out: no ``--db``, so the engine takes ``$BLKFLEET_DB`` (here a PostgreSQL URL it then tries)."""
    args = {'baseline': 'nightly', 'db': None, 'alpha': 0.05, 'test': 'welch', 'min_samples': 3, 'runs': [],
            'metrics': [], 'tolerances': {}, 'abs_tolerances': {}, 'json': None, 'markdown': None}
    assert '--db' not in regress_action.argv_of(args)
    assert regress_action.argv_of(dict(args, db='/srv/r.sqlite'))[3:5] == ['--db', '/srv/r.sqlite']
    monkeypatch.setenv('BLKFLEET_DB', 'postgresql://nobody@/blkfleet?host=/nonexistent-socket-dir')
    with pytest.raises(_controller.EngineFailed, match='postgresql'):
        results_action.baselines({'db': None})

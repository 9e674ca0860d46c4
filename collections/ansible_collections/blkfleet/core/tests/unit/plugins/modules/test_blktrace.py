# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os

from ansible_collections.blkfleet.core.plugins.modules import blktrace


def args(fake_capture_engine, out, **extra):
    base = {'engine': fake_capture_engine, 'output_dir': str(out), 'devices': ['loop1']}
    base.update(extra)
    return base


def test_start_twice_then_stop_twice(run, fake_capture_engine, tmp_path):
    out = tmp_path / 'cap'
    rc, res = run(blktrace.main, args(fake_capture_engine, out, buffer_kb=1024, duration=2.5,
                                      act_mask='queue,complete'))
    assert rc == 0, res
    assert res['changed'] is True and res['state'] == 'running' and res['backend'] == 'ftrace'
    argv = json.loads((out / 'fake-state.json').read_text())['argv']
    assert argv[:2] == ['capture', 'start']
    assert argv[argv.index('-b'):argv.index('-b') + 2] == ['-b', '1024']
    assert argv[argv.index('-w') + 1] == '2.5' and argv[argv.index('-a') + 1] == 'queue,complete'
    assert '--force' not in argv

    rc, res = run(blktrace.main, args(fake_capture_engine, out))
    assert rc == 0 and res['changed'] is False and res['state'] == 'running'

    rc, res = run(blktrace.main, args(fake_capture_engine, out, state='stopped'), check_mode=True)
    assert rc == 0 and res['changed'] is True and res['state'] == 'running'  # predicted, not done

    rc, res = run(blktrace.main, args(fake_capture_engine, out, state='stopped'))
    assert rc == 0 and res['changed'] is True and res['state'] == 'stopped'
    assert res['files'] == [os.path.join(str(out), 'loop1.blktrace.0'), os.path.join(str(out), 'loop1.blktrace.1')]
    assert res['queued'] == 100 and res['drops'] == 0 and res['capture']['stopped'] is True

    rc, res = run(blktrace.main, args(fake_capture_engine, out, state='stopped'))
    assert rc == 0 and res['changed'] is False and res['capture']['stopped'] is False


def test_check_mode_start_changes_nothing(run, fake_capture_engine, tmp_path):
    out = tmp_path / 'cap'
    rc, res = run(blktrace.main, args(fake_capture_engine, out), check_mode=True)
    assert rc == 0 and res['changed'] is True and res['state'] == 'none'
    assert not (out / 'fake-state.json').exists()


def test_stop_without_capture_is_no_change(run, fake_capture_engine, tmp_path):
    rc, res = run(blktrace.main, args(fake_capture_engine, tmp_path / 'nothing', state='stopped'))
    assert rc == 0 and res['changed'] is False and res['state'] == 'none'


def test_start_needs_devices(run, fake_capture_engine, tmp_path):
    rc, res = run(blktrace.main, args(fake_capture_engine, tmp_path / 'cap', devices=[]))
    assert rc == 1 and res['msg'] == 'devices is required with state=started'


def test_finished_capture_needs_force(run, fake_capture_engine, tmp_path):
    out = tmp_path / 'cap'
    run(blktrace.main, args(fake_capture_engine, out))
    run(blktrace.main, args(fake_capture_engine, out, state='stopped'))
    rc, res = run(blktrace.main, args(fake_capture_engine, out))
    assert rc == 1 and 'holds a finished capture' in res['msg'] and not res['msg'].startswith('blkfleet:')
    rc, res = run(blktrace.main, args(fake_capture_engine, out, force=True))
    assert rc == 0 and res['changed'] is True


def test_drops_fail_unless_accepted(run, fake_capture_engine, tmp_path):
    out = tmp_path / 'cap'
    run(blktrace.main, args(fake_capture_engine, out))
    (out / 'drops').write_text('7')
    rc, res = run(blktrace.main, args(fake_capture_engine, out, state='stopped'))
    assert rc == 1 and res['failed'] is True
    assert 'dropped 7 events' in res['msg'] and res['drops'] == 7 and res['changed'] is True
    rc, res = run(blktrace.main, args(fake_capture_engine, out, state='stopped', fail_on_drops=False))
    assert rc == 0 and res['drops'] == 7 and res['changed'] is False


def test_busy_tracer_waits(run, fake_capture_engine, tmp_path, monkeypatch):
    monkeypatch.setattr(blktrace, 'BUSY_POLL', 0.01)
    out = tmp_path / 'cap'
    out.mkdir()
    (out / 'busy').write_text('2')
    rc, res = run(blktrace.main, args(fake_capture_engine, out))
    assert rc == 1 and res['error']['code'] == 'tracer_busy' and 'in use by another capture' in res['msg']
    rc, res = run(blktrace.main, args(fake_capture_engine, out, busy_timeout=30))
    assert rc == 0 and res['changed'] is True
    (out / 'busy').write_text('1')
    rc, res = run(blktrace.main, args(fake_capture_engine, out, devices=['loop2'], busy_timeout=30))
    assert rc == 1 and res['error']['code'] == 'already_running'  # only tracer_busy is waited for


def test_other_devices_running_fails(run, fake_capture_engine, tmp_path):
    out = tmp_path / 'cap'
    run(blktrace.main, args(fake_capture_engine, out))
    rc, res = run(blktrace.main, args(fake_capture_engine, out, devices=['loop2']))
    assert rc == 1 and 'already running' in res['msg']


def test_missing_engine(run, tmp_path):
    rc, res = run(blktrace.main, {'output_dir': str(tmp_path), 'devices': ['x'], 'engine': str(tmp_path / 'no.pyz')})
    assert rc == 1 and 'not found' in res['msg']


def test_file_info_matches_the_files(run, fake_capture_engine, tmp_path):
    import hashlib
    out = tmp_path / 'cap'
    run(blktrace.main, args(fake_capture_engine, out))
    rc, res = run(blktrace.main, args(fake_capture_engine, out, state='stopped'))
    assert rc == 0
    names = [entry['name'] for entry in res['file_info']]
    assert names == ['loop1.blktrace.0', 'loop1.blktrace.1', 'capture.json']
    for entry in res['file_info']:
        data = (out / entry['name']).read_bytes()
        assert entry['path'] == str(out / entry['name'])
        assert entry['size'] == len(data) and entry['sha256'] == hashlib.sha256(data).hexdigest()


def test_a_failed_capture_returns_its_summary(run, fake_capture_engine, tmp_path):
    out = tmp_path / 'cap'
    run(blktrace.main, args(fake_capture_engine, out))
    (out / 'fail').write_text('')
    rc, res = run(blktrace.main, args(fake_capture_engine, out, state='stopped'))
    assert rc == 1 and res['msg'] == 'the capture failed while stopping' and res['error']['code'] == 'capture_failed'
    assert res['queued'] == 100 and len(res['files']) == 2 and 'file_info' not in res


def test_tokens(run, fake_capture_engine, tmp_path):
    out = tmp_path / 'cap'
    rc, res = run(blktrace.main, args(fake_capture_engine, out, token='run1'))
    assert rc == 0 and res['changed'] is True
    argv = json.loads((out / 'fake-state.json').read_text())['argv']
    assert argv[argv.index('--token') + 1] == 'run1'
    rc, res = run(blktrace.main, args(fake_capture_engine, out, token='run1'))
    assert rc == 0 and res['changed'] is False  # same token: idempotent
    rc, res = run(blktrace.main, args(fake_capture_engine, out, token='run2'), check_mode=True)
    assert rc == 1 and 'another run' in res['msg']  # check mode predicts the failure
    rc, res = run(blktrace.main, args(fake_capture_engine, out, token='run2'))
    assert rc == 1 and 'another run' in res['msg']
    rc, res = run(blktrace.main, args(fake_capture_engine, out, state='stopped', token='run2'))
    assert rc == 1 and 'belongs to another run' in res['msg']
    rc, res = run(blktrace.main, args(fake_capture_engine, out, token='run2', force=True), check_mode=True)
    assert rc == 0 and res['changed'] is True
    assert json.loads((out / 'fake-state.json').read_text())['token'] == 'run1'  # check mode changed nothing
    rc, res = run(blktrace.main, args(fake_capture_engine, out, token='run2', force=True))
    assert rc == 0 and res['changed'] is True
    rc, res = run(blktrace.main, args(fake_capture_engine, out, state='stopped', token='run2'))
    assert rc == 0 and res['changed'] is True
    rc, res = run(blktrace.main, args(fake_capture_engine, out, token='run2'))
    assert rc == 0 and res['changed'] is False  # that run's capture already ran


def test_check_mode_start_predicts_the_refusal_of_a_finished_capture(run, fake_capture_engine, tmp_path):
    out = tmp_path / 'cap'
    run(blktrace.main, args(fake_capture_engine, out))
    run(blktrace.main, args(fake_capture_engine, out, state='stopped'))
    rc, res = run(blktrace.main, args(fake_capture_engine, out), check_mode=True)
    assert rc == 1 and 'holds a finished capture' in res['msg']
    rc, res = run(blktrace.main, args(fake_capture_engine, out, force=True), check_mode=True)
    assert rc == 0 and res['changed'] is True
    rc, res = run(blktrace.main, args(fake_capture_engine, out, state='stopped'), check_mode=True)
    assert rc == 0 and res['changed'] is False and 'file_info' not in res

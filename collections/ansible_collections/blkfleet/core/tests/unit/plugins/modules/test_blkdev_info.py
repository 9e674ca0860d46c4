# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.blkfleet.core.plugins.modules import blkdev_info


def run_module(capsys, args, check_mode=False):
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            blkdev_info.main()
    out = json.loads(capsys.readouterr().out)
    return exc.value.code, out


@pytest.fixture
def on_tree(standard_tree, monkeypatch):
    monkeypatch.setattr(blkdev_info, 'ROOT', standard_tree.root)
    return standard_tree


def test_all_devices_skip_empty(capsys, on_tree):
    rc, out = run_module(capsys, {'content_probe': 'superblock'})
    assert rc == 0, out
    assert out['changed'] is False
    assert sorted(out['devices']) == ['loop0', 'md0', 'sda', 'vdb']  # loop1 is empty
    sda = out['devices']['sda']
    assert sda['content']['method'] == 'superblock'
    assert sda['content']['partition_table'] == 'gpt'
    assert sda['has_partition_table'] is True and sda['has_filesystem'] is False
    assert sda['in_use'] is True
    vdb = out['devices']['vdb']
    assert vdb['has_filesystem'] is True and vdb['content']['type'] == 'ext4'
    assert out['cpus']['online'] == [0, 1, 2, 5]
    assert out['tracing']['lockdown'] == 'integrity'
    assert out['io_uring']['disabled_sysctl'] == 2
    assert out['kernel']['release'] == os.uname().release


def test_include_empty_and_partitions(capsys, on_tree):
    rc, out = run_module(capsys, {'content_probe': 'none', 'include_empty': True, 'include_partitions': True})
    assert rc == 0, out
    assert sorted(out['devices']) == ['loop0', 'loop1', 'md0', 'sda', 'sda1', 'sda2', 'vdb']
    assert out['devices']['loop1']['size_bytes'] == 0
    assert out['devices']['sda1']['content']['method'] == 'mountinfo'  # not probed, but mounted
    assert out['devices']['sda1']['content']['type'] == 'ext4'
    assert out['devices']['sda2']['content']['method'] == 'none'


def test_listed_devices(capsys, on_tree):
    rc, out = run_module(capsys, {'devices': ['/dev/sda1', 'loop1', 'sda1'], 'content_probe': 'superblock'},
                         check_mode=True)
    assert rc == 0, out
    assert sorted(out['devices']) == ['loop1', 'sda1']  # empty but listed; duplicates merged
    assert out['devices']['sda1']['mountpoints'] == ['/data dir', '/srv']
    assert out['devices']['sda1']['in_use'] is True


def test_unknown_device_fails(capsys, on_tree):
    rc, out = run_module(capsys, {'devices': ['sdq']})
    assert rc == 1
    assert out['failed'] is True
    assert out['msg'] == 'no such block device: sdq'


def test_blkid_probe(capsys, on_tree, monkeypatch):
    calls = []

    def fake_run_command(self, argv, **kwargs):
        calls.append(argv)
        if argv[-1].endswith('/sda1'):
            return 0, 'DEVNAME=/dev/sda1\nUUID=abcd\nLABEL=data\nTYPE=ext4\nUSAGE=filesystem\n', ''
        if argv[-1].endswith('/loop0'):
            return 2, '', ''
        return 2, '', 'blkid: error: %s: Operation not permitted\n' % argv[-1]

    monkeypatch.setattr(blkdev_info.AnsibleModule, 'run_command', fake_run_command)
    monkeypatch.setattr(blkdev_info.AnsibleModule, 'get_bin_path',
                        lambda self, name, required=False, opt_dirs=None: '/sbin/' + name)
    rc, out = run_module(capsys, {'devices': ['sda1', 'loop0', 'sda2'], 'content_probe': 'blkid'})
    assert rc == 0, out
    assert calls[0][:4] == ['/sbin/blkid', '-p', '-o', 'export']
    sda1 = out['devices']['sda1']['content']
    assert sda1 == {'method': 'blkid', 'type': 'ext4', 'usage': 'filesystem', 'uuid': 'abcd', 'label': 'data',
                    'partition_table': None, 'error': None}
    assert out['devices']['loop0']['content']['method'] == 'blkid'  # probed, nothing found
    assert out['devices']['loop0']['content']['type'] is None
    sda2 = out['devices']['sda2']['content']
    assert sda2['method'] == 'none' and 'Operation not permitted' in sda2['error']
    assert out['tracing']['blktrace_program'] == '/sbin/blktrace'


def test_blkid_required(capsys, on_tree, monkeypatch):
    monkeypatch.setattr(os, 'environ', dict(os.environ, PATH='/nonexistent'))
    monkeypatch.setattr(blkdev_info.AnsibleModule, 'get_bin_path',
                        lambda self, name, required=False, opt_dirs=None:
                        self.fail_json(msg='Failed to find required executable "%s"' % name) if required else None)
    rc, out = run_module(capsys, {'content_probe': 'blkid'})
    assert rc == 1 and 'blkid' in out['msg']
    rc, out = run_module(capsys, {'devices': ['vdb']})  # auto falls back to the builtin probe
    assert rc == 0
    assert out['devices']['vdb']['content']['method'] == 'superblock'


def test_real_host(capsys):
    """On the real host (read-only): CPUs match the kernel's and every device has consistent sizes."""
    rc, out = run_module(capsys, {'content_probe': 'none'})
    assert rc == 0, out
    assert out['cpus']['online_count'] == len(out['cpus']['online']) >= 1
    for name, dev in out['devices'].items():
        assert dev['size_bytes'] == dev['size_sectors'] * 512 > 0
        assert dev['path'] == '/dev/' + name

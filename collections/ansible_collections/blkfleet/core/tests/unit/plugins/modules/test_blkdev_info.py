# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""blkdev_info runs the real engine's ``device info``: what it returns is that document, probe names mapped."""

from __future__ import annotations

import os
import subprocess

import yaml

from ansible_collections.blkfleet.core.plugins.modules import blkdev_info


def test_every_device_and_the_host(run, engine_pyz):
    rc, res = run(blkdev_info.main, {'engine': engine_pyz, 'content_probe': 'none'})
    assert rc == 0, res
    assert res['changed'] is False and 'probe' not in res
    assert sorted(res) == sorted(['changed', 'devices', 'cpus', 'tracing', 'aio', 'io_uring', 'kernel'] + [
        k for k in res if k.startswith('_') or k == 'invocation'])
    assert res['cpus']['online_count'] == len(res['cpus']['online']) >= 1
    assert res['kernel']['release'] == os.uname().release
    assert all(d['size_bytes'] > 0 and d['content']['method'] == 'none' for d in res['devices'].values())
    documented = yaml.safe_load(blkdev_info.RETURN)
    for name in ('devices', 'cpus', 'tracing', 'aio', 'io_uring', 'kernel'):
        assert name in documented
    for facts in res['devices'].values():
        assert set(facts) == set(documented['devices']['contains'])


def test_a_filesystem_through_the_superblock_probe(run, engine_pyz, loop_device):
    subprocess.run(['mkfs.ext4', '-q', '-F', loop_device], check=True)
    name = os.path.basename(loop_device)
    rc, res = run(blkdev_info.main, {'engine': engine_pyz, 'devices': [loop_device], 'content_probe': 'superblock'})
    assert rc == 0, res
    facts = res['devices'][name]
    assert facts['content']['method'] == 'superblock' and facts['content']['type'] == 'ext4'
    assert facts['has_filesystem'] is True and facts['type'] == 'loop' and facts['size_bytes'] == 64 << 20


def test_an_unknown_device_fails_with_the_engines_words(run, engine_pyz):
    rc, res = run(blkdev_info.main, {'engine': engine_pyz, 'devices': ['/dev/unit-no-such-device']})
    assert rc == 1 and res['msg'] == 'no such block device: /dev/unit-no-such-device'
    assert res['error']['code'] == 'not_found'


def test_without_an_engine(run, tmp_path):
    rc, res = run(blkdev_info.main, {'engine': str(tmp_path / 'none.pyz')})
    assert rc == 1 and 'blkfleet engine not found' in res['msg']

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import errno
import struct

import pytest

from ansible_collections.blkfleet.core.plugins.module_utils import _blkdev
from ansible_collections.blkfleet.core.tests.unit.conftest import ext4_image, gpt_image


@pytest.mark.parametrize('text, expected', [
    ('0-3,6,8-9', [0, 1, 2, 3, 6, 8, 9]),
    ('0', [0]),
    ('', []),
    ('1,0', [0, 1]),
])
def test_parse_cpu_list(text, expected):
    assert _blkdev.parse_cpu_list(text) == expected


def test_parse_scheduler():
    assert _blkdev.parse_scheduler('mq-deadline kyber [bfq] none') == ('bfq', ['mq-deadline', 'kyber', 'bfq', 'none'])
    assert _blkdev.parse_scheduler('[none] mq-deadline') == ('none', ['none', 'mq-deadline'])
    assert _blkdev.parse_scheduler('') == (None, [])
    assert _blkdev.parse_scheduler(None) == (None, [])


def test_parse_lockdown():
    assert _blkdev.parse_lockdown('none [integrity] confidentiality') == 'integrity'
    assert _blkdev.parse_lockdown('[none] integrity confidentiality') == 'none'
    assert _blkdev.parse_lockdown(None) is None


def test_unescape_mount_field():
    assert _blkdev.unescape_mount_field('/data\\040dir') == '/data dir'
    assert _blkdev.unescape_mount_field('/a\\011b\\134') == '/a\tb\\'
    assert _blkdev.unescape_mount_field('/plain') == '/plain'


def test_parse_blkid_export():
    values = _blkdev.parse_blkid_export('DEVNAME=/dev/loop0\nUUID=1234\nTYPE=ext4\nUSAGE=filesystem\n')
    content = _blkdev.content_from_blkid(values)
    assert content == {'method': 'blkid', 'type': 'ext4', 'usage': 'filesystem', 'uuid': '1234', 'label': None,
                       'partition_table': None, 'error': None}


@pytest.mark.parametrize('data, expected', [
    (ext4_image(), ('ext4', 'filesystem', None)),
    (gpt_image(), (None, None, 'gpt')),
    (bytes(70000), (None, None, None)),
    (b'XFSB' + bytes(70000), ('xfs', 'filesystem', None)),
    (bytes(4086) + b'SWAPSPACE2' + bytes(66000), ('swap', 'other', None)),
    (bytes(512) + b'LABELONE' + bytes(70000), ('LVM2_member', 'raid', None)),
    (b'LUKS\xba\xbe' + bytes(70000), ('crypto_LUKS', 'crypto', None)),
    (bytes(65600) + b'_BHRfS_M' + bytes(5000), ('btrfs', 'filesystem', None)),
])
def test_probe_superblock(data, expected):
    assert _blkdev.probe_superblock(data) == expected


def test_probe_superblock_ext_versions():
    data = bytearray(ext4_image())
    struct.pack_into('<II', data, 1024 + 92, 0x4, 0)
    assert _blkdev.probe_superblock(bytes(data))[0] == 'ext3'
    struct.pack_into('<II', data, 1024 + 92, 0, 0)
    assert _blkdev.probe_superblock(bytes(data))[0] == 'ext2'


def test_probe_superblock_dos_and_vfat():
    mbr = bytearray(70000)
    mbr[510:512] = b'\x55\xaa'
    mbr[446 + 4] = 0x83
    assert _blkdev.probe_superblock(bytes(mbr)) == (None, None, 'dos')
    fat = bytearray(70000)
    fat[510:512] = b'\x55\xaa'
    fat[82:90] = b'FAT32   '
    fat[446] = 0x12  # boot code, not a partition entry
    assert _blkdev.probe_superblock(bytes(fat)) == ('vfat', 'filesystem', None)


def test_device_facts(standard_tree):
    root = standard_tree.root
    mounts = _blkdev.read_mountinfo(root)
    swaps = _blkdev.read_swaps(root)
    sda = _blkdev.device_facts(root, 'sda', mounts, swaps)
    assert sda['size_bytes'] == 2097152 * 512
    assert sda['type'] == 'disk' and sda['parent'] is None
    assert sda['rotational'] is True
    assert sda['scheduler'] == 'bfq'
    assert sda['partitions'] == ['sda1', 'sda2']
    assert sda['mounted'] is False
    assert sda['trace_enable'] is True
    sda1 = _blkdev.device_facts(root, 'sda1', mounts, swaps)
    assert sda1['type'] == 'partition' and sda1['parent'] == 'sda'
    assert sda1['logical_block_size'] == 512  # from the disk's queue
    assert sda1['mountpoints'] == ['/data dir', '/srv']
    assert sda1['mounted'] is True
    assert sda1['trace_enable'] is True
    sda2 = _blkdev.device_facts(root, 'sda2', mounts, swaps)
    assert sda2['swap'] is True and sda2['mounted'] is False
    loop0 = _blkdev.device_facts(root, 'loop0', mounts, swaps)
    assert loop0['type'] == 'loop'
    assert loop0['loop'] == {'backing_file': '/dev/shm/img 0', 'offset': 0, 'sizelimit': 0, 'autoclear': True,
                             'direct_io': True, 'read_only': False}
    assert loop0['physical_block_size'] == 512
    md0 = _blkdev.device_facts(root, 'md0', mounts, swaps)
    assert md0['scheduler'] is None and md0['schedulers'] == []
    vdb = _blkdev.device_facts(root, 'vdb', mounts, swaps)
    assert vdb['holders'] == ['md0']

    facts = {name: _blkdev.device_facts(root, name, mounts, swaps) for name in ('sda', 'loop0', 'vdb', 'md0')}
    _blkdev.mark_in_use(facts, root, mounts, swaps)
    assert facts['sda']['in_use'] is True  # through its partitions
    assert facts['vdb']['in_use'] is True  # held by md0
    assert facts['loop0']['in_use'] is False
    assert facts['md0']['in_use'] is False


def test_resolve_device_name(standard_tree):
    root = standard_tree.root
    assert _blkdev.resolve_device_name(root, 'sda1') == 'sda1'
    assert _blkdev.resolve_device_name(root, '/dev/loop0') == 'loop0'
    assert _blkdev.resolve_device_name(root, 'nope') is None
    assert _blkdev.resolve_device_name(root, '/dev/nope') is None
    assert _blkdev.all_device_names(root) == ['loop0', 'loop1', 'md0', 'sda', 'vdb']


def test_content_from_superblock(standard_tree):
    root = standard_tree.root
    assert _blkdev.content_from_superblock(root, 'sda1')['type'] == 'ext4'
    assert _blkdev.content_from_superblock(root, 'sda')['partition_table'] == 'gpt'
    missing = _blkdev.content_from_superblock(root, 'sdz')
    assert missing['method'] == 'none' and 'cannot open' in missing['error']


def test_cpu_facts(standard_tree):
    cpus = _blkdev.cpu_facts(standard_tree.root)
    assert cpus['online'] == [0, 1, 2, 5]
    assert cpus['online_count'] == 4
    assert cpus['possible'] == list(range(8))
    assert cpus['affinity'] is None  # only read on the real root


def test_tracing_facts_lockdown(standard_tree):
    tracing = _blkdev.tracing_facts(standard_tree.root, blktrace_path='/usr/sbin/blktrace')
    assert tracing['lockdown'] == 'integrity'
    assert tracing['blk_tracer'] is True
    assert tracing['tracefs'] == {'mounted': True, 'path': '/sys/kernel/tracing', 'mountable': True}
    assert tracing['blktrace_relay_allowed'] is False
    assert tracing['blktrace_usable'] is False
    assert tracing['ftrace_usable'] is True
    assert tracing['recommended_backend'] == 'ftrace'


def test_tracing_facts_no_lockdown(fake_tree):
    fake_tree.disk('loop0', '7:0', 8)
    fake_tree.tracing(lockdown='[none] integrity confidentiality')
    tracing = _blkdev.tracing_facts(fake_tree.root, blktrace_path='/usr/sbin/blktrace')
    assert tracing['blktrace_relay_allowed'] is True
    assert tracing['recommended_backend'] == 'blktrace'
    without = _blkdev.tracing_facts(fake_tree.root, blktrace_path=None)
    assert without['blktrace_relay_allowed'] is True
    assert without['blktrace_usable'] is False
    assert without['blktrace_reasons'] == ['the blktrace program is not installed']
    assert without['recommended_backend'] == 'ftrace'


def test_tracing_facts_busy_and_unmounted(fake_tree):
    fake_tree.tracing(current='function')
    busy = _blkdev.tracing_facts(fake_tree.root)
    assert busy['ftrace_usable'] is False
    assert "current_tracer is 'function'" in busy['ftrace_reasons'][0]
    bare = fake_tree.__class__(fake_tree.root + '-bare')
    unmounted = _blkdev.tracing_facts(bare.root)
    assert unmounted['tracefs']['mounted'] is False and unmounted['tracefs']['mountable'] is True
    assert any('not mounted' in r for r in unmounted['ftrace_reasons'])
    assert unmounted['recommended_backend'] is None


def test_aio_and_io_uring_from_proc(standard_tree):
    aio = _blkdev.aio_facts(standard_tree.root)
    assert aio == {'available': True, 'max_nr': 65536, 'nr': 1024, 'free': 64512, 'syscall': None}
    uring = _blkdev.io_uring_facts(standard_tree.root)
    assert uring == {'available': False, 'disabled_sysctl': 2, 'group': -1, 'syscall': None}


def test_probe_syscall_classifies_errno(monkeypatch):
    class FakeLibc:
        def __init__(self, err):
            self.err = err

        def syscall(self, *args):
            _blkdev.ctypes.set_errno(self.err)
            return -1

    for err, expected in ((errno.EFAULT, 'supported'), (errno.EINVAL, 'supported'), (errno.EPERM, 'disabled'),
                          (errno.ENOSYS, 'not_implemented'), (errno.EIO, 'unknown')):
        monkeypatch.setattr(_blkdev.ctypes, 'CDLL', lambda *a, err=err, **k: FakeLibc(err))
        assert _blkdev.probe_syscall(425, 0, 0) == expected


def test_probe_syscall_real_kernel():
    # io_uring_setup(0, NULL) never creates anything; on any Linux it is classified, never raises.
    assert _blkdev.probe_syscall(425, 0, 0) in ('supported', 'disabled', 'not_implemented', 'unknown')

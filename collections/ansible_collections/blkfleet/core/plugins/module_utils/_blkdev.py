# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read-only facts about a Linux host's block devices, CPUs, kernel tracing, AIO and io_uring.

Private to the blkfleet.core collection: may change without notice.

Everything here reads /sys, /proc and (for the content probe) the first bytes of a block device. Every
function takes ``root`` so that unit tests can point it at a fake tree; on a host it is ``/``.
Python >= 3.9, standard library only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import struct

SECTOR = 512

# What lockdown(7) mode forbids debugfs: LOCKDOWN_DEBUGFS sits below LOCKDOWN_INTEGRITY_MAX, so both the
# 'integrity' and the 'confidentiality' modes make the kernel refuse blktrace's relay files with EPERM.
LOCKDOWN_BLOCKS_DEBUGFS = ('integrity', 'confidentiality')


def _path(root, path):
    return os.path.join(root, path.lstrip('/'))


def read_text(root, path, default=None):
    """The stripped content of a small /sys or /proc file, or ``default`` if it cannot be read."""
    try:
        with open(_path(root, path), 'r') as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return default


def read_int(root, path, default=None):
    text = read_text(root, path)
    if text is None:
        return default
    try:
        return int(text, 0) if text.lower().startswith('0x') else int(text)
    except ValueError:
        return default


def read_bool(root, path):
    value = read_int(root, path)
    return None if value is None else value != 0


def listdir(root, path):
    try:
        return sorted(os.listdir(_path(root, path)))
    except OSError:
        return []


def parse_cpu_list(text):
    """Parse the kernel's CPU list format (``0-3,6,8-9``) into a sorted list of ints."""
    cpus = set()
    if not text:
        return []
    for part in text.strip().split(','):
        part = part.strip()
        if not part:
            continue
        if '-' in part:
            lo, hi = part.split('-', 1)
            cpus.update(range(int(lo), int(hi) + 1))
        else:
            cpus.add(int(part))
    return sorted(cpus)


def unescape_mount_field(field):
    """Undo the octal escapes (``\\040`` for a space) of /proc/self/mountinfo fields."""
    out = []
    i = 0
    while i < len(field):
        if field[i] == '\\' and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return ''.join(out)


def read_mountinfo(root):
    """Mounts as a list of dicts: ``dev`` (``MAJ:MIN``), ``mountpoint``, ``fstype``, ``source``."""
    text = read_text(root, '/proc/self/mountinfo', '')
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if '-' not in fields:
            continue
        sep = fields.index('-')
        if sep < 5 or len(fields) < sep + 3:
            continue
        mounts.append({
            'dev': fields[2],
            'mountpoint': unescape_mount_field(fields[4]),
            'fstype': fields[sep + 1],
            'source': unescape_mount_field(fields[sep + 2]),
        })
    return mounts


def read_swaps(root):
    """Device paths in use as swap, from /proc/swaps."""
    text = read_text(root, '/proc/swaps', '')
    return [line.split()[0] for line in text.splitlines()[1:] if line.split()]


def parse_scheduler(text):
    """``mq-deadline kyber [bfq] none`` -> (``bfq``, [all]); (None, []) when the file is absent."""
    if not text:
        return None, []
    active = None
    available = []
    for word in text.split():
        if word.startswith('[') and word.endswith(']'):
            word = word[1:-1]
            active = word
        available.append(word)
    return active, available


def resolve_device_name(root, spec):
    """Kernel name (``sda``, ``loop3``, ``nvme0n1p1``) of a device given as a name or a /dev path.

    Symlinks such as /dev/disk/by-id/... and /dev/mapper/... are resolved. Returns None when no such block
    device exists in /sys/class/block.
    """
    spec = spec.strip()
    if not spec:
        return None
    name = spec
    if '/' in spec:
        # Resolve on the real filesystem: /dev symlinks are relative to the device directory.
        real = os.path.realpath(_path(root, spec)) if spec.startswith('/') else os.path.realpath(spec)
        name = os.path.basename(real)
        if not os.path.isdir(_path(root, '/sys/class/block/' + name)):
            # A device node whose name differs from the kernel name: match by major:minor.
            try:
                st = os.stat(real)
            except OSError:
                return None
            wanted = '%d:%d' % (os.major(st.st_rdev), os.minor(st.st_rdev))
            for candidate in listdir(root, '/sys/class/block'):
                if read_text(root, '/sys/class/block/%s/dev' % candidate) == wanted:
                    return candidate
            return None
    if os.path.isdir(_path(root, '/sys/class/block/' + name)):
        return name
    return None


def all_device_names(root):
    """Whole block devices (the entries of /sys/block), sorted."""
    return listdir(root, '/sys/block')


def _sys_dir(root, name):
    """The sysfs directory of a device (whole disk or partition), as a path relative to ``root``."""
    return '/sys/class/block/' + name


def is_partition(root, name):
    return os.path.exists(_path(root, _sys_dir(root, name) + '/partition'))


def parent_of(root, name):
    """The whole disk a partition belongs to (its sysfs parent directory), or None for a whole disk."""
    if not is_partition(root, name):
        return None
    real = os.path.realpath(_path(root, _sys_dir(root, name)))
    return os.path.basename(os.path.dirname(real))


def partitions_of(root, name):
    base = _sys_dir(root, name)
    return [entry for entry in listdir(root, base)
            if entry.startswith(name) and os.path.exists(_path(root, '%s/%s/partition' % (base, entry)))]


def queue_dir(root, name):
    """The queue/ directory of a device; partitions use their disk's queue."""
    parent = parent_of(root, name)
    return _sys_dir(root, parent or name) + '/queue'


# --- content probe --------------------------------------------------------------------------------------------

def parse_blkid_export(text):
    """Parse ``blkid -p -o export`` output (KEY=value lines) into a dict."""
    values = {}
    for line in text.splitlines():
        if '=' in line:
            key, value = line.split('=', 1)
            values[key.strip()] = value.strip()
    return values


def content_from_blkid(values):
    """Normalise blkid's keys into the module's ``content`` dict."""
    return {
        'method': 'blkid',
        'type': values.get('TYPE'),
        'usage': values.get('USAGE'),
        'uuid': values.get('UUID'),
        'label': values.get('LABEL'),
        'partition_table': values.get('PTTYPE'),
        'error': None,
    }


# (offset, magic bytes, type name, usage) checked in order against the first PROBE_BYTES of a device.
_MAGICS = (
    (0, b'LUKS\xba\xbe', 'crypto_LUKS', 'crypto'),
    (0, b'XFSB', 'xfs', 'filesystem'),
    (0, b'hsqs', 'squashfs', 'filesystem'),
    (65536 + 64, b'_BHRfS_M', 'btrfs', 'filesystem'),
    (1024, struct.pack('<I', 0xF2F52010), 'f2fs', 'filesystem'),
    (4096, struct.pack('<I', 0xA92B4EFC), 'linux_raid_member', 'raid'),
    (512 + 0, b'LABELONE', 'LVM2_member', 'raid'),
    (32769, b'CD001', 'iso9660', 'filesystem'),
    (3, b'NTFS    ', 'ntfs', 'filesystem'),
    (4096 - 10, b'SWAPSPACE2', 'swap', 'other'),
    (4096 - 10, b'SWAP-SPACE', 'swap', 'other'),
)

PROBE_BYTES = 65536 + 4096


def probe_superblock(data):
    """Identify a filesystem, volume signature or partition table from a device's first bytes.

    Returns ``(type, usage, partition_table)``; each is None when not recognised. A builtin, reduced stand-in
    for ``blkid -p``: ext2/3/4, xfs, btrfs, f2fs, squashfs, iso9660, ntfs, vfat, swap, LUKS, MD RAID, LVM2, and
    GPT / DOS partition tables.
    """
    fstype = usage = None
    # ext2/3/4: magic 0xEF53 at 1024 + 56; ext4 if it uses extents, flex_bg or 64bit, ext3 if it has a journal.
    if len(data) >= 1024 + 104 and data[1024 + 56:1024 + 58] == b'\x53\xef':
        compat, incompat = struct.unpack_from('<II', data, 1024 + 92)
        if incompat & (0x40 | 0x80 | 0x200):
            fstype = 'ext4'
        elif compat & 0x4:
            fstype = 'ext3'
        else:
            fstype = 'ext2'
        usage = 'filesystem'
    if fstype is None:
        for offset, magic, name, kind in _MAGICS:
            if data[offset:offset + len(magic)] == magic:
                fstype, usage = name, kind
                break
    boot_sig = data[510:512] == b'\x55\xaa'
    if fstype is None and boot_sig:
        if data[82:87] == b'FAT32' or data[54:59] in (b'FAT12', b'FAT16'):
            fstype, usage = 'vfat', 'filesystem'
    pttype = None
    if data[512:520] == b'EFI PART':
        pttype = 'gpt'
    elif boot_sig and fstype is None:
        entries = [data[446 + 16 * i:446 + 16 * (i + 1)] for i in range(4)]
        if any(e[4] != 0 for e in entries if len(e) == 16) and all(e[0] in (0, 0x80) for e in entries if len(e) == 16):
            pttype = 'dos'
    return fstype, usage, pttype


def content_from_superblock(root, name):
    content = {'method': 'superblock', 'type': None, 'usage': None, 'uuid': None, 'label': None,
               'partition_table': None, 'error': None}
    try:
        fd = os.open(_path(root, '/dev/' + name), os.O_RDONLY | getattr(os, 'O_CLOEXEC', 0))
    except OSError as e:
        content['method'] = 'none'
        content['error'] = 'cannot open /dev/%s: %s' % (name, e.strerror)
        return content
    try:
        chunks = []
        remaining = PROBE_BYTES
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b''.join(chunks)
    except OSError as e:
        content['method'] = 'none'
        content['error'] = 'cannot read /dev/%s: %s' % (name, e.strerror)
        return content
    finally:
        os.close(fd)
    fstype, usage, pttype = probe_superblock(data)
    content['type'] = fstype
    content['usage'] = usage
    content['partition_table'] = pttype
    return content


# --- devices --------------------------------------------------------------------------------------------------

def device_type(root, name):
    if is_partition(root, name):
        return 'partition'
    for prefix, kind in (('loop', 'loop'), ('dm-', 'dm'), ('md', 'md'), ('nvme', 'nvme'), ('zram', 'zram'),
                         ('nbd', 'nbd'), ('sr', 'rom'), ('ram', 'ram')):
        if name.startswith(prefix):
            return kind
    return 'disk'


def loop_info(root, name):
    base = _sys_dir(root, name) + '/loop'
    if not os.path.isdir(_path(root, base)):
        return None
    return {
        'backing_file': read_text(root, base + '/backing_file'),
        'offset': read_int(root, base + '/offset'),
        'sizelimit': read_int(root, base + '/sizelimit'),
        'autoclear': read_bool(root, base + '/autoclear'),
        'direct_io': read_bool(root, base + '/dio'),
        'read_only': read_bool(root, _sys_dir(root, name) + '/ro'),
    }


def device_facts(root, name, mounts, swaps):
    """Facts about one block device (no content probe: see :func:`content_from_superblock`)."""
    sysdir = _sys_dir(root, name)
    qdir = queue_dir(root, name)
    dev = read_text(root, sysdir + '/dev')
    sectors = read_int(root, sysdir + '/size', 0)
    active, available = parse_scheduler(read_text(root, qdir + '/scheduler'))
    mountpoints = sorted({m['mountpoint'] for m in mounts if dev and m['dev'] == dev})
    swap = any(os.path.basename(s) == name for s in swaps)
    partitions = partitions_of(root, name)
    holders = listdir(root, sysdir + '/holders')
    discard_max = read_int(root, qdir + '/discard_max_bytes', 0)
    zoned = read_text(root, qdir + '/zoned')
    return {
        'name': name,
        'path': '/dev/' + name,
        'dev': dev,
        'type': device_type(root, name),
        'parent': parent_of(root, name),
        'size_bytes': sectors * SECTOR,
        'size_sectors': sectors,
        'logical_block_size': read_int(root, qdir + '/logical_block_size'),
        'physical_block_size': read_int(root, qdir + '/physical_block_size'),
        'minimum_io_size': read_int(root, qdir + '/minimum_io_size'),
        'optimal_io_size': read_int(root, qdir + '/optimal_io_size'),
        'max_sectors_kb': read_int(root, qdir + '/max_sectors_kb'),
        'nr_requests': read_int(root, qdir + '/nr_requests'),
        'rotational': read_bool(root, qdir + '/rotational'),
        'scheduler': active,
        'schedulers': available,
        'discard': discard_max > 0,
        'zoned': zoned if zoned else None,
        'read_only': bool(read_bool(root, sysdir + '/ro')),
        'removable': read_bool(root, sysdir + '/removable'),
        'model': read_text(root, sysdir + '/device/model'),
        'mounted': bool(mountpoints),
        'mountpoints': mountpoints,
        'swap': swap,
        'partitions': partitions,
        'holders': holders,
        'slaves': listdir(root, sysdir + '/slaves'),
        'trace_enable': os.path.exists(_path(root, (_sys_dir(root, parent_of(root, name) or name))
                                             + '/trace/enable')),
        'loop': loop_info(root, name),
    }


def mark_in_use(facts_by_name, root, mounts, swaps):
    """Set ``in_use``: the device or any of its partitions is mounted, used as swap or held by another device."""
    for name, facts in facts_by_name.items():
        used = facts['mounted'] or facts['swap'] or bool(facts['holders'])
        for part in facts['partitions']:
            if part in facts_by_name:
                pf = facts_by_name[part]
            else:
                pf = device_facts(root, part, mounts, swaps)
            used = used or pf['mounted'] or pf['swap'] or bool(pf['holders'])
        facts['in_use'] = used


# --- CPUs, tracing, AIO, io_uring -----------------------------------------------------------------------------

def cpu_facts(root):
    online = parse_cpu_list(read_text(root, '/sys/devices/system/cpu/online', ''))
    try:
        affinity = sorted(os.sched_getaffinity(0)) if root == '/' else None
    except (AttributeError, OSError):
        affinity = None
    return {
        'online': online,
        'online_count': len(online),
        'present': parse_cpu_list(read_text(root, '/sys/devices/system/cpu/present', '')),
        'possible': parse_cpu_list(read_text(root, '/sys/devices/system/cpu/possible', '')),
        'affinity': affinity,
    }


def filesystems_supported(root):
    """File system types the kernel knows (/proc/filesystems)."""
    text = read_text(root, '/proc/filesystems', '')
    return {line.split()[-1] for line in text.splitlines() if line.split()}


def parse_lockdown(text):
    """``none [integrity] confidentiality`` -> ``integrity``; None when the file is absent."""
    if not text:
        return None
    for word in text.split():
        if word.startswith('[') and word.endswith(']'):
            return word[1:-1]
    return None


def tracing_facts(root, devices=(), blktrace_path=None):
    mounts = read_mountinfo(root)
    fs = filesystems_supported(root)
    tracefs_mounts = [m['mountpoint'] for m in mounts if m['fstype'] == 'tracefs']
    debugfs_mounts = [m['mountpoint'] for m in mounts if m['fstype'] == 'debugfs']
    tracefs = None
    for candidate in ('/sys/kernel/tracing', '/sys/kernel/debug/tracing'):
        if candidate in tracefs_mounts or os.path.exists(_path(root, candidate + '/available_tracers')):
            tracefs = candidate
            break
    if tracefs is None and tracefs_mounts:
        tracefs = tracefs_mounts[0]
    tracers = (read_text(root, tracefs + '/available_tracers', '') or '').split() if tracefs else []
    current = read_text(root, tracefs + '/current_tracer') if tracefs else None
    lockdown = parse_lockdown(read_text(root, '/sys/kernel/security/lockdown'))
    debugfs_mounted = '/sys/kernel/debug' in debugfs_mounts
    debugfs_known = 'debugfs' in fs
    blk_io_trace = 'blk' in tracers or any(
        os.path.isdir(_path(root, '/sys/block/%s/trace' % d)) for d in listdir(root, '/sys/block'))

    reasons = []
    if lockdown in LOCKDOWN_BLOCKS_DEBUGFS:
        reasons.append("kernel lockdown '%s' refuses debugfs relay files (EPERM)" % lockdown)
    if not (debugfs_mounted or debugfs_known):
        reasons.append('the kernel has no debugfs')
    if not blk_io_trace:
        reasons.append('the kernel has no block IO tracing (CONFIG_BLK_DEV_IO_TRACE)')
    if blktrace_path is None:
        reasons.append('the blktrace program is not installed')
    relay_allowed = not [r for r in reasons if 'program' not in r]

    ftrace_reasons = []
    if tracefs is None and 'tracefs' not in fs:
        ftrace_reasons.append('the kernel has no tracefs')
    if tracefs is not None and 'blk' not in tracers:
        ftrace_reasons.append("'blk' is not in available_tracers")
    if tracefs is None and 'tracefs' in fs:
        ftrace_reasons.append('tracefs is not mounted (mountable: mount -t tracefs nodev /sys/kernel/tracing)')
    if current not in (None, 'nop', 'blk'):
        ftrace_reasons.append("the global tracer is busy: current_tracer is '%s'" % current)

    if not reasons:
        backend = 'blktrace'
    elif not ftrace_reasons:
        backend = 'ftrace'
    else:
        backend = None
    return {
        'tracefs': {
            'mounted': bool(tracefs_mounts) or tracefs is not None,
            'path': tracefs,
            'mountable': 'tracefs' in fs,
        },
        'debugfs': {
            'mounted': debugfs_mounted,
            'mountable': debugfs_known,
        },
        'available_tracers': tracers,
        'current_tracer': current,
        'blk_tracer': 'blk' in tracers,
        'lockdown': lockdown,
        'blktrace_relay_allowed': relay_allowed,
        'blktrace_program': blktrace_path,
        'blktrace_usable': not reasons,
        'blktrace_reasons': reasons,
        'ftrace_usable': not ftrace_reasons,
        'ftrace_reasons': ftrace_reasons,
        'recommended_backend': backend,
    }


# Numbers of io_setup(2) per machine; io_uring_setup(2) is 425 on every architecture but alpha.
_IO_SETUP = {'x86_64': 206, 'aarch64': 0, 'riscv64': 0, 'loongarch64': 0, 'arm64': 0, 'i386': 245, 'i686': 245,
             'armv7l': 243, 'ppc64le': 227, 'ppc64': 227, 's390x': 243}
_IO_URING_SETUP = 425


def probe_syscall(number, *args):
    """Call a syscall with arguments that cannot succeed (NULL pointers) and classify its errno.

    ``supported`` (EFAULT or EINVAL: the kernel has it and let us in), ``disabled`` (EPERM: refused by policy),
    ``not_implemented`` (ENOSYS), or ``unknown``. Nothing is created: the kernel rejects the call before it
    allocates anything.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or None, use_errno=True)
        ctypes.set_errno(0)
        rc = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
        err = ctypes.get_errno()
    except (OSError, AttributeError, TypeError):
        return 'unknown'
    if rc == 0:
        return 'supported'
    if err in (errno.EFAULT, errno.EINVAL):
        return 'supported'
    if err == errno.EPERM:
        return 'disabled'
    if err == errno.ENOSYS:
        return 'not_implemented'
    return 'unknown'


def aio_facts(root, probe=True):
    max_nr = read_int(root, '/proc/sys/fs/aio-max-nr')
    nr = read_int(root, '/proc/sys/fs/aio-nr')
    number = _IO_SETUP.get(platform.machine())
    syscall = probe_syscall(number, 0, 0) if probe and root == '/' and number is not None else None
    available = max_nr is not None and syscall in (None, 'supported', 'unknown')
    return {
        'available': available,
        'max_nr': max_nr,
        'nr': nr,
        'free': (max_nr - nr) if max_nr is not None and nr is not None else None,
        'syscall': syscall,
    }


def io_uring_facts(root, probe=True):
    disabled = read_int(root, '/proc/sys/kernel/io_uring_disabled')
    group = read_int(root, '/proc/sys/kernel/io_uring_group')
    machine = platform.machine()
    syscall = (probe_syscall(_IO_URING_SETUP, 0, 0)
               if probe and root == '/' and machine != 'alpha' else None)
    if syscall is not None and syscall != 'unknown':
        available = syscall == 'supported'
    else:
        available = disabled in (None, 0) if disabled is not None else None
    return {
        'available': available,
        'disabled_sysctl': disabled,
        'group': group,
        'syscall': syscall,
    }

# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller files written whole or not at all. Private to blkfleet.core.

Every file the action plugins put on the controller is first written under a temporary name next to its
destination (``.NAME.XXXXXXXX.partial``, created with O_EXCL), checked, flushed to disk, and only then renamed
over the destination. A full disk (ENOSPC), a transfer cut short or a check that fails leaves the destination as
it was and no temporary file behind. Files are described (size, SHA-256) by module_utils/_install.describe, the
collection's one file hash. The destination's directory is made, or refused when anyone but root or the user
running Ansible could change what it holds, by the engine (``blkfleet workdir``, _controller.work_dir).
"""

from __future__ import annotations

import os
import shutil
import tempfile

from ansible_collections.blkfleet.core.plugins.module_utils._install import describe
from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller

__all__ = ['commit', 'describe', 'discard', 'replace_all', 'temp_beside']


def temp_beside(dest, checked=()):
    """A new, empty temporary file in ``dest``'s directory (made with its parents, refused when others could change
    it; not asked again when it is in ``checked``); returns its path."""
    directory = os.path.dirname(os.path.abspath(dest))
    if directory not in checked:
        directory = _controller.work_dir(directory)['real_path']
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(dest), suffix='.partial', dir=directory)
    os.close(fd)
    return tmp


def discard(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def commit(tmp, dest, mode=0o644):
    """Flush ``tmp`` to disk, give it ``mode`` and rename it over ``dest`` (same directory)."""
    fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, dest)
    _sync_dir(os.path.dirname(os.path.abspath(dest)))


def replace_all(pairs, mode=0o644):
    """Copy each ``(src, dest)`` to a temporary file beside ``dest``; once every copy is complete, rename them all.

    On a failure (ENOSPC included) every temporary file is removed and no destination has changed.
    """
    staged = []
    checked = set()
    try:
        for src, dest in pairs:
            tmp = temp_beside(dest, checked)
            checked.add(os.path.dirname(os.path.abspath(dest)))
            staged.append((tmp, dest))
            shutil.copyfile(src, tmp)
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except BaseException:
        for tmp, _dummy in staged:
            discard(tmp)
        raise
    try:
        while staged:
            commit(*staged[0], mode=mode)
            staged.pop(0)
    finally:
        for tmp, _dummy in staged:
            discard(tmp)


def _sync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

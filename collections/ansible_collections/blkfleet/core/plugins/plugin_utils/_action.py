# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared pieces of the collection's action plugins. Private to blkfleet.core."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


class BlkfleetAction(ActionBase):
    """Validates the task's arguments against ``ARGUMENT_SPEC`` and transfers files on demand."""

    ARGUMENT_SPEC = {}
    MUTUALLY_EXCLUSIVE = []
    REQUIRED_ONE_OF = []

    def validated_args(self):
        validation, new_args = self.validate_argument_spec(
            argument_spec=self.ARGUMENT_SPEC, mutually_exclusive=self.MUTUALLY_EXCLUSIVE,
            required_one_of=self.REQUIRED_ONE_OF)
        if validation.error_messages:
            raise AnsibleActionFail('; '.join(validation.error_messages))
        return new_args

    def transfer(self, local, name):
        """Copy the controller file ``local`` into the host's temporary directory; returns its remote path."""
        if self._connection._shell.tmpdir is None:
            self._make_tmp_path()
        remote = self._connection._shell.join_path(self._connection._shell.tmpdir, name)
        self._transfer_file(local, remote)
        self._fixup_perms2((self._connection._shell.tmpdir, remote))
        return remote

    def cleanup_remote(self):
        if self._connection._shell.tmpdir is not None:
            self._remove_tmp_path(self._connection._shell.tmpdir)

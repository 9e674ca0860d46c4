# -*- coding: utf-8 -*-
# Copyright (c) blkfleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared pieces of the collection's action plugins. Private to blkfleet.core."""

from __future__ import annotations

import shlex
import shutil
import tempfile

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.blkfleet.core.plugins.module_utils._protocol import EngineError, document, with_json
from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller


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

    def engine_on_host(self, engine, args, task_vars):
        """Run the host's engine (``engine``, its path there) with ``args`` straight over the connection, without a
        module: one process on the host, the quickest call there is (the start of a fleet is timed by it). Its
        protocol document; EngineFailed when the command failed, AnsibleConnectionFailure when the host did not
        answer."""
        python = (task_vars.get('ansible_python_interpreter')
                  or (task_vars.get('ansible_facts') or {}).get('discovered_interpreter_python') or '/usr/bin/python3')
        argv = [str(python), engine] + with_json(args)
        res = self._low_level_execute_command(' '.join(shlex.quote(a) for a in argv), sudoable=True)
        try:
            return document(res['rc'], res.get('stdout', ''), res.get('stderr', ''), argv)
        except EngineError as e:
            raise _controller.EngineFailed(e) from None

    def cleanup_remote(self):
        if self._connection._shell.tmpdir is not None:
            self._remove_tmp_path(self._connection._shell.tmpdir)

    def guarded(self, result, body, prefix):
        """``body(workdir)`` with a controller-side scratch directory; engine and Ansible errors become a failed
        result; the scratch and the host's temporary directory are always removed."""
        workdir = tempfile.mkdtemp(prefix=prefix)
        try:
            return body(workdir)
        except _controller.EngineFailed as e:
            result.update(_controller.failure_result(e))
            return result
        except AnsibleError as e:
            result.update(failed=True, msg=str(e.message))
            return result
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            self.cleanup_remote()

    def push(self, result, task_vars, module, local, name, module_args, check_extra=None):
        """Content-addressed push: ask the host (``module`` with ``module_args``) whether it holds the content;
        if not, transfer ``local`` as ``name`` and run ``module`` again with ``src``. Check mode only asks."""
        probe = self._execute_module(module_name=module, module_args=module_args, task_vars=task_vars)
        if probe.get('failed') or probe.get('installed'):
            result.update(probe)
            return result
        if self._task.check_mode:
            result.update(probe, changed=True, **(check_extra or {}))
            return result
        remote = self.transfer(local, name)
        result.update(self._execute_module(module_name=module, module_args=dict(module_args, src=remote),
                                           task_vars=task_vars))
        return result

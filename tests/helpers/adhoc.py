"""Run the real ``ansible`` / ``ansible-playbook`` programs from the repository root (tests/ansible, tests/regress)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO


def ansible_bin(name):
    """The program next to the running Python (the project's venv), else on PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(candidate, os.X_OK):
        return candidate
    return shutil.which(name)


def ansible_env(**extra):
    env = dict(os.environ)
    env.pop("ANSIBLE_CONFIG", None)  # the repository's ansible.cfg, as a user at the root gets it
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_NOCOLOR"] = "1"
    env.update(extra)
    return env


def run_adhoc(module, args="", host="localhost", check=False, inventory=None, timeout=120):
    """``ansible HOST -m MODULE -a ARGS`` from the repository root; returns (rc, result of HOST, completed).

    Parses the ``minimal`` callback's ``HOST | STATUS => {json}`` line, printed whatever the outcome.
    """
    program = ansible_bin("ansible")
    if program is None:
        pytest.skip("ansible is not installed (pip install ansible-core)")
    argv = [program, host, "-m", module]
    if args:
        argv += ["-a", args]
    if check:
        argv.append("--check")
    if inventory:
        argv += ["-i", inventory]
    run = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                         env=ansible_env(ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    prefix = f"{host} | "
    start = run.stdout.find(prefix)
    arrow = run.stdout.find(" => ", start)
    if start < 0 or arrow < 0:
        raise AssertionError(f"no result for {host} (rc {run.returncode}):\n{run.stdout}\n{run.stderr}")
    result, _ = json.JSONDecoder().raw_decode(run.stdout[arrow + 4:])
    return run.returncode, result, run


def netns_inventory_head(info):
    """The ``all:`` group's variables of an inventory of ``netns_hosts.py up`` hosts (its key, its control sockets;
    the hosts' Python named), up to and including ``  vars:``'s last line."""
    return ("all:\n  vars:\n    ansible_user: root\n    ansible_python_interpreter: /usr/bin/python3\n"
            f"    ansible_ssh_private_key_file: {info['client_key']}\n"
            "    ansible_ssh_common_args: -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no\n"
            f"    ansible_control_path_dir: {info['control_path_dir']}\n")

"""The collection's runners (the controller's and a target's) start the engine package without the current
directory on sys.path: ``python -m blkfleet`` run as root from a directory others can write, such as /tmp, ran a
``blkfleet/`` another user had put there."""

import json
import os
import subprocess
import sys

from helpers import ENGINE, REPO

CHILD = """
import json, subprocess, sys
from ansible_collections.blkfleet.core.plugins.module_utils import _engine
from ansible_collections.blkfleet.core.plugins.plugin_utils import _controller

controller = _controller.run(['job', 'status', '--', 'no-such-run'])['result']['state']
argv = _engine.engine_command(root='/nonexistent', which=lambda name: None, importable=True)
target = subprocess.run(argv + ['job', 'status', '--json', '-', '--', 'no-such-run'], capture_output=True, text=True)
print(json.dumps([controller, json.loads(target.stdout)['result']['state']]))
"""


def test_a_blkfleet_planted_in_the_current_directory_never_runs(tmp_path):
    planted = tmp_path / "blkfleet"
    planted.mkdir()
    (planted / "__init__.py").write_text("open('pwned-init', 'w').close()\n")
    (planted / "__main__.py").write_text("open('pwned-main', 'w').close()\n")
    env = {**os.environ, "BLKFLEET_ENGINE_PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(REPO / "collections"), str(ENGINE)])}
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["none", "none"]
    assert sorted(os.listdir(tmp_path)) == ["blkfleet"]

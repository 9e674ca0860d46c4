"""The real ``ansible-playbook playbooks/replay.yml`` with ``replay_import`` (root, a loop device, this host as the
target, no network namespace): an MSR Cambridge trace is imported and wrapped onto the target's size on the
controller (blkfleet.core.trace_import), and its bundle replayed; running the import again changes nothing."""

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from helpers.adhoc import REPO, ansible_bin, ansible_env

pytestmark = [pytest.mark.root, pytest.mark.slow]
MSR = os.path.join(REPO, "tests", "data", "foreign", "msr_src1_2.csv")  # src1_2: 4 IOs over 1 s, one at 1 GiB


def playbook(work, target, *extra):
    program = ansible_bin("ansible-playbook")
    assert program, "ansible-playbook is not installed"
    spec = {"name": "msr-src1", "format": "msr", "src": [MSR], "select": ["src1_2"], "rename": {"src1_2": "msr"},
            "transform": {"wrap": "32M", "align": 4096}}
    argv = [program, "playbooks/replay.yml", "-e", "blkfleet_targets=localhost", "-e", f"blkfleet_work_dir={work}",
            "-e", json.dumps({"replay_import": spec, "replay_device_map": {"msr": target}}), *extra]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, env=ansible_env())


def adhoc(args, *extra):
    run = subprocess.run([ansible_bin("ansible"), "localhost", "-m", "blkfleet.core.trace_import", "-a",
                          json.dumps(args), *extra], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env=ansible_env(ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    assert run.returncode == 0 and ("SUCCESS" in run.stdout or "CHANGED" in run.stdout), run.stdout[-3000:]
    return run.stdout


def test_imported_trace_replays_onto_the_target(loopdev):
    work = tempfile.mkdtemp(prefix="blkfleet-import-play-")
    try:
        target = loopdev(64 << 20)
        run = playbook(work, target)
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
        with open(os.path.join(work, "replays", "localhost.json")) as f:
            results = json.load(f)
        assert results["total"]["ios"] == 4 and results["total"]["errors"]["count"] == 0
        assert results["device_map"] == {"msr": target}
        bundle = os.path.join(work, "bundles", "msr-src1.bundle")
        info = subprocess.run([os.path.join(REPO, ".venv", "bin", "python"), "-m", "blkfleet", "bundle", "info",
                               bundle], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.path.join(
                                   REPO, "engine")), check=True)
        origin = json.loads(info.stdout)["origin"]
        assert origin["command"] == "transform" and origin["options"]["wrap"] == 32 << 20
        assert origin["inputs"][0]["origin"]["options"]["format"] == "msr"
        assert sorted(os.listdir(os.path.join(work, "imported", "msr-src1"))) == ["msr.replay.0", "origin.json"]

        # the import and the bundle again: nothing changes; in check mode, another wrap would, but is not written
        before = os.stat(bundle).st_mtime_ns
        args = {"format": "msr", "src": [MSR], "select": ["src1_2"], "rename": {"src1_2": "msr"},
                "transform": {"wrap": "32M", "align": 4096}, "replay_dir": os.path.join(work, "imported", "msr-src1"),
                "bundle": bundle}
        assert '"changed": false' in adhoc(args)
        assert '"changed": true' in adhoc(dict(args, transform={"wrap": "16M"}), "--check")
        assert os.stat(bundle).st_mtime_ns == before
    finally:
        shutil.rmtree(work, ignore_errors=True)

"""The real ``ansible-playbook playbooks/demo.yml`` (root, loop devices, fio), as a user runs it from a checkout."""

import json
import os
import shutil
import subprocess

import pytest

from helpers.adhoc import REPO, ansible_bin, ansible_env

pytestmark = [pytest.mark.root, pytest.mark.slow]

RESULTS = os.path.join(REPO, "results", "demo")


def demo_loops():
    run = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True)
    return [line for line in run.stdout.splitlines() if "blkfleet-demo-" in line]


def test_demo_playbook():
    if not shutil.which("fio"):
        pytest.skip("the demo needs fio (apt-get install fio)")
    program = ansible_bin("ansible-playbook")
    assert program, "ansible-playbook is not installed"
    for name in ("results.json", "summary.json"):
        if os.path.exists(os.path.join(RESULTS, name)):
            os.unlink(os.path.join(RESULTS, name))
    before = demo_loops()
    run = subprocess.run([program, "playbooks/demo.yml"], cwd=REPO, capture_output=True, text=True, timeout=900,
                         env=ansible_env())
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "failed=0" in run.stdout
    with open(os.path.join(RESULTS, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(RESULTS, "summary.json")) as f:
        summary = json.load(f)
    assert results["schema"] == "blkfleet-results/2"
    assert results["write_enable"] is True and results["interrupted"] is False
    assert results["total"]["errors"]["count"] == 0
    assert summary["captured_ios"] > 0 and summary["capture_drops"] == 0
    assert summary["bundle_ios"] == summary["captured_ios"]
    skipped = sum(results["total"]["skipped"].values())
    assert results["total"]["ios"] + skipped == summary["bundle_ios"]  # every IO of the bundle was replayed
    assert results["device_map"] == {os.path.basename(summary["source"]): summary["target"]}
    # the demo detached its loop devices and removed its working directory
    assert demo_loops() == before == []
    assert not [d for d in os.listdir("/dev/shm") if d.startswith("blkfleet-demo-")]
